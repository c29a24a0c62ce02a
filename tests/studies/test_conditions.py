"""Conditional search spaces (`when` in [space]): parsing, refusals with rule and value, the
dry-run plan, grids without duplicates and Optuna's define-by-run sampling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import SpecError
from mtl_tune.studies.driver._conditional_search import ConfigurationList, DefineByRun
from mtl_tune.studies.driver._tune_setup import grid_configurations, param_space, tune_config
from mtl_tune.studies.spec import (
    Condition,
    StudySpec,
    grid_points,
    load_spec,
    searched_space,
    trial_count,
)
from tests.studies.conftest import write_spec

OPTUNA_TOP = 'name = "c"\ntrainables = ["it1-baseline"]\nsearch = "optuna"\nnum_samples = 4'
GRID_TOP = 'name = "c"\ntrainables = ["it1-baseline"]\nsearch = "grid"'
SAMPLING = """
[space]
sampling = { choice = ["balanced", "temperature", "proportional"] }
sampling_temperature = { choice = [2.0, 3.0], when = { sampling = "temperature" } }
"""


def _spec(tmp_path: Path, top: str, tables: str, **fixed: object) -> StudySpec:
    return load_spec(str(write_spec(tmp_path, top, {"epochs": 1, **fixed}, tables)))


def test_a_condition_is_parsed_from_when(tmp_path: Path) -> None:
    spec = _spec(tmp_path, OPTUNA_TOP, """
[space]
sampling = { choice = ["balanced", "annealed", "temperature"] }
sampling_temperature = { uniform = [1.0, 5.0], when = { sampling = ["temperature", "annealed"] } }
smart_weight = { choice = [1.0], when = { sampling = "balanced", dropout = 0.1 } }
dropout = { choice = [0.1, 0.3] }
""")
    space = spec.space
    assert space["sampling_temperature"].when == (
        Condition("sampling", ("temperature", "annealed")),)
    # a single value is a list of one; several keys must all hold
    assert space["smart_weight"].when == (Condition("sampling", ("balanced",)),
                                          Condition("dropout", (0.1,)))
    assert space["sampling"].when == () and spec.conditional


BAD_CONDITIONS = {
    "unknown key": (
        'sampling_temperature = { uniform = [1.0, 5.0], when = { samplig = "temperature" } }',
        r"space\.sampling_temperature in {file}: `when` must name a key searched in \[space\] "
        r"\(or `trainable` when the spec lists several trainables\), but got 'samplig' "
        r"\(did you mean 'sampling'\?\)",
    ),
    "a fixed key": (
        'warmup_ratio = { uniform = [0.0, 0.2], when = { lr_schedule = "linear" } }',
        r"but got 'lr_schedule'; lr_schedule is fixed, and a condition on a fixed key always "
        r"holds or never does",
    ),
    "a value the key cannot take": (
        'sampling_temperature = { uniform = [1.0, 5.0], when = { sampling = "temprature" } }',
        r"space\.sampling_temperature in {file}: `when\.sampling` must list values sampling can "
        r"take \['balanced', 'temperature'\], but got 'temprature'",
    ),
    "a range key": (
        'head_hidden = { choice = [0, 256], when = { dropout = 0.1 } }\n'
        'dropout = { uniform = [0.1, 0.5] }',
        r"space\.head_hidden in {file}: `when\.dropout` must name a `choice` key \(a condition "
        r"tests values it can take\), but space\.dropout is uniform",
    ),
    "a cycle": (
        'head_hidden = { choice = [0, 256], when = { pooling = "mean" } }\n'
        'pooling = { choice = ["cls", "mean"], when = { head_hidden = 256 } }',
        r"the `when` conditions in \[space\] of {file} must not form a cycle, but got "
        r"head_hidden -> pooling -> head_hidden",
    ),
    "itself": (
        'pooling = { choice = ["cls", "mean"], when = { pooling = "mean" } }',
        r"must not form a cycle, but got pooling -> pooling",
    ),
    "an empty when": (
        'sampling_temperature = { uniform = [1.0, 5.0], when = {} }',
        r"space\.sampling_temperature in {file}: `when` must be a table of searched key = value "
        r"\(or a list of values\), e\.g\. when = \{{ sampling = \"temperature\" \}}, "
        r"but got \{{\}}",
    ),
    "a when alone": (
        'sampling_temperature = { when = { sampling = "temperature" } }',
        r"space\.sampling_temperature in {file} must be one table entry of .* \(and, if it is "
        r"conditional, `when`\), e\.g\. .*, but got \{{'when': \{{'sampling': 'temperature'\}}\}}",
    ),
    "an empty list": (
        'sampling_temperature = { uniform = [1.0, 5.0], when = { sampling = [] } }',
        r"`when\.sampling` must be a string, number or boolean, or a non-empty list of them, "
        r"but got \[\]",
    ),
    "a data key": (
        'max_length = { choice = [64], when = { sampling = "temperature" } }',
        r"space\.max_length in {file}: the data is read and tokenized once per study, so "
        r"max_length cannot vary between trials",
    ),
    "a true that is not 1": (
        'head_hidden = { choice = [0, 256], when = { max_grad_norm = true } }\n'
        'max_grad_norm = { choice = [0.0, 1.0] }',
        r"`when\.max_grad_norm` must list values max_grad_norm can take \[0\.0, 1\.0\], but got "
        r"True",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONDITIONS))
def test_a_bad_condition_is_refused_with_rule_and_value(case: str, tmp_path: Path) -> None:
    entry, message = BAD_CONDITIONS[case]
    tables = f'[space]\nsampling = {{ choice = ["balanced", "temperature"] }}\n{entry}\n'
    path = write_spec(tmp_path, OPTUNA_TOP, {"epochs": 1, "lr_schedule": "linear"}, tables)
    with pytest.raises(SpecError, match=message.format(file=re.escape(str(path)))):
        load_spec(str(path))


def test_a_condition_may_name_the_trainable_when_there_are_several(tmp_path: Path) -> None:
    top = 'name = "c"\ntrainables = ["it1-baseline", "it2-dropout"]\nsearch = "grid"'
    spec = _spec(tmp_path, top, '[space]\ndropout = { choice = [0.1, 0.3], when = '
                                '{ trainable = "it2-dropout" } }\n')
    # it1 once, it2 with each dropout
    assert grid_points(searched_space(spec)) == [
        {"trainable": "it1-baseline"},
        {"trainable": "it2-dropout", "dropout": 0.1},
        {"trainable": "it2-dropout", "dropout": 0.3},
    ]
    with pytest.raises(SpecError, match=r"but got 'it3'"):
        _spec(tmp_path, top, '[space]\ndropout = { choice = [0.1], when = { trainable = "it3" } }')


def test_a_grid_expands_conditions_without_duplicates(tmp_path: Path) -> None:
    spec = _spec(tmp_path, GRID_TOP + "\nseeds = 2", SAMPLING + """
