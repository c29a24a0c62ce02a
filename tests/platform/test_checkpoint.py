"""Checkpoints survive interrupted saves, full disks and tampering; bad ones are named, not used."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtl_tune.exceptions import CheckpointError, MtlTuneError
from mtl_tune.platform import atomic
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    checkpoint_folder,
    load_model,
    save_checkpoint,
)
from mtl_tune.platform.predict import predict_data
from mtl_tune.platform.presets import resolve_config
from mtl_tune.platform.train import Trainer
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _values(tiny_bert_dir: Path, tiny_data_dir: Path) -> dict:
    return {"backbone": str(tiny_bert_dir), "data_dir": str(tiny_data_dir), "epochs": 2,
            "batch_size": 8, "max_length": 32, "eval_batch_size": 64, "max_examples": 24}


@pytest.fixture(scope="module")
def trained(tiny_bert_dir: Path, tiny_data_dir: Path) -> Trainer:
    config = resolve_config("it6-balanced", _values(tiny_bert_dir, tiny_data_dir))
    trainer = Trainer(config, build_bundle(config).for_config(config))
    trainer.run_epoch(1)
    return trainer


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _scores(folder: Path, data: Path) -> dict[str, float]:
    return predict_data(folder, data, "dev", None).task_scores


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(
    trained: Trainer, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "best"
    save_checkpoint(trained, folder, {"overall": 0.5})
    before, scores = _snapshot(folder), _scores(folder, tiny_data_dir)
    calls = []

    def fail_on_second_file(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("killed halfway")
        atomic_write(path, data)

    atomic_write = atomic.write_bytes
    monkeypatch.setattr("mtl_tune.platform.checkpoint.write_bytes", fail_on_second_file)
    with pytest.raises(RuntimeError, match="killed halfway"):
        save_checkpoint(trained, folder, {"overall": 0.9})
    # the previous checkpoint is there byte for byte, and nothing half-written beside it
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    # predicting with it gives the same scores as before
    assert _scores(folder, tiny_data_dir) == scores


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"),
         r"no space left on the device holding .* while writing checkpoint; free some space"),
        (PermissionError(errno.EACCES, "Permission denied", "/x/model.safetensors"),
         r"cannot write checkpoint in .*: Permission denied \(/x/model.safetensors\); the "
         r"previous version is kept"),
    ],
)
def test_disk_errors_are_named_and_keep_the_previous_checkpoint(
    trained: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError,
    message: str,
) -> None:
    folder = tmp_path / "last"
    save_checkpoint(trained, folder, {})
    before = _snapshot(folder)

    def fail(path: Path, data: bytes) -> None:
        raise error

    monkeypatch.setattr("mtl_tune.platform.checkpoint.write_bytes", fail)
    # a full disk or another OSError gives the project's error: what, where, and how to fix
    with pytest.raises(MtlTuneError, match=message):
        save_checkpoint(trained, folder, {})
    # and the previous checkpoint is untouched
    assert _snapshot(folder) == before


def test_an_interrupted_swap_leaves_the_old_folder_in_use(
    trained: Trainer, tiny_data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "best"
    save_checkpoint(trained, folder, {})
    scores = _scores(folder, tiny_data_dir)
    # a kill between the two renames of a swap: NAME is gone, NAME.old holds the last checkpoint
    os.rename(folder, atomic.old_of(folder))
    # the loader finds and uses NAME.old, and says so
    assert checkpoint_folder(folder) == atomic.old_of(folder)
    assert _scores(folder, tiny_data_dir) == scores
    assert "using" in caplog.text and "best.old" in caplog.text
    # the next save puts a complete NAME back and removes NAME.old
    save_checkpoint(trained, folder, {})
    assert checkpoint_folder(folder) == folder and not atomic.old_of(folder).exists()


SAVER = """
import os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from mtl_tune.platform import atomic
from mtl_tune.platform.bundle import build_bundle
from mtl_tune.platform.checkpoint import save_checkpoint
from mtl_tune.platform.train import Trainer
from mtl_tune.platform.presets import resolve_config
values = {"backbone": sys.argv[1], "data_dir": sys.argv[2], "epochs": 2, "batch_size": 8,
          "max_length": 32, "eval_batch_size": 64, "max_examples": 24}
config = resolve_config("it6-balanced", values)
trainer = Trainer(config, build_bundle(config).for_config(config))
trainer.run_epoch(1)
folder, point = Path(sys.argv[3]), sys.argv[4]
save_checkpoint(trainer, folder, {})

def park(where):  # the test-only hook: say where the save is, and wait there for the kill
    print(where, flush=True)
    time.sleep(3600)

plain_rename, plain_swap = os.rename, atomic.swap_in
def rename(src, dst):
    plain_rename(src, dst)
    if point == "old-aside" and str(dst).endswith(".old"):
        park(point)
    if point == "new-in" and Path(dst) == folder:
        park(point)
def swap_in(staging, target):
    if point == "staged":
        park(point)
    plain_swap(staging, target)
