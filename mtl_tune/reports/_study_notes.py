"""The summary lines and trial-status footnotes every report carries."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from mtl_tune.exceptions import MtlTuneError
from mtl_tune.names import state_name
from mtl_tune.reports._selection import status_label
from mtl_tune.studies import (
    DIVERGED,
    ENDED,
    INTERRUPTED,
    TRIAL_KEYS,
    TRIVIAL_R,
    UNFINISHED,
    StudyInfo,
    best_epochs,
    disk_usage,
    human_bytes,
    resume_command,
)

NOT_ENDED = (*UNFINISHED, INTERRUPTED)
DAGGER_NOTE = (
    "† Not every trial of this row has finished: running, paused or interrupted trials enter "
    "with their best epoch so far; pending and errored trials are left out."
)


def require_scored(info: StudyInfo, results: pd.DataFrame) -> None:
    """Refuses a report of a study none of whose trials has a dev score (all errored, or
    stopped before their first epoch): such a report would be empty.

    Raises:
        MtlTuneError: No trial reported the study's metric.
    """
    if not best_epochs(results, info.metric, info.mode).empty:
        return
    trials = results.drop_duplicates(TRIAL_KEYS)
    errored = int((trials["status"] == "ERROR").sum())
    raise MtlTuneError(
        f"no trial of study {info.name!r} ({info.folder}) has reported a dev score yet "
        f"({errored} of {len(trials)} errored; `mtl-tune study status {info.name}` lists the "
        "trials); nothing to report until one has"
    )


def summary(info: StudyInfo, results: pd.DataFrame) -> dict[str, str]:
    """Label -> text: the study, its search, metric, experiments and trial states."""
    trials = results.drop_duplicates(TRIAL_KEYS)
    per_experiment = trials.groupby("experiment", sort=False)["status"].agg(status_label)
    ended = int(trials["status"].isin(ENDED).sum())
    planned = info.planned_trials
    if trials["status"].isin(UNFINISHED).any():
        state = "running (results so far)"
    elif ended < len(trials) or (planned is not None and ended < planned):
        state = (f"interrupted (results so far; "
                 f"`{resume_command(info.folder.parent, info.name)}` goes on)")
    else:
        state = "finished"
    return {
        "study": info.name if info.launched_as is None else (
            f"{info.name} (copied or renamed: launched as {info.launched_as})"),
        "folder": str(info.folder),
        "search": info.search,
        "metric": f"dev {info.metric} ({info.mode})",
        "experiments": "; ".join(f"{name}: {label}" for name, label in per_experiment.items()),
        "trials": status_label(trials["status"]) + (
            f" ({planned} planned)" if planned is not None and planned != len(trials) else ""),
        "state": state,
        "disk": f"{human_bytes(disk_usage(info.folder))} (finished trials keep weights only)",
        "report written": datetime.now().isoformat(timespec="seconds"),
    }


LISTED = 20  # trials named one by one in a note; the rest are counted


def error_notes(results: pd.DataFrame) -> list[str]:
    """One note per errored trial (the first LISTED): where, trainable and seed, its error."""
    trials = results.drop_duplicates(TRIAL_KEYS)
    errored = trials[trials["status"] == "ERROR"]
    notes = []
    for row in errored.head(LISTED).itertuples(index=False):
        seed = "" if pd.isna(row.seed) else f", seed {row.seed}"
        notes.append(f"Errored trial {row.experiment}/{row.trial_id} ({row.trainable}{seed}): "
                     f"{row.error}")
    if len(errored) > LISTED:
        notes.append(f"... and {len(errored) - LISTED} more errored trials (see results.csv).")
    return notes


def unfinished_note(info: StudyInfo, results: pd.DataFrame) -> str | None:
    """The trials not finished yet: those running or interrupted, and those of the plan Tune
    has not created (a study interrupted between two trials)."""
    trials = results.drop_duplicates(TRIAL_KEYS)
    pending = trials[trials["status"].isin(NOT_ENDED)]
    planned = info.planned_trials
    never = 0 if planned is None else max(0, planned - len(trials))
    if pending.empty and not never:
        return None
    names = [f"{r.experiment}/{r.trial_id} ({state_name(r.status)})"
             for r in pending.head(LISTED).itertuples(index=False)]
    more = f" and {len(pending) - LISTED} more" if len(pending) > LISTED else ""
    listed = f"Trials not finished yet: {', '.join(names)}{more}." if names else ""
    if not never:
        return listed
    unstarted = (f"{never} of the {planned} planned trials not started yet: the study was "
                 f"interrupted; `{resume_command(info.folder.parent, info.name)}` runs them.")
    return f"{listed} {unstarted}".strip()


def diverged_notes(results: pd.DataFrame, dropped: int = 0) -> list[str]:
    """What the report says of the diverged trials (`mark_diverged`): how many, which, and
    whether they count; none when no trial diverged and none was dropped."""
    flagged = sorted(set(results.loc[results[DIVERGED], "trial_id"].astype(str))) \
        if DIVERGED in results else []
    rule = ("a trial diverged when its last epoch's dev accuracy is not above its task's "
            f"majority-class share on the dev split, or its STS r is at or below {TRIVIAL_R}")
    if dropped:
        return [f"{dropped} diverged trial(s) were left out of every table and mean "
                f"(--drop-diverged): {rule}."]
    if not flagged:
        return []
    return [f"{len(flagged)} trial(s) diverged ({', '.join(flagged)}; flagged in the tables: "
            "§N in a row's Trials or a group's Seeds, 'diverged' in a trial's Status): "
            f"{rule}. They count in every mean, as any outcome of a configuration does; "
            "`report ablation --drop-diverged` leaves them out."]
