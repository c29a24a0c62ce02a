"""Spec parsing and validation, the built-in specs, the plan, and `study launch --dry-run`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import SpecError
from mtl_tune.studies import describe
from mtl_tune.studies.spec import (
    BUILTIN,
    Resources,
    StudySpec,
    load_spec,
    resolve_study,
    trial_count,
)
from mtl_tune.studies.store import StudyMeta, load_study_spec, write_meta
from tests.studies.conftest import write_spec

GOOD_TOP = 'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "grid"'
MO_TOP = 'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "optuna-mo"'


def test_builtin_specs_parse_and_count() -> None:
    counts = {name: trial_count(load_spec(name)) for name in BUILTIN}
    # every built-in spec validates, and its trial count is the grid / TPE budget it promises
    assert counts == {"demo": 8, "paper-ablation": 21, "paper-search": 6, "search": 40,
                      "search-mo": 40, "search-pbt": 16, "extended-ablation": 33}


def _tune_trials(spec: StudySpec, folder: Path) -> int:
    """The trials Tune would start for `spec`: the variants of each param_space x num_samples."""
    from ray.tune.search.variant_generator import generate_variants

    from mtl_tune.studies.driver._launch import param_space

    if spec.search in ("optuna", "optuna-mo", "pbt"):  # Tune runs the searcher's num_samples trials
        from mtl_tune.studies.driver._tune_setup import tune_config

        return tune_config(spec, folder, 2).num_samples
    spaces = [param_space(spec, {}, s.key) for s in spec.stages] or [param_space(spec)]
    return sum(len(list(generate_variants(space))) for space in spaces) * spec.num_samples


SEQUENTIAL_WITH_SPACE = """
name = "s"
trainables = ["it1-baseline", "it2-dropout"]
search = "sequential"
seeds = 2
num_samples = 2
"""
SEQUENTIAL_TABLES = """
[space]
pooling = { choice = ["cls", "mean"] }
sts_head = "cosine"

[[sequential]]
key = "lr"
values = [1e-4, 1e-5, 1e-6]

