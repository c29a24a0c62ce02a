"""How trial states and rows are shown: status counts ('2 done, 1 running') and row order.

Which epoch of a trial enters a table is `mtl_tune.studies.best_epochs`' rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from mtl_tune.names import STATE_NAMES, state_name

STATUS_WORDS = {s: STATE_NAMES[s] for s in ("TERMINATED", "RUNNING", "PAUSED", "PENDING",
                                               "INTERRUPTED", "ERROR")}  # in this order


def status_label(statuses: Iterable[str]) -> str:
    """'2 done, 1 running, 1 error': counts of trial statuses in a fixed order."""
    counts = Counter(statuses)
    words = [
        f"{counts[status]} {word}" for status, word in STATUS_WORDS.items() if counts[status]
    ]
    words += [f"{n} {state_name(s)}" for s, n in counts.items() if s not in STATUS_WORDS]
    return ", ".join(words) if words else "0 trials"


def row_order(names: Iterable[str], registry: Sequence[str]) -> list[str]:
    """Registered names in registry order, then any others in order of first appearance."""
    present = list(dict.fromkeys(names))
    known = [name for name in registry if name in present]
    return known + [name for name in present if name not in registry]