atomic.os.rename, atomic.swap_in = rename, swap_in
trainer.run_epoch(2)  # the second save holds other weights than the first
save_checkpoint(trainer, folder, {})
"""

# where the second save is parked when it is killed, and what the folder then holds: the
# staged copy complete but not swapped in; the first checkpoint moved aside as NAME.old, the
# new one not yet in; the new one in, NAME.old not yet removed
KILL_POINTS = {
    "staged": ("first", True, False),
    "old-aside": ("first", False, True),
    "new-in": ("second", True, True),
}


@pytest.mark.process
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_during_a_save_leaves_a_loadable_checkpoint(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path, point: str
) -> None:
    folder = tmp_path / "ckpt"
    child = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(tiny_bert_dir), str(tiny_data_dir), str(folder), point],
        stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        # the save is parked at the point: the kill lands there, not somewhere by chance
        assert child.stdout.readline() == f"{point}\n".encode()
        first = _epochs(atomic.old_of(folder) if point != "staged" else folder)
        # what the complete checkpoint that must survive predicts, read while the save waits
        which = KILL_POINTS[point][0]
        survivor = folder if point == "staged" or which == "second" else atomic.old_of(folder)
        expected = _scores(survivor, tiny_data_dir)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    _, name_there, old_there = KILL_POINTS[point]
    assert (folder.exists(), atomic.old_of(folder).exists()) == (name_there, old_there)
    # whatever the point, a complete checkpoint is found: the first, or the whole second one
    found = checkpoint_folder(folder)
    assert _epochs(found) == (1 if which == "first" else 2), found
    assert first == 1
    # and it predicts exactly as that checkpoint did before the kill
    assert _scores(folder, tiny_data_dir) == expected


def _epochs(folder: Path) -> int:
    return int(json.loads((folder / STATE_FILE).read_text())["epochs_done"])


def test_tampered_weights_are_refused(
    trained: Trainer, tiny_data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "best"
    save_checkpoint(trained, folder, {})
    path = folder / MODEL_FILE
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = random.Random(1).randbytes(4096)
    path.write_bytes(bytes(data))
    # 4 KiB of random bytes in the middle of the weights: the recorded sha256 catches them
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match the sha256 "
                       r"recorded in trainer_state.json: the file was changed or damaged"):
        load_model(folder)


def test_truncated_weights_without_a_hash_are_named(trained: Trainer, tmp_path: Path) -> None:
    folder = tmp_path / "best"
    save_checkpoint(trained, folder, {})
    state = json.loads((folder / STATE_FILE).read_text())
    del state["sha256"]  # as in a checkpoint from before hashes were recorded
    (folder / STATE_FILE).write_text(json.dumps(state))
    path = folder / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])
    # a garbled safetensors file is named, with how to go on
    with pytest.raises(CheckpointError, match=r"model.safetensors is not a readable safetensors "
                       r"file .*; use another checkpoint or train again"):
        load_model(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["bert_config"].update(rope=True),
         r"trainer_state.json describes no model this version can build"),
        (lambda s: s["bert_config"].update(hidden_size=64, intermediate_size=128),
         r"the weights in .*model.safetensors do not fit the model its trainer_state.json "
         r"describes .*different runs"),
        (lambda s: s.pop("bert_config"), r"trainer_state.json lacks \['bert_config'\]"),
    ],
)
def test_state_that_does_not_match_its_weights_is_named(
    trained: Trainer, tmp_path: Path, edit, message: str
) -> None:
    folder = tmp_path / "best"
    save_checkpoint(trained, folder, {})
    state = json.loads((folder / STATE_FILE).read_text())
    edit(state)
    (folder / STATE_FILE).write_text(json.dumps(state))
    # a trainer_state.json that does not describe its weights is refused, saying which file
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    # a folder that does not exist, and one that holds no checkpoint, are told apart
    with pytest.raises(CheckpointError, match=r"checkpoint folder .*nope does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"is not an mtl-tune checkpoint: "
                       r"trainer_state.json or model.safetensors is missing"):
        load_model(tmp_path)


def test_weights_survive_a_round_trip(trained: Trainer, tmp_path: Path) -> None:
    save_checkpoint(trained, tmp_path / "c", {})
    model, _, _ = load_model(tmp_path / "c")
    # what is loaded is exactly what was saved
    for ours, theirs in zip(model.parameters(), trained.model.parameters(), strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.process
def test_predicting_imports_no_training_loop() -> None:
    import subprocess
    import sys

    code = ("import sys, mtl_tune.platform.predict, mtl_tune.platform.export; "
            "print(sorted(m for m in sys.modules if m.startswith('mtl_tune.platform.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    # the checkpoint module reads a trainer's state dict, not the trainer
    assert "mtl_tune.platform.checkpoint" in loaded
    for training in ("train", "combinations", "gradients", "smart", "loss_log"):
        assert f"'mtl_tune.platform.{training}'" not in loaded, loaded
