"""Studies with a conditional space, end to end on the shared local Ray: a TPE study whose Optuna
record holds a conditional key only where its condition held, and a grid that runs each
configuration once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from ray.tune import ExperimentAnalysis

from mtl_tune.reports import report_search
from mtl_tune.studies import launch_study
from mtl_tune.studies.spec import load_spec
from mtl_tune.studies.store import read_meta
from tests.studies.conftest import NO_SCHEDULER, tiny_fixed, write_spec

pytestmark = pytest.mark.usefixtures("ray_local")

CONDITIONAL = """
[space]
sampling = { choice = ["balanced", "temperature"] }
sampling_temperature = { uniform = [1.0, 5.0], when = { sampling = "temperature" } }
lr = { loguniform = [1e-5, 1e-3] }
"""


def _launch(folder: Path, top: str, fixed: dict[str, Any], tables: str) -> Any:
    path = write_spec(folder, top, fixed, tables)
    return launch_study(load_spec(str(path)), folder / "studies", path.read_text(), verbose=0)


def _configs(folder: Path) -> list[dict[str, Any]]:
    return [t.config for t in ExperimentAnalysis(str(folder / "tune" / "main")).trials]


def test_a_tpe_study_records_a_conditional_key_only_where_it_held(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = ('name = "cond"\ntrainables = ["it7-cosrelu-tuned"]\nsearch = "optuna"\n'
           "num_samples = 6\nmax_concurrent = 2\noptuna_seed = 1")
    outcome = _launch(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=1),
                      CONDITIONAL + NO_SCHEDULER)
    assert (outcome.trials, outcome.errors, outcome.unfinished) == (6, 0, 0)
    study = optuna.load_study(study_name="cond",
                              storage=read_meta(outcome.folder).optuna_storage)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6
    tempered = [t for t in trials if t.params["sampling"] == "temperature"]
    # both branches ran; sampling_temperature exists exactly on the temperature trials
    assert 2 <= len(tempered) <= 4
    for trial in trials:
        assert ("sampling_temperature" in trial.params) == (trial in tempered)
        assert ("sampling_temperature" in trial.distributions) == (trial in tempered)
    # Tune's trials got the key only there too: the others train at the trainable's default
    configs = _configs(outcome.folder)
    assert sorted("sampling_temperature" in c for c in configs) == sorted(
        t in tempered for t in trials)
    assert all(1.0 <= c["sampling_temperature"] <= 5.0 for c in configs
               if c["sampling"] == "temperature")
    # the report weighs sampling_temperature among the trials that set it
    report = report_search(outcome.folder, out=tmp_path / "report", formats=("csv",))
    ranking = report.tables["importances"].set_index("param")
    assert ranking.loc["sampling_temperature", "trials"] == len(tempered)
    assert ranking.loc["lr", "trials"] == 6 == ranking.loc["sampling", "trials"]


def test_a_conditional_grid_runs_each_configuration_once(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    top = 'name = "grid"\ntrainables = ["it1-baseline"]\nsearch = "grid"\nmax_concurrent = 3'
    tables = """
[space]
sampling = { choice = ["balanced", "temperature"] }
sampling_temperature = { choice = [2.0, 4.0], when = { sampling = "temperature" } }
"""
    outcome = _launch(tmp_path, top, tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=1),
                      tables + NO_SCHEDULER)
    assert (outcome.trials, outcome.errors, outcome.unfinished) == (3, 0, 0)
    searched = sorted((c["sampling"], c.get("sampling_temperature")) for c in _configs(
        outcome.folder))
    assert searched == [("balanced", None), ("temperature", 2.0), ("temperature", 4.0)]
