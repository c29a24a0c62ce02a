"""The shared core every trainable wraps: encoder, tokenizer, data, heads, training."""
