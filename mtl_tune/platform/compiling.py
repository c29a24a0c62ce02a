"""When and how the encoder is compiled (the `compile` config key).

`torch.compile` fuses the encoder's thousands of small kernels; on CUDA its `reduce-overhead`
mode also replays them as CUDA graphs, which removes the launch cost that bounds a BERT step on
a fast card. Compiling costs tens of seconds, once per process (inductor's on-disk cache makes
later processes on the node faster), and a CUDA graph is recorded per distinct input shape, so
batches are padded to widths that are multiples of `BUCKET` and shapes are marked dynamic (one
compile for all of them).
"""

from __future__ import annotations

import torch
from torch import nn

from mtl_tune.platform.config import COMPILE_SETTINGS, check_choice

BUCKET = 16  # padded widths are multiples of this when compiled: 8 widths up to 128 tokens
# `auto` compiles on CUDA when a run trains at least this many batches: the break-even of the
# compile cost (47 s MiniLM, 81 s bert-base, cold cache, CUDA-graph recording included) against
# the time it saves per batch, measured by benchmarks/gpu_throughput.py on an H200: 3,954 and
# 3,897 batches. One balanced epoch of the cs224n data is 1,335 batches.
AUTO_MIN_BATCHES = 4_000


def use_compile(
    setting: str, device: torch.device, planned_batches: int, hooks: bool = False
) -> bool:
    """Whether a run compiles its encoder.

    Args:
        setting: `on`, `off`, or `auto` (on CUDA for runs of at least `AUTO_MIN_BATCHES`
            training batches; never on CPU, where compiling did not pay in our benchmarks).
        device: The run's device.
        planned_batches: Training batches the whole run will take.
        hooks: The run hooks into the encoder's modules (SMART): `auto` stays eager.
    """
    check_choice("compile", setting, COMPILE_SETTINGS)
    if setting == "auto":
        return device.type == "cuda" and planned_batches >= AUTO_MIN_BATCHES and not hooks
    return setting == "on"


def compile_encoder(encoder: nn.Module, device: torch.device) -> None:
    """Compiles `encoder` in place (its state dict keeps its keys): CUDA graphs on CUDA."""
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    import torch._inductor.config as inductor_config

    triton = inductor_config.triton
    if hasattr(triton, "cudagraph_dynamic_shape_warn_limit"):
        # one graph per (batch, bucketed width): a few dozen by design, not a sign of trouble
        triton.cudagraph_dynamic_shape_warn_limit = 64
    encoder.compile(mode=mode, dynamic=True)
