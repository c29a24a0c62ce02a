"""`gpu_throughput.py`'s checks of a shape beside its throughput: the host syncs a training step
makes (CUDA), compiled against eager encoder outputs, and our encoder's train step against
transformers.BertModel's (sdpa) on the same weights and batches."""

from __future__ import annotations

import copy
import statistics
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from _gpu_figures import SHAPES
from torch import nn

from mtl_tune.platform.batches import make_batch
from mtl_tune.platform.bert import BertConfig, BertModel
from mtl_tune.platform.compiling import BUCKET, compile_encoder
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.train import Trainer


def count_syncs(run: Callable[[], object]) -> int:
    """Host syncs CUDA reports while `run()` runs (CUDA only)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def compiled_vs_eager(config: BertConfig, splits: Splits, device: torch.device) -> float:
    """Largest relative error of the compiled encoder's outputs against eager (eval, autocast)."""
    torch.manual_seed(1)
    model = BertModel(config).to(device).eval()
    split = splits["sst"]["train"]
    batches = [make_batch(split, torch.arange(i * 32, (i + 1) * 32), BUCKET).to(device)
               for i in range(min(4, len(split) // 32))]
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def outputs() -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return [model(s.input_ids, s.attention_mask, s.token_type_ids)["last_hidden_state"]
                    .float().clone() * s.attention_mask[..., None]
                    for s in (b.segments[0] for b in batches)]

    reference = outputs()
    compile_encoder(model, device)
    outputs()  # CUDA graphs record on a later call
    compiled = outputs()
    return max(float((c - r).norm() / r.norm()) for c, r in zip(compiled, reference, strict=True))


def encoder_ab(
    config: BertConfig, splits: Splits, device: torch.device, steps: int
) -> dict[str, float]:
    """Median ms of an encoder train step, ours and transformers.BertModel(sdpa), A/B."""
    import transformers

    torch.manual_seed(2)
    ours = BertModel(config).to(device).train()
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "max_position_embeddings", "type_vocab_size",
            "layer_norm_eps", "pad_token_id", "hidden_dropout_prob",
            "attention_probs_dropout_prob")
    theirs = transformers.BertModel(
        transformers.BertConfig(**{k: getattr(config, k) for k in keys},
                                attn_implementation="sdpa")
    )
    theirs.load_state_dict(ours.state_dict(), strict=False)
    theirs = theirs.to(device).train()
    head = nn.Linear(config.hidden_size, 5).to(device)
    models = {"ours": (ours, head), "theirs": (theirs, copy.deepcopy(head))}
    optimizers = {k: torch.optim.AdamW([*m.parameters(), *h.parameters()], lr=1e-5, fused=True)
                  for k, (m, h) in models.items()}
    split = splits["sst"]["train"]
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def step(name: str, rows: torch.Tensor) -> float:
        model, lin = models[name]
        batch = make_batch(split, rows).to(device)
        seg = batch.segments[0]
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        assert batch.labels is not None
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(input_ids=seg.input_ids, attention_mask=seg.attention_mask,
                        token_type_ids=seg.token_type_ids)
            loss = F.cross_entropy(lin(out["pooler_output"]).float(), batch.labels)
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    warm = 5
    for i in range(warm + steps):
        rows = order[torch.arange(i * 32, (i + 1) * 32) % len(order)]
        names = ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")
        for name in names:
            elapsed = step(name, rows)
            if i >= warm:
                times[name].append(elapsed)
    result = {f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}
    if device.type == "cuda":  # implicit host syncs in one step (torch.cuda.synchronize aside)
        first = order[:32]
        for name in times:
            result[f"{name}_syncs_per_step"] = count_syncs(partial(step, name, first))
    return result


def shape_checks(
    shape: str, trainer: Trainer | None, splits: Splits, device: torch.device, ab_steps: int
) -> tuple[dict[str, Any], list[str]]:
    """Host syncs per step (CUDA), compiled vs eager outputs, ours vs transformers."""
    config = SHAPES[shape]
    checks: dict[str, Any] = {
        "compiled_rel_err": lambda: compiled_vs_eager(config, splits, device),
        "encoder_step_ms_ours_vs_transformers": lambda: encoder_ab(
            config, splits, device, ab_steps
        ),
    }
    if trainer is not None and device.type == "cuda":
        checks["syncs_in_10_steps"] = lambda: count_syncs(
            lambda: trainer.train_epoch(2, max_steps=10)
        )
    found, failures = {}, []
    for key, check in checks.items():
        try:
            found[f"{shape}_{key}"] = check()
        except Exception as err:  # as for configurations: report, go on
            failures.append(f"{shape} {key}: {type(err).__name__}: {err}")
            traceback.print_exc()
    return found, failures
