"""Tune's trial generators, with new trials made where the study is now.

Tune pickles its search algorithm with the experiment, and with it the experiment's storage: a
study resumed from a copy (or after a move) would get the trials its searcher suggests from then
on in the original folder. These subclasses hand each new trial's storage through `here`
(`_relocation`), as Tune itself re-points the trials it restores.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import BasicVariantGenerator, SearchGenerator

from mtl_tune.studies.store import TuneFiles


def _placed(trial: Any) -> Any:
    storage = getattr(trial, "storage", None)
    if storage is not None:
        TuneFiles(storage).place_here()  # each trial's own copy of the storage context
    return trial


class RelocatedSearch(SearchGenerator):
    """`SearchGenerator` (a Searcher's trials), each new trial placed where the study is."""

    def next_trial(self) -> Any:
        return _placed(super().next_trial())


class RelocatedGrid(BasicVariantGenerator):
    """`BasicVariantGenerator` (a grid's trials), each new trial placed where the study is."""

    def next_trial(self) -> Any:
        return _placed(super().next_trial())
