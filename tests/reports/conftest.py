"""Report fixtures: one real small study (tiny BERT, 3 trainables x 2 seeds x 2 epochs) built once
per session, and copies of it that are still running, have an errored trial, or are a search."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import tiny_trial

# registry order is it1, it3, it4; the grid lists them otherwise so that row order is tested
TRAINABLES = ["it4-round-robin", "it1-baseline", "it3-cosine-sts"]
SEEDS = [0, 1]
# the spec the grid below runs: 3 trainables x 2 seeds
SPEC = ('# the tiny test study; docs: https://example.org/mtl-tune\nname = "tiny"\n'
        f'trainables = {TRAINABLES!r}\nsearch = "grid"\nseeds = {len(SEEDS)}\n'.replace("'", '"'))


class Built(NamedTuple):
    study: Path  # a finished grid study folder
    errored: Path  # a study folder whose experiment "extra" holds one errored trial


def tiny_config(bert: Path, data: Path) -> dict:
    return tiny_trial(bert, data, epochs=2)


def write_metadata(folder: Path, name: str, search: str, data: Path) -> None:
    meta = {"name": name, "search": search, "metric": "overall", "mode": "max",
            "trainables": sorted(TRAINABLES), "data_dir": str(data),
            "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00",
            "wall_seconds": 60.0}
    (folder / "study.json").write_text(json.dumps(meta))
    (folder / "spec.toml").write_text(SPEC)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Evaluations in the reports use one thread: faster than two on a loaded 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path,
          tiny_data_dir: Path) -> Built:
    from ray import tune

    from mtl_tune.studies.driver import TrialEvents
    from tests.conftest import start_shared_ray

    root = tmp_path_factory.mktemp("studies")
    study, errored = root / "tiny", root / "errored"
    base = tiny_config(tiny_bert_dir, tiny_data_dir)
    start_shared_ray()
    study.mkdir()
    errored.mkdir()
    space = {**base, "trainable": tune.grid_search(TRAINABLES),
             "seed": tune.grid_search(SEEDS)}
    tune.Tuner(
        "multitask", param_space=space, tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(study / "tune"), name="main", verbose=0,
                                  callbacks=[TrialEvents(study, "main")]),
    ).fit()
    # the trainable rejects this config before training: a real errored trial
    bad = {**base, "trainable": "it1-baseline", "seed": 2, "sts_head": "dot"}
    tune.Tuner(
        "multitask", param_space=bad,
        run_config=tune.RunConfig(storage_path=str(errored / "tune"), name="extra",
                                  verbose=0, callbacks=[TrialEvents(errored, "extra")]),
    ).fit()
    write_metadata(study, "tiny", "grid", tiny_data_dir)
    return Built(study, errored)


@pytest.fixture(scope="session")
def study(built: Built) -> Path:
    return built.study


def _link_or_copy(src: str, dst: str) -> None:
    # big binaries are hard-linked (never edited); text files are copied, since tests edit them
    if src.endswith((".safetensors", ".pt", ".pkl")):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_study(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("reports"))
    return dest


def _set_state(folder: Path, event: str, chosen) -> list[Path]:
    """Records `event` as the last event of each trial whose (trainable, seed) is `chosen`, as a
    driver would have; returns those trials' folders."""
    from mtl_tune.studies.store._trial_log import append_event, read_trials

    changed = []
    for record in read_trials(folder).values():
        key = (record.config.get("trainable"), record.config.get("seed"))
        if chosen(key):
            append_event(folder, record.experiment, record.trial_id, event, record.config,
                         record.path)
            changed.append(Path(record.path))
    return changed


def hold_as_driver(folder: Path) -> None:
    """Writes the study's driver lock naming this test process, alive: the study is running
    (a study no driver runs shows its unfinished trials as interrupted)."""
    import dataclasses
    import socket
    import time

    import psutil

    from mtl_tune.studies.store._lock import Holder
    from mtl_tune.studies.store._storage import LOCK_FILE

    me = psutil.Process()
    holder = Holder(me.pid, socket.gethostname(), me.create_time(), time.time())
    (folder / LOCK_FILE).write_text(json.dumps(dataclasses.asdict(holder)))


