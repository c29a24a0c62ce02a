"""The torch device a config names ("auto": a GPU when one is visible)."""

from __future__ import annotations

import torch

from mtl_tune.exceptions import TrainingError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for, but no CUDA device is visible")
    return torch.device(name)