[[sequential]]
key = "dropout"
values = [0.2, 0.3]
"""


@pytest.mark.parametrize("name", [*BUILTIN, "sequential-with-space"])
def test_trial_count_is_what_tune_runs(name: str, tmp_path: Path) -> None:
    if name in BUILTIN:
        spec = load_spec(name)
    else:
        spec = load_spec(str(write_spec(tmp_path, SEQUENTIAL_WITH_SPACE, {}, SEQUENTIAL_TABLES)))
    # the planned trial count equals the trials Tune generates from the launched search space
    assert trial_count(spec) == _tune_trials(spec, tmp_path)


def test_trial_count_of_sequential_multiplies_the_grid(tmp_path: Path) -> None:
    path = write_spec(tmp_path, SEQUENTIAL_WITH_SPACE, {}, SEQUENTIAL_TABLES)
    # (3 + 2 stage values) x 2 trainables x 2 seeds x 2 poolings x 2 samples
    assert trial_count(load_spec(str(path))) == 5 * 2 * 2 * 2 * 2


def test_resume_uses_the_resources_the_study_was_launched_with(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    write_spec(folder, GOOD_TOP, {"epochs": 1}, "[resources]\ncpu = 2\ngpu = 1")
    # as `study launch --gpus-per-trial 0` records them
    write_meta(folder, StudyMeta(name="renamed", overrides={"lr": "3e-5"},
                                 resources={"cpu": 2, "gpu": 0}))
    spec = load_study_spec(folder)
    # the resumed study keeps the launch's name, --set overrides and per-trial resources
    assert (spec.name, spec.fixed["lr"], spec.resources) == ("renamed", "3e-5", Resources(2, 0))


def test_builtin_paper_search_stages() -> None:
    spec = load_spec("paper-search")
    # the paper's search: lr first, then dropout, three values each
    assert [(s.key, len(s.values)) for s in spec.stages] == [("lr", 3), ("dropout", 3)]


# (top-level keys, [fixed] additions, other tables, message regex with {file} for the path)
BAD_SPECS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "unknown keep_checkpoints": (
        GOOD_TOP + '\nkeep_checkpoints = "some"',
        {},
        "",
        r"`keep_checkpoints` must be one of \('best', 'best\+last', 'all'\) in {file}, but got "
        r"'some'",
    ),
    "unknown top-level key": (
        GOOD_TOP + '\nnme = "x"',
        {},
        "",
        r"unknown key\(s\) \['nme'\] in {file}",
    ),
    "unknown training key in fixed": (
        GOOD_TOP,
        {"learning_rate": 1e-3},
        "",
        r"unknown training key 'learning_rate' in \[fixed\] of {file}",
    ),
    "unknown training key in space": (
        GOOD_TOP,
        {},
        "[space]\nlearnig_rate = { choice = [1e-5, 1e-4] }",
        r"unknown training key 'learnig_rate' in \[space\] of {file}",
    ),
    "unknown training key in a stage": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "sequential"',
        {},
        '[[sequential]]\nkey = "droput"\nvalues = [0.1, 0.2]',
        r"unknown training key 'droput' in \[\[sequential\]\] of {file}",
    ),
    "unknown distribution": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "optuna"',
        {},
        "[space]\nlr = { normal = [0, 1] }",
        r"space\.lr in {file} must be one table entry of .*'loguniform'.*but got \{{'normal'",
    ),
    "loguniform with low <= 0": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "optuna"',
        {},
        "[space]\nlr = { loguniform = [0, 1e-3] }",
        r"space\.lr in {file}: loguniform needs low > 0, but got low=0\.0",
    ),
    "low >= high": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "optuna"',
        {},
        "[space]\ndropout = { uniform = [0.5, 0.1] }",
        r"space\.dropout in {file}: `low < high` must hold, but got \(low=0\.5, high=0\.1\)",
    ),
    "unknown trainable": (
        'name = "s"\ntrainables = ["it1-baseline", "it9-magic"]',
        {},
        "",
        r"unknown trainable 'it9-magic' in {file} \(key `trainables`\); valid: \['it1-baseline'",
    ),
    "sequential without stages": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "sequential"',
        {},
        "",
        r"`search` 'sequential' needs \[\[sequential\]\] stages in {file}",
    ),
    "grid with a loguniform": (
        GOOD_TOP,
        {},
        "[space]\nlr = { loguniform = [1e-6, 1e-4] }",
        r"space\.lr in {file}: a grid search takes `choice` lists only, but got loguniform",
    ),
    "optuna seeds beyond max_concurrent": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "optuna"\nseeds = 3',
        {},
        "[space]\nlr = { loguniform = [1e-6, 1e-4] }",
        r"`max_concurrent` must be at least `seeds` \(3\) for search 'optuna' in {file}: .* "
        r"but got 2",
    ),
    "objectives without optuna-mo": (
        GOOD_TOP + '\nobjectives = ["sst_acc", "sts_corr"]',
        {},
        "",
        r"`objectives` need search = 'optuna-mo' in {file}, but search is 'grid'",
    ),
    "one objective": (
        MO_TOP + '\nobjectives = ["sst_acc"]',
        {},
        "",
        r"`objectives` must name at least 2 different metrics for search 'optuna-mo' in {file}, "
        r"but got \['sst_acc'\]",
    ),
    "an objective twice": (
        MO_TOP + '\nobjectives = ["sst_acc", "sst_acc"]',
        {},
        "",
        r"at least 2 different metrics .* but got \['sst_acc', 'sst_acc'\]",
    ),
    "unknown objective": (
        MO_TOP + '\nobjectives = ["sst_acc", "bleu"]',
        {},
        "",
        r"objective 'bleu' in {file} must be one of \('sst_acc'",
    ),
    "bad objective mode": (
        MO_TOP + '\nobjectives = { sst_acc = "max", sts_corr = "up" }',
        {},
        "",
        r"the mode of objective 'sts_corr' in {file} must be 'max' or 'min', but got 'up'",
    ),
    "objectives not a list": (
        MO_TOP + '\nobjectives = "sst_acc"',
        {},
        "",
        r"`objectives` must be a list of metric names or a table .* in {file}, but got 'sst_acc'",
    ),
    "prune_on and metric differ": (
        MO_TOP + '\nobjectives = ["sst_acc", "sts_corr"]\nprune_on = "overall"\n'
        'metric = "mean_score"',
        {},
        "",
        r"`prune_on` and `metric` name the same scalar in {file}; give one, but got "
        r"prune_on='overall' and metric='mean_score'",
    ),
    "optuna-mo seeds beyond max_concurrent": (
        MO_TOP + '\nobjectives = ["sst_acc", "sts_corr"]\nseeds = 3\nmax_concurrent = 1',
        {},
        "",
        r"`max_concurrent` must be at least `seeds` \(3\) for search 'optuna-mo' .*but got 1",
    ),
    "bad value for a choice": (
        GOOD_TOP,
        {},
        '[space]\nsts_head = { choice = ["dot"] }',
        r"space\.sts_head in {file}: sts_head must be one of \('linear', 'cosine', "
        r"'cosine-relu'\), but got 'dot'",
    ),
    "bad fixed value": (
        GOOD_TOP,
        {"lr": 2.0},
        "",
        r"\[fixed\] in {file}: `0 < lr < 1` must hold, but got lr=2\.0",
    ),
    "unknown search": (
        'name = "s"\ntrainables = ["it1-baseline"]\nsearch = "random"',
        {},
        "",
        r"`search` must be one of \('optuna', 'optuna-mo', 'grid', 'sequential', 'pbt'\) in "
        r"{file}, but got 'random'",
    ),
    "unknown metric": (
        GOOD_TOP + '\nmetric = "accuracy"',
        {},
        "",
        r"`metric` must be one of \('sst_acc'.*in {file}, but got 'accuracy'",
    ),
    "unknown scheduler key": (
        GOOD_TOP,
        {},
        "[scheduler]\ngrace = 2",
        r"unknown key\(s\) \['grace'\] in \[scheduler\] of {file}",
    ),
    "ASHA reduction factor 1": (
        GOOD_TOP,
        {},
        '[scheduler]\ntype = "asha"\nreduction_factor = 1',
        r"`scheduler.reduction_factor` must be >= 2 in {file}, but got 1",
    ),
    "resources of the wrong type": (
        GOOD_TOP,
        {},
        '[resources]\ncpu = "two"',
        r"`resources.cpu` must be a number in {file}, but got 'two'",
    ),
    "a fractional GPU count above 1": (
        GOOD_TOP,
        {},
        "[resources]\ngpu = 1.5",
        r"`resources.gpu` must be at most 1 or a whole number in {file}, but got 1\.5",
    ),
    "searching a key the shared data depends on": (
        GOOD_TOP,
        {},
        "[space]\nmax_length = { choice = [32, 64] }",
        r"space\.max_length in {file}: .*tokenized once per study.*fix max_length in \[fixed\]",
    ),
    "trainables not a list": (
        'name = "s"\ntrainables = 3',
        {},
        "",
        r"`trainables` must be a trainable name or a list of names in {file}, but got 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_message_names_key_and_file(case: str, tmp_path: Path) -> None:
    top, extra, tables, message = BAD_SPECS[case]
    path = write_spec(tmp_path, top, {"epochs": 1, **extra}, tables)
    # the error names the offending key and the spec file, and states the rule
    with pytest.raises(SpecError, match=message.format(file=re.escape(str(path)))):
        load_spec(str(path))


def test_bad_spec_through_cli_exits_1_without_traceback(tmp_path: Path) -> None:
    path = write_spec(tmp_path, GOOD_TOP + '\nnme = "x"', {})
    args = ["study", "launch", str(path), "--dry-run", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    # a user's mistake is exit code 1
    assert result.exit_code == 1
    # the message names the key and the file, on stderr, without a traceback
    assert "unknown key(s) ['nme']" in result.stderr and str(path) in result.stderr
    # no traceback for a user's mistake
    assert "Traceback" not in result.output


def test_describe_plan() -> None:
    plan = describe(resolve_study(load_spec("search")))
    # the plan holds the searched keys with their distributions
    assert plan["search_space"]["lr"] == {"loguniform": [1e-5, 5e-4]}
    # a choice is shown as its list of values
    assert plan["search_space"]["pooling"] == ["pooler", "cls", "mean"]
    # resources: per trial, trials and the peak over the concurrent ones
    assert plan["resources"]["per_trial"] == {"cpu": 2, "gpu": 0.5}
    # the trial count is TPE's num_samples
    assert plan["resources"]["trials"] == 40
    # peak GPUs: per-trial GPUs x concurrent trials
    assert plan["resources"]["peak_gpus"] == 0.5 * 4
    demo = describe(resolve_study(load_spec("demo")))
    # repeated seeds are part of the grid the plan shows
    assert demo["search_space"]["seed"] == [0, 1]


def test_dry_run_starts_nothing(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = tmp_path / "studies"
    monkeypatch.setenv("MTL_TUNE_STORAGE", str(storage))

    started: list[str] = []

    def no_ray(*args: Any, **kwargs: Any) -> None:
        started.append("ray.init")
        raise AssertionError("a dry run must not start Ray")

    monkeypatch.setattr(ray, "init", no_ray)
    # as if no Ray ran in this process (the suite's shared one may): any connect starts one
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    args = ["study", "launch", "demo", "--dry-run", "--data-dir", str(tiny_data_dir)]
    result = CliRunner().invoke(app, args)
    # the dry run succeeds
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    # the printed plan has the search space, the resources and the data folder given
    assert plan["search_space"]["trainable"][0] == "it1-baseline"
    # the demo grid is 4 trainables x 2 seeds, one CPU per trial
    assert plan["resources"]["trials"] == 8 and plan["resources"]["per_trial"]["cpu"] == 1
    # the --data-dir given is the trials' data folder
    assert plan["spec"]["fixed"]["data_dir"] == str(tiny_data_dir.resolve())
    # nothing started: no Ray and no study folder
    assert started == []
    # no study folder was made
    assert not storage.exists()


def test_dry_run_keeps_the_specs_data_dir(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MTL_TUNE_DATA", raising=False)
    monkeypatch.setenv("MTL_TUNE_HOME", str(tmp_path / "home"))  # no default data folder
    path = write_spec(tmp_path, GOOD_TOP, {"data_dir": str(tiny_data_dir)})
    result = CliRunner().invoke(app, ["study", "launch", str(path), "--dry-run"])
    # a spec that fixes data_dir needs no --data-dir
    assert result.exit_code == 0, result.output
    # and the plan keeps the spec's data folder
    assert json.loads(result.stdout)["spec"]["fixed"]["data_dir"] == str(tiny_data_dir)


def test_multi_objective_spec_and_its_plan() -> None:
    spec = load_spec("search-mo")
    # three objectives, each maximised, and the scalar ASHA prunes on
    assert [(o.name, o.mode) for o in spec.objectives] == [
        ("sst_acc", "max"), ("para_acc", "max"), ("sts_corr", "max")]
    assert (spec.metric, spec.mode, spec.scheduler.type) == ("overall", "max", "asha")
    plan = describe(resolve_study(spec))
    # the dry run names the objectives beside the trials
    assert plan["spec"]["objectives"] == {"sst_acc": "max", "para_acc": "max", "sts_corr": "max"}
    assert plan["spec"]["search"] == "optuna-mo" and plan["resources"]["trials"] == 40


def test_objectives_as_a_table_take_their_modes(tmp_path: Path) -> None:
    path = write_spec(tmp_path, MO_TOP + '\nobjectives = { sst_acc = "max", mean_score = "min" }',
                      {"epochs": 1}, "[space]\nlr = { loguniform = [1e-6, 1e-4] }")
    spec = load_spec(str(path))
    assert [(o.name, o.mode) for o in spec.objectives] == [("sst_acc", "max"),
                                                           ("mean_score", "min")]
    # without prune_on the scalar is the default metric
    assert spec.metric == "overall"


@pytest.mark.parametrize(
    ("spec", "seeds", "message"),
    [
        ("demo", "0", r"--seeds must be >= 1 \(on the command line\), but got 0"),
        ("search", "5", r"`max_concurrent` must be at least `seeds` \(5\) for search 'optuna' "
                        r"in .*search.toml: .*but got 4"),
    ],
)
def test_bad_seeds_option_is_refused(
    spec: str, seeds: str, message: str, tiny_data_dir: Path
) -> None:
    args = ["study", "launch", spec, "--seeds", seeds, "--dry-run", "--data-dir",
            str(tiny_data_dir)]
    result = CliRunner().invoke(app, args)
    # --seeds is checked like the spec's own key: exit 1, the rule and the value, no traceback
    assert result.exit_code == 1 and re.search(message, result.stderr), result.output
    assert "Traceback" not in result.output


def test_seeds_option_sets_the_seeds_of_the_plan(tiny_data_dir: Path) -> None:
    args = ["study", "launch", "demo", "--seeds", "3", "--dry-run", "--data-dir",
            str(tiny_data_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    # 4 trainables x 3 seeds, the seeds 0, 1, 2
    assert plan["search_space"]["seed"] == [0, 1, 2] and plan["resources"]["trials"] == 12
