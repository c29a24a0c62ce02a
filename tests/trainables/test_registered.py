import math
import re
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.checkpoint import PREDICTIONS_FILE, read_state
from mtl_tune.platform.metrics import METRIC_KEYS
from mtl_tune.platform.presets import PRESETS, get_preset, resolve_config
from mtl_tune.trainables import GENERIC
from tests.helpers import tiny_trial


def test_presets_are_cumulative() -> None:
    names = list(PRESETS)
    # the paper's seven iterations and four beyond it, under stable names, in order
    assert names == [
        "it1-baseline",
        "it2-dropout",
        "it3-cosine-sts",
        "it4-round-robin",
        "it5-pcgrad",
        "it6-balanced",
        "it7-cosrelu-tuned",
        "it8-mean-pooling",
        "it9-cross-encoder",
        "it10-warmup-decay",
        "it11-cagrad",
    ]
    changes = [
        {"pair_dropout": True},
        {"sts_head": "cosine"},
        {"sampling": "round-robin"},
        {"combine": "pcgrad"},
        {"sampling": "balanced"},
        {"sts_head": "cosine-relu", "lr": 1e-5, "dropout": 0.3},
        {"pooling": "mean"},
        {"pair_encoding": "cross"},
        {"lr_schedule": "linear", "warmup_ratio": 0.1, "max_grad_norm": 1.0, "lr": 2e-4},
        {"combine": "cagrad", "cagrad_c": 0.5},
    ]
    for previous, current, change in zip(names[:-1], names[1:], changes, strict=True):
        # each preset equals the previous one plus exactly its change
        assert dict(PRESETS[current].overrides) == {**PRESETS[previous].overrides, **change}


def test_preset_descriptions_carry_no_scores() -> None:
    # a score in a description goes stale with the next change: the README's tables hold them
    for preset in PRESETS.values():
        assert not re.search(r"\b0\.\d{2,}", preset.description), preset


def test_user_config_overrides_preset_key_by_key() -> None:
    config = resolve_config("it7-cosrelu-tuned", {"lr": "3e-5", "pooling": "mean"})
    # user keys win, the rest of the preset stays
    assert (config.lr, config.pooling, config.sts_head, config.dropout) == (
        3e-5,
        "mean",
        "cosine-relu",
        0.3,
    )


def test_unknown_trainable_lists_valid_names() -> None:
    # an unknown name is refused with the list of valid ones
    with pytest.raises(ConfigError, match=r"trainable must be one of \['it1-baseline'.*'nope'"):
        get_preset("nope")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": 1e-3}, r"unknown config key\(s\) \['learning_rate'\].*valid keys"),
        (
            {"sts_head": "dot"},
            r"sts_head must be one of \('linear', 'cosine', 'cosine-relu'\), "
            r"but got 'dot'",
        ),
        ({"sampling": "random"}, r"sampling must be one of .*'temperature'\), but got 'random'"),
        ({"lr": -1}, r"`0 < lr < 1` must hold, but got lr=-1"),
        ({"epochs": "two"}, r"epochs must be of type int, but got 'two'"),
        ({"pair_dropout": "maybe"}, r"pair_dropout must be of type bool, but got 'maybe'"),
        # the recipe keys, as `--set key=value` passes them
        ({"lr_schedule": "step"}, r"lr_schedule must be one of \('constant', 'linear', "
         r"'cosine'\), but got 'step'"),
        ({"warmup_ratio": "0.6"}, r"`0 <= warmup_ratio <= 0.5` must hold, but got "
         r"warmup_ratio=0.6"),
        ({"max_grad_norm": "-1"}, r"`max_grad_norm >= 0` must hold, but got max_grad_norm=-1.0"),
        ({"patience": "-2"}, r"`patience >= 0` must hold, but got patience=-2"),
        ({"patience": "1.5"}, r"patience must be of type int, but got '1.5'"),
        ({"min_delta": "-0.1"}, r"`min_delta >= 0` must hold, but got min_delta=-0.1"),
        ({"combine": "mgda"}, r"combine must be one of \('sum', 'pcgrad', 'uncertainty', "
         r"'cagrad', 'famo'\), but got 'mgda'"),
        ({"cagrad_c": "-0.5"}, r"`cagrad_c >= 0` must hold, but got cagrad_c=-0.5"),
        ({"famo_lr": "0"}, r"`famo_lr > 0` must hold, but got famo_lr=0.0"),
        ({"famo_decay": "-1e-3"}, r"`famo_decay >= 0` must hold, but got famo_decay=-0.001"),
        ({"sampling_temperature": "0"}, r"`sampling_temperature > 0` must hold, but got "
         r"sampling_temperature=0.0"),
        ({"head_hidden": "-8"}, r"`head_hidden >= 0` must hold, but got head_hidden=-8"),
        ({"smart_weight": "-1"}, r"`smart_weight >= 0` must hold, but got smart_weight=-1.0"),
        ({"smart_eps": "0"}, r"`smart_eps > 0` must hold, but got smart_eps=0.0"),
        ({"smart_steps": "0"}, r"`smart_steps >= 1` must hold, but got smart_steps=0"),
        ({"smart_weight": "1", "compile": "on"}, r"compile='on' needs smart_weight == 0 .* but "
         r"got smart_weight=1.0; use compile='auto' or 'off' with SMART"),
    ],
)
def test_bad_config_rejected_before_training(values: dict, message: str) -> None:
    # bad keys and values are refused with the key and the allowed values
    with pytest.raises(ConfigError, match=message):
        resolve_config("it1-baseline", values)


