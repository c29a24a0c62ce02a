"""Interruptions a user meets: Ctrl-C then `study resume` trains every trial to its planned end.

The driver runs in a subprocess with its own RAY_TMPDIR (see `launch_and_kill`), so that every
Ray process it starts is found and stopped by the test.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mtl_tune.studies import existing_study, load_results, storage_root
from mtl_tune.studies.results._results import read_result_rows
from mtl_tune.studies.store import read_meta
from tests.helpers import write_tiny_data
from tests.studies.conftest import (
    NO_SCHEDULER,
    launch_and_kill,
    launch_and_kill_at_deletion,
    resume_cli,
    stored_objects,
    tiny_fixed,
    write_spec,
)

GRID_TOP = """
name = "ctrlc"
trainables = ["it1-baseline", "it7-cosrelu-tuned"]
search = "grid"
max_concurrent = 2
"""


def epochs_reported(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial folder name -> its reported rows (`result.json`), for each trial of an experiment."""
    if not experiment.is_dir():
        return {}
    return {d.name: read_result_rows(d) for d in experiment.iterdir()
            if d.is_dir() and not d.name.startswith(".")}


def saved_checkpoints(experiment: Path) -> dict[str, str]:
    """Trial id -> the checkpoint Ray Tune's newest saved state would resume it from."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trials = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (OSError, ValueError):  # being written
        return {}
    out = {}
    for _, metadata in trials:
        last = json.loads(metadata).get("last_result") or {}
        if last.get("checkpoint_dir_name"):
            out[str(last["trial_id"])] = str(last["checkpoint_dir_name"])
    return out


def _mid_run(experiment: Path, epochs: int) -> dict[str, list[dict[str, Any]]] | None:
    """The reported rows once Tune's saved state holds a checkpoint of a trial, a trial's rows are
    in the study (Tune copies them at its save, which a stop can catch part-way) and no trial has
    reported its last epoch."""
    rows = epochs_reported(experiment)
    started = bool(saved_checkpoints(experiment)) and any(rows.values())
    return rows if started and all(len(r) < epochs for r in rows.values()) else None


@pytest.mark.chaos  # a minute; the default run resumes after Ctrl-C in test_ctrl_c_gap
def test_ctrl_c_then_resume_trains_every_remaining_epoch(
    tmp_path: Path, tiny_bert_dir: Path, ray_tmp: Path
) -> None:
    data = write_tiny_data(tmp_path / "data", rows=480)  # epochs of about a second
    fixed = tiny_fixed(tiny_bert_dir, data, epochs=3)
    path = write_spec(tmp_path, GRID_TOP, fixed, NO_SCHEDULER)
    root = tmp_path / "studies"
    experiment = root / "ctrlc" / "tune" / "main"
    before = launch_and_kill(path, data, root, ray_tmp,
                             lambda: _mid_run(experiment, 3), interrupt=True)
    interrupted = [name for name, rows in before.items() if rows]
    # the Ctrl-C landed while a trial was part-way: it had reported 1 or 2 of its 3 epochs
    assert interrupted
    log = (path.parent / "launch.log").read_text()
    # the driver printed the exact command that continues, instead of Tune's Python hint
    hint = "interrupted; continue the study with:\n  mtl-tune study resume ctrlc --storage "
    assert hint + str(root) in log and "Tuner.restore(" not in log, log[-3000:]
    # the study is not marked finished
    assert read_meta(root / "ctrlc").finished_at is None

    resume_cli("ctrlc", root, ray_tmp, tmp_path / "resume.log")
    after = epochs_reported(experiment)
    for name, rows in after.items():
        epochs = [r["training_iteration"] for r in rows]
        # every trial trained its 3 planned epochs (an epoch reported after the Ctrl-C, whose
        # checkpoint Tune had not kept, is trained again from the one before) ...
        assert sorted(set(epochs)) == [1, 2, 3] and epochs == sorted(epochs), (name, epochs)
    for name in interrupted:
        # ... and an interrupted one continued rather than started again: its first epoch
        # was reported once, and the epochs trained twice scored the same (seeded)
        epochs = [r["training_iteration"] for r in after[name]]
        assert epochs.count(1) == 1 and after[name][0] == before[name][0]
        again = {r["training_iteration"]: r["overall"] for r in after[name]}
        assert all(again[r["training_iteration"]] == r["overall"] for r in before[name])
    results = load_results(root / "ctrlc")
    # the study's record agrees: two trials, both finished, with epochs 1 to 3
    assert sorted(results.groupby("trial_id")["status"].last()) == ["TERMINATED"] * 2
    assert sorted(results.groupby("trial_id")["epoch"].apply(list)) == [[1, 2, 3]] * 2
    # a finished study keeps no optimizer state
    assert not list(experiment.glob("*/checkpoint_*/optimizer.pt"))


WINDOW_TOP = GRID_TOP.replace('name = "ctrlc"', 'name = "window"')


def _local_checkpoints(experiment: Path) -> Callable[[], set[str]]:
    def listing() -> set[str]:
        try:
            return {f"{trial.name}/{c.name}" for trial in os.scandir(experiment)
                    if trial.is_dir() and not trial.name.startswith(".")
                    for c in os.scandir(trial.path) if c.name.startswith("checkpoint_")}
        except FileNotFoundError:  # not made yet, or a folder deleted while listed
            return set()
    return listing


def _stored_checkpoints(study: str) -> Callable[[], set[str]]:
    def listing() -> set[str]:
        return {p.rsplit("/", 1)[0] for p in stored_objects(study) if "/checkpoint_" in p}
    return listing


# a minute and more each; the default run has the retention rule (test_retention) and a kill
# at a checkpoint's save (below)
@pytest.mark.chaos
@pytest.mark.parametrize("storage", ["local", "s3"])
def test_a_kill_the_instant_a_checkpoint_is_deleted_loses_no_trial(
    storage: str, request: pytest.FixtureRequest, tmp_path: Path, tiny_bert_dir: Path,
    ray_tmp: Path,
) -> None:
    """Ray Tune deleted a superseded checkpoint before saving the state that names its
    successor: a kill in between left a trial that cannot resume. Now the driver deletes only
    what Tune's saved state on the storage no longer needs, so no kill instant loses one."""
    # epochs of about two seconds, several of Tune's state saves (every 0.5 s) each, so that
    # the retention that follows those saves deletes while the trials still run
    data = write_tiny_data(tmp_path / "data", rows=320)
    # 6 epochs: a running trial keeps its best checkpoint and the two newest, so deletions
    # come mid-study only from its fourth epoch on
    fixed = tiny_fixed(tiny_bert_dir, data, epochs=6)
    path = write_spec(tmp_path, WINDOW_TOP, fixed, NO_SCHEDULER)
    extra: tuple[str, ...] = ()
    if storage == "s3":
        root: str | Path = request.getfixturevalue("s3_bucket")
        listing = _stored_checkpoints(f"{root}/window")
        extra = ("--optuna-storage", str(tmp_path / "optuna.journal"))
    else:
        root = tmp_path / "studies"
        listing = _local_checkpoints(root / "window" / "tune" / "main")
    gone = launch_and_kill_at_deletion(path, data, root, ray_tmp, listing, extra=extra)
    folder = existing_study(storage_root(str(root)), "window")
    killed = load_results(folder)
    # the kill came mid-study: a trial had not trained its 6 epochs
    assert killed.groupby("trial_id")["epoch"].max().min() < 6, (gone, killed)

    resume_cli("window", root, ray_tmp, tmp_path / "resume.log")
    folder = existing_study(storage_root(str(root)), "window")
    results = load_results(folder)
    # every trial resumed and trained its 6 epochs
    assert sorted(results.groupby("trial_id")["status"].last()) == ["TERMINATED"] * 2
    assert sorted(results.groupby("trial_id")["epoch"].apply(list)) == [[1, 2, 3, 4, 5, 6]] * 2
    kept = sorted(listing())
    best = results.loc[results.groupby("trial_id")["overall"].idxmax()]
    # each finished trial keeps exactly its best epoch's checkpoint
    assert len(kept) == 2 and {Path(c).name for c in best["checkpoint"]} == {
        k.rsplit("/", 1)[1] for k in kept}


