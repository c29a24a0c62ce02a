"""A run's progress as its checkpoints keep it (`trainer_state.json`): the epochs done and the
early-stopping state. One frozen record, read and written here by its field names only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """Where a run stands after its last epoch.

    Attributes:
        epochs_done: Epochs trained.
        best_overall: The best dev `overall` so far.
        patience_reference: The dev `overall` a later epoch must beat by `min_delta`.
        stale_epochs: Epochs in a row that did not.
    """

    epochs_done: int = 0
    best_overall: float = -math.inf
    patience_reference: float = -math.inf
    stale_epochs: int = 0

    def record(self) -> dict[str, Any]:
        """The fields as a checkpoint's JSON record holds them."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Progress:
        """The progress inside a checkpoint's record (other keys beside it are not read).

        A checkpoint written before early stopping kept its state has neither
        `patience_reference` nor `stale_epochs`: its best is the reference, no epoch is stale.

        Raises:
            KeyError: `epochs_done` or `best_overall` is missing.
        """
        best = float(record["best_overall"])
        return cls(
            epochs_done=int(record["epochs_done"]),
            best_overall=best,
            patience_reference=float(record.get("patience_reference", best)),
            stale_epochs=int(record.get("stale_epochs", 0)),
        )
