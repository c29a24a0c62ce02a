"""Which checkpoints a seed group keeps: each seed's at the group's best epoch.

The Optuna record names, for each seed of a group, its checkpoint at the epoch whose mean over
the seeds is best (`seed_checkpoints`); that epoch is often not the seed's own best, which is all
that plain retention keeps. So a seed keeps every checkpoint while any seed of its group may
still report (the group's best epoch can move), and once all have ended, its own best plus its
checkpoint at the group's best epoch, found by the same rule the record uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mtl_tune.studies.results import best_epoch, by_epoch, epoch_means
from mtl_tune.studies.spec import SEED_GROUP_KEY
from mtl_tune.studies.store import SavedTrial, TuneFiles

ENDED = ("TERMINATED", "ERROR")  # a seed that errored is left out of its group's mean


def group_retention(
    files: TuneFiles, trials: Iterable[Any], saved: Mapping[str, SavedTrial], metric: str,
    mode: str,
) -> tuple[set[str], dict[str, frozenset[str]]]:
    """The seeds whose checkpoints must all stay for now, and for the seeds of groups that have
    ended, the checkpoint each keeps besides its own best.

    Args:
        files: The experiment's files, where Tune writes them.
        trials: Every trial of the experiment (Tune's `Trial`s); those without a seed group are
            left alone.
        saved: Tune's saved state (trial id -> SavedTrial).
        metric: The study metric; mode: "max" or "min".
    """
    groups: dict[str, list[Any]] = {}
    for trial in trials:
        group = trial.config.get(SEED_GROUP_KEY)
        if group is not None:
            groups.setdefault(str(group), []).append(trial)
    waiting: set[str] = set()
    keep: dict[str, frozenset[str]] = {}
    for members in groups.values():
        states = {t.trial_id: saved.get(t.trial_id) for t in members}
        status = {k: s.status if s is not None else "" for k, s in states.items()}
        if any(s not in ENDED for s in status.values()):
            waiting |= set(states)
            continue
        reported = {t.trial_id: files.result_rows(t.storage.trial_fs_path) for t in members
                    if status[t.trial_id] != "ERROR"}
        means = epoch_means([rows for rows in reported.values() if rows], metric)
        if not means:
            continue
        best = best_epoch(means, metric, mode)
        for trial_id, rows in reported.items():
            name = by_epoch(rows, metric).get(best, {}).get("checkpoint_dir_name")
            if isinstance(name, str):
                keep[trial_id] = frozenset({name})
    return waiting, keep


def members_of(trials: Iterable[Any]) -> dict[str, Any]:
    """Trial id -> Trial, of the trials in a seed group."""
    return {t.trial_id: t for t in trials if SEED_GROUP_KEY in t.config}