COPY_TOP = """
name = "copied"
trainables = ["it7-cosrelu-tuned"]
search = "optuna"
num_samples = 2
seeds = 2
max_concurrent = 2
optuna_seed = 1
"""


def _fingerprint(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder`."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _some_finished(folder: Path) -> dict[str, str] | None:
    """The record's last event by trial once a trial finished and another has not."""
    record = folder / "trials.jsonl"
    if not record.is_file():
        return None
    events = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    last = {e["trial_id"]: e["event"] for e in events}
    ended = [t for t, e in last.items() if e in ("finished", "stopped")]
    return last if ended and len(ended) < len(last) else None


@pytest.mark.chaos
def test_a_copied_study_resumes_in_place_and_leaves_its_original_untouched(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    import shutil

    from tests.studies.conftest import ASHA, TPE_SPACE

    fixed = tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=2)
    path = write_spec(tmp_path, COPY_TOP, fixed, TPE_SPACE + ASHA)
    root, elsewhere = tmp_path / "studies", tmp_path / "elsewhere"
    launch_and_kill(path, tiny_data_dir, root, ray_tmp, lambda: _some_finished(root / "copied"))
    shutil.copytree(root / "copied", elsewhere / "copied", symlinks=True)  # cp -a
    original = _fingerprint(root / "copied")

    resume_cli("copied", elsewhere, ray_tmp, tmp_path / "resume.log")
    # the original was not written to: the same files, byte for byte
    assert _fingerprint(root / "copied") == original
    results = load_results(elsewhere / "copied")
    # the copy finished every trial: 2 configurations x 2 seeds
    assert sorted(results.groupby("trial_id")["status"].last()) == ["TERMINATED"] * 4
    meta = json.loads((elsewhere / "copied" / "study.json").read_text())
    # its metadata names its own folder and its own Optuna file
    assert meta["folder"] == str((elsewhere / "copied").resolve())
    assert meta["optuna_storage"] == f"sqlite:///{(elsewhere / 'copied').resolve()}/optuna.db"
    import optuna

    study = optuna.load_study(study_name="copied", storage=meta["optuna_storage"])
    # the copy's Optuna record holds one trial per seed group, both groups
    assert len(study.trials) == 2


STAGED_TOP = """
name = "staged"
trainables = ["it1-baseline"]
search = "grid"
"""


def _new_tmp_checkpoints(before: set[str]) -> list[Path]:
    """Checkpoints written into the system's temporary folder since `before` was listed."""
    temp = Path(tempfile.gettempdir())
    return [p.parent for p in temp.glob("*/model.safetensors") if p.parent.name not in before]


def test_a_trial_killed_while_saving_leaves_its_checkpoint_only_in_the_study(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    """A trial writes each checkpoint whole, then hands it to Tune: killed in between, what it
    wrote stays in its trial folder (which `study resume` clears: test_resume), never in the
    temp folder."""
    path = write_spec(tmp_path, STAGED_TOP, tiny_fixed(tiny_bert_dir, tiny_data_dir, epochs=3),
                      NO_SCHEDULER)
    root = tmp_path / "studies"
    experiment = root / "staged" / "tune" / "main"
    before = {p.name for p in Path(tempfile.gettempdir()).iterdir()}

    def staged() -> tuple[list[Path], list[Path]] | None:
        # called with the driver stopped: once the trial runs, it trains on to its next report,
        # which waits on the driver, its staged checkpoint kept until then
        deadline = time.monotonic() + (5.0 if any(experiment.glob("*/result.json")) else 0.0)
        while True:
            # a complete one: the folder exists empty (a temporary folder, or its `.old` name
            # during the swap) before its files are in
            inside = [p for p in experiment.glob("*/.staging/epoch*")
                      if (p / "trainer_state.json").is_file()]
            outside = _new_tmp_checkpoints(before)
            if inside or outside:
                return inside, outside
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    inside, outside = launch_and_kill(path, tiny_data_dir, root, ray_tmp, staged)
    # the kill came while a checkpoint was staged: it is in its trial's folder, whole, and the
    # temp folder holds none, before or after the trial's processes were stopped
    assert inside and outside == [] and _new_tmp_checkpoints(before) == []
    assert all((p / "model.safetensors").is_file() for p in inside)
