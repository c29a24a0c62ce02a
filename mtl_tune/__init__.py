"""mtl-tune: tune and ablate multi-task minBERT fine-tuning on Ray Tune with Optuna."""

__version__ = "0.1.0"
