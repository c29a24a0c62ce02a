"""The study's Optuna mirror (optuna.db): its trials, searched parameters and importances."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from mtl_tune.studies import RAY_ID_ATTR, StudyInfo, open_storage

logger = logging.getLogger(__name__)

NOT_SEARCHED = ("seed", "repeat")  # varying keys that are repetitions, not a search
def load_optuna_study(info: StudyInfo) -> Any | None:
    """The study's Optuna mirror (study.json's storage, else optuna.db), named like the study or
    the only study there; None when there is none."""
    import optuna

    url = info.optuna_url
    storage = open_storage(url, create=False) if url else None
    if storage is None:
        return None
    names = optuna.study.get_all_study_names(storage)
    named = [n for n in (info.name, info.launched_as) if n in names]  # a copy keeps its mirror
    if named:
        name = named[0]
    elif len(names) == 1:
        name = names[0]
    else:
        logger.warning("%s holds no study named %r (it holds %s)", url, info.name, names)
        return None
    return optuna.load_study(study_name=name, storage=storage)


def completed_trials(study: Any) -> list[Any]:
    import optuna

    complete = optuna.trial.TrialState.COMPLETE
    return [t for t in study.get_trials(deepcopy=False) if t.state == complete]


def searched_params(study: Any | None, results: pd.DataFrame) -> list[str]:
    """Optuna's parameters; without an Optuna study, the config keys that vary across trials."""
    if study is not None:
        names = {name for trial in completed_trials(study) for name in trial.params}
        if names:
            return sorted(names)
    config = results.drop_duplicates(["experiment", "trial_id"])
    return sorted(
        column.removeprefix("config/")
        for column in config.columns
        if column.startswith("config/")
        and column.removeprefix("config/") not in NOT_SEARCHED
        and config[column].astype(str).nunique() > 1
    )


def log_scaled(study: Any | None) -> set[str]:
    """The parameters Optuna sampled on a log scale (e.g. a loguniform learning rate)."""
    if study is None:
        return set()
    return {
        name
        for trial in completed_trials(study)
        for name, dist in trial.distributions.items()
        if getattr(dist, "log", False)
    }


def _scalar(study: Any, metric: str) -> Any:
    """How a trial's score is read: its value, or with several objectives the study's scalar
    `metric` (a user attribute of each trial)."""
    if len(study.directions) == 1:
        return lambda trial: trial.value
    return lambda trial: trial.user_attrs.get(metric)


def importances(study: Any | None, metric: str = "overall") -> tuple[pd.DataFrame, str | None]:
    """Optuna's fANOVA parameter importances (seeded), most important first; for a study of
    several objectives, importances for the scalar `metric`. A parameter set in only some trials
    (a conditional key, a later stage's) is weighed among the trials that set it, against the
    other parameters there: `trials` says over how many trials each importance was computed.

    Returns:
        A frame of `param`, `importance`, `trials`, and None; or an empty frame and why none
        were computed.
    """
    empty = pd.DataFrame({"param": pd.Series(dtype=str), "importance": pd.Series(dtype=float),
                          "trials": pd.Series(dtype=int)})
    if study is None:
        return empty, "no Optuna study (optuna.db) to compute parameter importances from"
    trials = completed_trials(study)
    if len(trials) < 2:
        return empty, "parameter importances need at least 2 completed Optuna trials"
    target = None if len(study.directions) == 1 else _scalar(study, metric)
    try:
        values = _fanova(study, target)
    except (ValueError, RuntimeError) as err:
        return empty, f"parameter importances not computed: {err}"
    rows = [(param, value, len(trials)) for param, value in values.items()]
    for param in sorted({name for trial in trials for name in trial.params} - set(values)):
        subset = [trial for trial in trials if param in trial.params]
        try:
            value = _fanova(study, target, subset).get(param) if len(subset) >= 2 else None
        except (ValueError, RuntimeError):
            value = None
        if value is not None:
            rows.append((param, value, len(subset)))
    if not rows:
        return empty, "parameter importances not computed: no parameter varies"
    rows.sort(key=lambda row: -row[1])
    frame = pd.DataFrame(rows, columns=["param", "importance", "trials"])
    return frame, None


def _fanova(study: Any, target: Any, trials: list[Any] | None = None) -> dict[str, float]:
    """fANOVA importances over `study`'s completed trials, or over `trials` of it (each
    parameter set in every one of them)."""
    import optuna

    if trials is not None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory"
        subset = optuna.create_study(directions=study.directions)
        subset.add_trials(trials)
        study = subset
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                        target=target))


def optuna_history(study: Any, metric: str = "overall") -> pd.DataFrame:
    """number, value, ray_trial_id of each completed Optuna trial, in the order they were told
    (value: the scalar `metric` in a study of several objectives)."""
    score = _scalar(study, metric)
    rows = [
        {"number": t.number, "value": score(t), RAY_ID_ATTR: t.user_attrs.get(RAY_ID_ATTR)}
        for t in completed_trials(study)
        if score(t) is not None
    ]
    frame = pd.DataFrame(rows, columns=["number", "value", RAY_ID_ATTR])
    return frame.sort_values("number").reset_index(drop=True)
