"""The arithmetic of `gpu_throughput.py`'s figures: the shapes it trains, the cards' dense bf16
peaks, training FLOPs per padded token, a measured configuration's row, and the side-by-side
ratios printed from rows of one run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtl_tune.platform.batches import bucketed_order, make_batch
from mtl_tune.platform.bert import BertConfig
from mtl_tune.platform.splits import Splits
from mtl_tune.platform.tasks import MAIN_TASKS

SHAPES = {
    "minilm": BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
    "bert-base": BertConfig(),
    "tiny": BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=128),
}
# dense bf16 peaks from the vendors' datasheets (SXM parts), by a substring of the device name
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


@dataclass(frozen=True)
class Row:
    shape: str
    combine: str
    compiled: bool
    steps: int
    examples_per_s: float
    tokens_per_s: float
    tflops: float
    peak_share: float | None
    peak_mem_gib: float
    compile_s: float | None  # the first compiled step
    overhead_s: float  # first pass minus second: compiling, recording, caches


def peak_tflops(device_name: str, override: float | None) -> float | None:
    """The card's dense bf16 peak: `override`, else the table's entry for the name, else None."""
    if override is not None:
        return override
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def matmul_weights(config: BertConfig) -> int:
    """Weights the encoder layers multiply each token by (the 6 N of training FLOPs)."""
    h, i = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * h * h + 2 * h * i)


def train_flops(tokens: float, config: BertConfig, mean_width: float) -> float:
    """Training FLOPs (forward + backward) for `tokens` padded tokens of mean width T."""
    attention = 12 * config.num_hidden_layers * config.hidden_size * mean_width
    return tokens * (6 * matmul_weights(config) + attention)


def mean_width(splits: Splits, multiple: int) -> float:
    """Mean padded width of bucketed training batches (pairs padded to one width)."""
    widths = []
    for task in MAIN_TASKS:
        split = splits[task]["train"]
        for rows in bucketed_order(split.lengths, 32, np.random.default_rng(0)):
            batch = make_batch(split, rows, multiple, joint=True)
            widths.append(batch.segments[0].input_ids.shape[1])
    return sum(widths) / len(widths)


def ratio_lines(rows: list[Row]) -> list[str]:
    """compiled / eager and pcgrad / sum, from rows measured in this run."""
    by_key = {(r.shape, r.combine, r.compiled): r for r in rows}
    lines = []
    for (shape, combine, compiled), r in by_key.items():
        eager = by_key.get((shape, combine, False))
        if compiled and eager:
            saved = 32 / eager.examples_per_s - 32 / r.examples_per_s  # seconds per batch
            extra_s = r.overhead_s - eager.overhead_s  # compiling and recording
            line = (f"{shape} {combine}: compiled / eager examples/s "
                    f"{r.examples_per_s / eager.examples_per_s:.2f}")
            if extra_s > 1.0:  # the configuration that compiled (later ones reuse its code)
                even = f"{extra_s / saved:,.0f} batches" if saved > 0 else "never"
                line += f"; compile cost {extra_s:.0f} s, break-even after {even}"
            lines.append(line)
        summed = by_key.get((shape, "sum", compiled))
        if combine == "pcgrad" and summed:
            lines.append(f"{shape} compile={'on' if compiled else 'off'}: pcgrad / sum step time "
                         f"{summed.examples_per_s / r.examples_per_s:.2f}")
    return lines