head_hidden = { choice = [0, 256] }
pair_dropout = { choice = [0.1, 0.2], when = { head_hidden = 256 } }
""")
    points = grid_points(searched_space(spec))
    # (balanced, proportional, temperature x 2) x (0, 256 x 2): 4 x 3, not 3 x 2 x 2 x 2
    assert len(points) == 12 and len({json.dumps(p, sort_keys=True) for p in points}) == 12
    assert {"sampling": "balanced", "head_hidden": 0} in points
    assert all(("sampling_temperature" in p) == (p["sampling"] == "temperature") for p in points)
    assert all(("pair_dropout" in p) == (p["head_hidden"] == 256) for p in points)
    # each configuration over both seeds; the plan counts what Tune is handed
    configurations = grid_configurations(spec)
    assert len(configurations) == 24 == trial_count(spec)
    assert tune_config(spec, tmp_path, 1).num_samples == 24
    assert {c["seed"] for c in configurations} == {0, 1}
    # Tune's own grid holds none of the searched keys: the list hands them out
    space = param_space(spec)
    assert "sampling" not in space and space["trainable"] == "it1-baseline"


def test_a_sequential_stage_runs_each_value_on_the_conditional_space(tmp_path: Path) -> None:
    top = 'name = "c"\ntrainables = ["it1-baseline"]\nsearch = "sequential"'
    spec = _spec(tmp_path, top, SAMPLING + '[[sequential]]\nkey = "lr"\nvalues = [1e-5, 3e-5]\n')
    configurations = grid_configurations(spec, "lr")
    assert len(configurations) == 2 * 4 == trial_count(spec)
    assert {c["lr"] for c in configurations} == {1e-5, 3e-5}


def test_the_configuration_list_hands_each_out_once_and_survives_a_save(tmp_path: Path) -> None:
    searcher = ConfigurationList([{"a": 1}, {"a": 2}, {"a": 3}], "overall", "max")
    assert searcher.suggest("t1") == {"a": 1}
    searcher.save(str(tmp_path / "state.pkl"))
    restored = ConfigurationList([], "overall", "max")
    restored.restore(str(tmp_path / "state.pkl"))
    # a resumed study goes on after the configurations it already handed out
    assert [restored.suggest(t) for t in ("t2", "t3", "t4")] == [{"a": 2}, {"a": 3}, "FINISHED"]


def test_define_by_run_samples_a_key_only_while_its_condition_holds(tmp_path: Path) -> None:
    spec = _spec(tmp_path, OPTUNA_TOP, """
[space]
sampling = { choice = ["balanced", "temperature"] }
sampling_temperature = { uniform = [1.0, 5.0], when = { sampling = "temperature" } }
smart_weight = { choice = [1.0], when = { sampling = "balanced" } }
lr = { loguniform = [1e-5, 1e-3] }
""")
    space = DefineByRun(searched_space(spec))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        constants = space(trial)
        config = {**trial.params, **constants}
        seen.add(config["sampling"])
        # the conditional key exists exactly on the trials whose condition holds; a one-value
        # choice is set, not suggested
        assert ("sampling_temperature" in trial.params) == (config["sampling"] == "temperature")
        assert constants == ({"smart_weight": 1.0} if config["sampling"] == "balanced" else {})
        assert 1e-5 <= trial.params["lr"] <= 1e-3
        assert trial.distributions["lr"].log
        study.tell(trial, 0.5)
    assert seen == {"balanced", "temperature"}


def test_the_dry_run_shows_the_conditions(tmp_path: Path) -> None:
    path = write_spec(tmp_path, OPTUNA_TOP, {"epochs": 1}, SAMPLING)
    result = CliRunner().invoke(app, ["study", "launch", str(path), "--dry-run",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["search_space"] == {
        "sampling": ["balanced", "temperature", "proportional"],
        "sampling_temperature": {"choice": [2.0, 3.0], "when": {"sampling": ["temperature"]}},
    }
