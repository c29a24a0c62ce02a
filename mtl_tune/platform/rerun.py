"""The `mtl-tune train` command that trains a trial again, outside Ray Tune.

A trial is its trainable's preset plus the keys its study set; the command names the trainable
and `--set`s every key whose value differs from the preset's, so it trains the same model on
the same data with the same seed: its dev scores at each epoch are the trial's (on the CPU up
to the summation order of the threads used).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from mtl_tune.platform.config import TrainConfig
from mtl_tune.platform.presets import resolve_config


def _text(value: Any) -> str:
    """A value as `--set` reads it back (`TrainConfig.from_mapping`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def train_command(trainable: str, config: Mapping[str, Any], out: str | None = None) -> str:
    """The shell command that trains `trainable` with the trial's `config` again.

    Args:
        trainable: The registered trainable (e.g. "it7-cosrelu-tuned").
        config: The trial's config (unknown keys, e.g. a study's own, are left out).
        out: The `--out` folder, if one should be named.
    """
    names = {f.name for f in fields(TrainConfig)}
    trial = resolve_config(trainable, {k: v for k, v in config.items() if k in names})
    preset = resolve_config(trainable, {})
    words = ["mtl-tune", "train", trainable]
    for key in sorted(names - {"data_dir"}):
        value = getattr(trial, key)
        if value != getattr(preset, key):
            words += ["--set", f"{key}={_text(value)}"]
    if trial.data_dir:
        words += ["--data-dir", trial.data_dir]
    if out is not None:
        words += ["--out", out]
    return shlex.join(words)
