"""Keys of a trial's per-epoch report that code without torch reads (the results frame)."""

from __future__ import annotations

# an epoch's loss curve: [{"step": 50, "sst": 1.6, ...}, ...], written to TensorBoard only
CURVE_KEY = "train_loss_curve"