# one preset of each kind Tune runs: SST only, multi-task with gradient surgery, cross-encoded
# pairs; every preset trains in `test_each_preset_trains_an_epoch` without Ray (a Tune trial
# costs seconds of process start, the epoch itself a fraction of one)
IN_TUNE = ("it1-baseline", "it5-pcgrad", "it9-cross-encoder")


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_an_epoch(name: str, tiny_bert_dir: Path, tiny_data_dir: Path) -> None:
    from mtl_tune.platform.bundle import cached_bundle
    from mtl_tune.platform.train import Trainer

    config = resolve_config(name, tiny_trial(tiny_bert_dir, tiny_data_dir, threads=1))
    result = Trainer(config, cached_bundle(config).for_config(config)).run_epoch(1)
    # every dev metric, finite, and the train loss of each task the preset samples
    assert set(METRIC_KEYS) <= set(result.metrics)
    assert all(math.isfinite(result.metrics[k]) for k in METRIC_KEYS)
    tasks = {"sst"} if PRESETS[name].overrides["sampling"] == "sst-only" else {
        "sst", "para", "sts"}
    assert {k for k in result.metrics if k.startswith("train_loss_")} == {
        f"train_loss_{t}" for t in tasks}


def test_every_preset_is_registered_under_its_name(ray_local: None) -> None:
    from ray.tune.registry import get_trainable_cls

    # Tune finds each iteration, and `multitask`, by name in the running cluster
    for name in [*PRESETS, GENERIC]:
        assert get_trainable_cls(name)._name == name.replace("-", "_")


@pytest.fixture(scope="module")
def preset_trials(
    ray_local: None, tiny_bert_dir: Path, tiny_data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Some presets' registered trainables run by Tune, all in one run: name -> its Trial."""
    from ray.tune import Experiment, run_experiments

    storage = tmp_path_factory.mktemp("presets")
    config = tiny_trial(tiny_bert_dir, tiny_data_dir, threads=1)
    experiments = [Experiment(name, name, config=config, storage_path=str(storage),
                              resources_per_trial={"cpu": 0.5}) for name in IN_TUNE]
    trials = run_experiments(experiments, verbose=0, raise_on_failed_trial=False)
    return {trial.trainable_name: trial for trial in trials}


@pytest.mark.parametrize("name", IN_TUNE)
def test_registered_trainable_runs_under_tune(name: str, preset_trials: dict[str, Any]) -> None:
    trial = preset_trials[name]
    # the trial of the trainable registered under the preset's name finished without error
    assert trial.status == "TERMINATED" and trial.error_file is None
    # every dev metric, the train losses and the timings are reported
    expected = {*METRIC_KEYS, "train_loss_sst", "epoch_seconds", "examples_per_second"}
    assert expected <= set(trial.last_result)
    if PRESETS[name].overrides["sampling"] != "sst-only":
        # multi-task presets also train (and report) the paraphrase and STS losses
        assert {"train_loss_para", "train_loss_sts"} <= set(trial.last_result)
    with trial.checkpoint.as_directory() as folder:
        state = read_state(Path(folder))
        # the checkpoint holds the epoch, the resolved preset and per-example dev predictions
        assert state["epochs_done"] == 1
        assert state["config"]["sampling"] == PRESETS[name].overrides["sampling"]
        assert state["config"]["pair_encoding"] == resolve_config(name, {}).pair_encoding
        assert (Path(folder) / PREDICTIONS_FILE).is_file()


def test_generic_trainable_takes_preset_from_config(
    ray_local: None, tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    space = tiny_trial(
        tiny_bert_dir, tiny_data_dir, trainable=tune.grid_search(["it1-baseline", "it3-cosine-sts"])
    )
    results = tune.Tuner(
        GENERIC, param_space=space, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)
    ).fit()
    # both trials trained (no error, an epoch reported) ...
    assert [r.error for r in results] == [None, None]
    assert [r.metrics["training_iteration"] for r in results] == [1, 1]
    # ... each with the preset its config named: the checkpoint's resolved configuration has
    # that preset's STS head and pair dropout (the config itself names only the trainable)
    trained = {}
    for r in results:
        with r.checkpoint.as_directory() as folder:
            config = read_state(Path(folder))["config"]
        trained[r.config["trainable"]] = (config["sts_head"], config["pair_dropout"])
    assert trained == {"it1-baseline": ("linear", False), "it3-cosine-sts": ("cosine", True)}
