"""One name for each score, task and trial state wherever a person reads it.

Terminal tables, Markdown, HTML, LaTeX and figures show the names here; CSV columns, JSON fields
and config values keep the keys (`sst_acc`, `para`, `TERMINATED`). The README's glossary lists
both, from these tables (a test holds them equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# score key -> (name, what it is)
SCORES = {
    "sst_acc": ("SST acc", "SST-5 sentiment accuracy, in [0, 1]"),
    "para_acc": ("PD acc", "Quora paraphrase-detection accuracy, in [0, 1]"),
    "sts_corr": ("STS r", "STS similarity Pearson r, in [-1, 1]"),
    "overall": ("Overall", "(SST acc + PD acc + (STS r + 1) / 2) / 3, the course "
                "leaderboard's score and the studies' default metric, in [0, 1]"),
    "mean_score": ("Mean (paper)", "(SST acc + PD acc + STS r) / 3, the paper's \"Overall\" "
                   "column, in [-1/3, 1]"),
}
# task key -> (name, what it is)
TASKS = {
    "sst": ("SST", "SST-5 sentiment, 5 classes"),
    "para": ("PD", "Quora paraphrase detection, 2 classes"),
    "sts": ("STS", "semantic textual similarity, a score in [0, 5]"),
    "cfimdb": ("CFIMDB", "counterfactual IMDB sentiment, 2 classes (data check only)"),
}
# Ray Tune's trial state -> (name, what it is)
STATES = {
    "TERMINATED": ("done", "ran its epochs, or was stopped by ASHA or patience"),
    "RUNNING": ("running", "training now"),
    "PAUSED": ("paused", "waiting for resources or its seed group"),
    "PENDING": ("pending", "not started"),
    "ERROR": ("error", "failed; its error file says why"),
    "INTERRUPTED": ("interrupted", "its driver stopped before it ended; `study resume` goes on"),
    "MISSING": ("missing", "recorded finished, but its folder or results are gone (named in a "
                "warning)"),
}
SCORE_NAMES = {key: name for key, (name, _) in SCORES.items()}
TASK_NAMES = {key: name for key, (name, _) in TASKS.items()}
STATE_NAMES = {key: name for key, (name, _) in STATES.items()}


def score_name(key: str) -> str:
    """The name of score `key` ("sst_acc" -> "SST acc"); another metric keeps its key."""
    return SCORE_NAMES.get(key, key)


def state_name(state: str) -> str:
    """The name of a trial state ("TERMINATED" -> "done")."""
    return STATE_NAMES.get(state, state.lower())


def named(record: Mapping[str, Any]) -> dict[str, Any]:
    """A table row with its score columns under their names, its task and state in words."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("state", "status") and value in STATE_NAMES:
            value = STATE_NAMES[value]
        elif key == "task" and isinstance(value, str):
            value = TASK_NAMES.get(value, value)
        out[_column_name(key)] = value
    return out


def _column_name(key: str) -> str:
    best, _, metric = key.partition("best ")  # `study list`'s "best <metric>"
    return f"best {score_name(metric)}" if not best and metric else score_name(key)