@pytest.fixture(scope="session")
def messy_study(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study as if still running (its driver lock names this process): it1 seed 1 RUNNING
    after epoch 1 (and halfway through writing its next result line), it4 seed 1 PENDING, and
    an errored it1 trial (seed 2) in a second experiment."""
    folder = copy_study(built.study, tmp_path_factory.mktemp("messy") / "messy")
    shutil.copytree(built.errored / "tune" / "extra", folder / "tune" / "extra")
    with open(folder / "trials.jsonl", "a") as record:  # paths are relative: they stay valid
        record.write((built.errored / "trials.jsonl").read_text())
    for trial_dir in _set_state(folder, "running", lambda key: key == ("it1-baseline", 1)):
        lines = (trial_dir / "result.json").read_text().splitlines()
        (trial_dir / "result.json").write_text(lines[0] + "\n" + lines[1][:40])
        shutil.rmtree(trial_dir / "checkpoint_000001")
    for trial_dir in _set_state(folder, "created", lambda key: key == ("it4-round-robin", 1)):
        shutil.rmtree(trial_dir)
    hold_as_driver(folder)
    return folder


@pytest.fixture(scope="session")
def pending_study(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study as if just launched: every trial PENDING, nothing reported yet (its driver
    lock names this process)."""
    folder = copy_study(built.study, tmp_path_factory.mktemp("pending") / "pending")
    for trial_dir in _set_state(folder, "created", lambda key: True):
        shutil.rmtree(trial_dir)
    hold_as_driver(folder)
    return folder


@pytest.fixture(scope="session")
def unlabeled_data_dir(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data with test files as the course hands them out: `*-test-student.csv`, no label
    column, a leading unnamed index column."""
    from mtl_tune.platform.tasks import MAIN_TASKS, TASKS

    folder = tmp_path_factory.mktemp("unlabeled")
    for path in tiny_data_dir.glob("*.csv"):
        if not path.name.endswith("-test.csv"):
            shutil.copy(path, folder / path.name)
    for task in MAIN_TASKS:
        spec = TASKS[task]
        source = tiny_data_dir / f"{spec.prefix}-test.csv"
        with source.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        target = folder / f"{spec.prefix}-test-student.csv"
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["", "id", *spec.text_columns])
            for number, row in enumerate(rows):
                writer.writerow([number, row["id"], *(row[c] for c in spec.text_columns)])
    return folder


@pytest.fixture(scope="session")
def search_study(built: Built, tmp_path_factory: pytest.TempPathFactory,
                 tiny_data_dir: Path) -> Path:
    """The study's trials seen as an Optuna search over `trainable` and `seed`, with an
    optuna.db holding one COMPLETE trial per Ray trial (value: its best dev overall)."""
    import optuna
    from ray.tune import ExperimentAnalysis

    folder = copy_study(built.study, tmp_path_factory.mktemp("search") / "search")
    write_metadata(folder, "search", "optuna", tiny_data_dir)
    analysis = ExperimentAnalysis(str(folder / "tune" / "main"))
    storage = f"sqlite:///{folder / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt = optuna.create_study(study_name="search", storage=storage, direction="maximize")
    distributions = {
        "trainable": optuna.distributions.CategoricalDistribution(sorted(TRAINABLES)),
        "seed": optuna.distributions.IntDistribution(min(SEEDS), max(SEEDS)),
    }
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        frame = analysis.trial_dataframes[trial.trial_id]
        opt.add_trial(optuna.trial.create_trial(
            params={"trainable": trial.config["trainable"], "seed": trial.config["seed"]},
            distributions=distributions,
            value=float(frame["overall"].max()),
            user_attrs={"ray_trial_id": trial.trial_id},
        ))
    return folder
