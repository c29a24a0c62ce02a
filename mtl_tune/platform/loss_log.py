"""Per-task training losses kept on the device, read back only when asked.

Reading a GPU value (`loss.item()`, `if not torch.isfinite(loss)`) makes the host wait for the
GPU at every step. The log adds each loss to a device tensor and remembers the first non-finite
one on the device; `check` (every few dozen steps) and `means` (at the end of an epoch) are the
only reads, and `check` still names the task, epoch and step of the first bad value. `mark`
keeps a point of the loss curve (each task's mean loss since the previous mark) as a copy of
the sums on the device; `curve` reads all of an epoch's points at once, at its end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtl_tune.exceptions import TrainingError


class LossLog:
    """Sums of one epoch's task losses and the first non-finite one, on `device`."""

    def __init__(self, tasks: Sequence[str], device: torch.device, epoch: int, lr: float) -> None:
        self.tasks, self.epoch, self.lr = list(tasks), epoch, lr
        self._index = {t: i for i, t in enumerate(self.tasks)}
        self._sums = torch.zeros(len(self.tasks), dtype=torch.float64, device=device)
        self._counts = [0] * len(self.tasks)
        # code of the first non-finite loss: step * n_tasks + task index; -1 while none
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self._first_value = torch.zeros((), dtype=torch.float32, device=device)
        self._marks: list[tuple[int, torch.Tensor, list[int]]] = []

    def add(self, task: str, loss: torch.Tensor, step: int) -> None:
        """Adds one batch's loss of `task` at optimizer step `step` (1-based)."""
        i = self._index[task]
        value = loss.detach().float()
        self._sums[i] += value.double()
        self._counts[i] += 1
        first = ~torch.isfinite(value) & (self._first_bad < 0)
        self._first_bad = torch.where(first, step * len(self.tasks) + i, self._first_bad)
        self._first_value = torch.where(first, value, self._first_value)

    def check(self) -> None:
        """Raises TrainingError naming the first non-finite loss, if any (reads the device)."""
        code = int(self._first_bad)
        if code < 0:
            return
        step, i = divmod(code, len(self.tasks))
        raise TrainingError(
            f"non-finite loss {float(self._first_value)} on task {self.tasks[i]!r} at epoch "
            f"{self.epoch}, step {step}; lower lr (now {self.lr}) or check the data"
        )

    def means(self) -> dict[str, float]:
        """Mean loss of each task that had a batch (after `check`)."""
        sums = self._sums.tolist()
        return {t: sums[i] / self._counts[i] for t, i in self._index.items() if self._counts[i]}

    def mark(self, step: int) -> None:
        """Ends a window of the loss curve at step `step` (a device copy; nothing is read)."""
        if self._marks and self._marks[-1][0] == step:
            return
        self._marks.append((step, self._sums.clone(), list(self._counts)))

    def curve(self) -> list[tuple[int, dict[str, float]]]:
        """(step, mean loss of each task that had a batch in the window) of each mark, in one
        read of the device."""
        if not self._marks:
            return []
        sums = torch.stack([m[1] for m in self._marks]).tolist()
        points = []
        previous_sums, previous_counts = [0.0] * len(self.tasks), [0] * len(self.tasks)
        for (step, _, counts), row in zip(self._marks, sums, strict=True):
            losses = {
                t: (row[i] - previous_sums[i]) / (counts[i] - previous_counts[i])
                for t, i in self._index.items()
                if counts[i] > previous_counts[i]
            }
            points.append((step, losses))
            previous_sums, previous_counts = row, counts
        return points
