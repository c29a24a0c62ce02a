"""`mtl-tune train --out`: a run never loses the folder it replaces, nor one it must not touch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.platform.train import Trainer

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(tiny_bert: Path, data: Path, out: str, *extra: str, backbone: str | None = None):
    return runner.invoke(app, [
        "train", "it6-balanced", "--set", f"backbone={backbone or tiny_bert}",
        "--set", "batch_size=8", "--set", "max_length=32", "--epochs", "1",
        "--max-examples", "16", "--data-dir", str(data), "--out", out, *extra,
    ])


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    (folder / "best").mkdir(parents=True)
    (folder / "metrics.json").write_text('{"mine": true}')
    (folder / "best" / "model.safetensors").write_bytes(b"precious weights")
    return folder


def test_force_with_a_bad_backbone_leaves_the_old_run_as_it_was(
    tiny_bert_dir: Path, tiny_data_dir: Path, old_run: Path, tmp_path: Path
) -> None:
    before = _tree(old_run)
    result = _train(tiny_bert_dir, tiny_data_dir, str(old_run), "--force",
                    backbone=str(tmp_path / "no-such-backbone"))
    # the run fails with a message naming the missing backbone folder, not a traceback ...
    assert result.exit_code == 1
    assert "Error: model path" in result.stderr and "no-such-backbone" in result.stderr
    assert "is not a local folder" in result.stderr
    # ... and the folder it would have replaced is there byte for byte, with nothing beside it
    assert _tree(old_run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_run_failing_in_its_first_epoch_keeps_the_old_run(
    tiny_bert_dir: Path, tiny_data_dir: Path, old_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _tree(old_run)

    def crash(self: Trainer, epoch: int, on_step: object = None) -> None:
        raise RuntimeError("the machine fell over")

    monkeypatch.setattr(Trainer, "run_epoch", crash)
    result = _train(tiny_bert_dir, tiny_data_dir, str(old_run), "--force")
    # an unexpected failure still fails the command ...
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    # ... and the old run survives, with no half-made run left beside it
    assert _tree(old_run) == before
    assert [p.name for p in old_run.parent.iterdir()] == ["run"]


def test_force_replaces_the_old_run_once_the_new_one_has_a_checkpoint(
    tiny_bert_dir: Path, tiny_data_dir: Path, old_run: Path
) -> None:
    result = _train(tiny_bert_dir, tiny_data_dir, str(old_run), "--force")
    assert result.exit_code == 0, result.output
    # the folder now holds the new run only: its checkpoints and metrics, none of the old files
    files = _tree(old_run)
    assert "metrics.json" in files and b"mine" not in files["metrics.json"]
    assert files["best/model.safetensors"] != b"precious weights"
    assert {"last/trainer_state.json", "best/trainer_state.json"} <= set(files)
    # no staging or .old folder is left beside it
    assert [p.name for p in old_run.parent.iterdir()] == ["run"]


def test_bad_backbone_leaves_no_empty_out_folder(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "new-run"
    result = _train(tiny_bert_dir, tiny_data_dir, str(out), backbone=str(tmp_path / "missing"))
    # a run that cannot start writes nothing: no empty --out folder is left behind
    assert result.exit_code == 1 and not out.exists()


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        (".", "is the current folder or a folder above it"),
        ("..", "is the current folder or a folder above it"),
        ("~", "is your home folder"),
        ("/", "is the root of the file system"),
        ("a-file.txt", "is an existing file, not a folder"),
    ],
)
def test_out_folders_a_run_must_never_replace_are_refused(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    out: str, reason: str,
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "home" / "work" / "project"
    cwd.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    (cwd / "notes.txt").write_text("mine")
    (cwd / "a-file.txt").write_text("also mine")
    before = _tree(home)
    result = _train(tiny_bert_dir, tiny_data_dir, out, "--force")
    # the value is refused, saying why and what to pass instead ...
    assert result.exit_code == 1
    assert f"Error: --out {out} {reason}; pass a new folder for the run" in result.stderr
    # ... and nothing was deleted or written
    assert _tree(home) == before


def test_root_is_refused_from_anywhere(
    tiny_bert_dir: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtl_tune.exceptions import MtlTuneError
    from mtl_tune.platform.out_folder import check_out
    from mtl_tune.platform.standalone import RUN_KIND

    monkeypatch.setattr(Path, "cwd", lambda: Path("/nonexistent-cwd"))
    # the file system root is named as such, wherever the current folder is
    with pytest.raises(MtlTuneError, match=r"--out / is the root of the file system"):
        check_out(Path("/"), RUN_KIND, {}, force=True)


@pytest.mark.parametrize("at_epoch", [1, 2])
def test_ctrl_c_in_an_epoch_says_what_was_kept(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    at_epoch: int,
) -> None:
    run_epoch = Trainer.run_epoch

    def interrupted(self: Trainer, epoch: int, on_step: object = None):  # type: ignore[no-untyped-def]
        if epoch == at_epoch:
            raise KeyboardInterrupt  # Ctrl-C while the epoch trains
        return run_epoch(self, epoch, on_step=on_step)

    monkeypatch.setattr(Trainer, "run_epoch", interrupted)
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "it6-balanced", "--set", f"backbone={tiny_bert_dir}", "--set", "batch_size=8",
        "--set", "max_length=32", "--epochs", "2", "--max-examples", "16",
        "--data-dir", str(tiny_data_dir), "--out", str(out)])
    # exit 130 (the shell's code for Ctrl-C), with one line saying where it stopped
    assert result.exit_code == 130, result.output
    if at_epoch == 1:
        assert result.stderr == (f"Interrupted: in epoch 1 of 2, before its first checkpoint: "
                                 f"nothing was written and {out} is as it was\n")
        assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []
        return
    last = result.stderr.splitlines()[-1]  # after the progress bars
    assert last.startswith(f"Interrupted: in epoch 2 of 2: {out} keeps the 1 finished epoch(s), "
                           "metrics.json marked interrupted")
    summary = json.loads((out / "metrics.json").read_text())
    # the epoch that finished is kept, marked, and nothing only resuming needs stays
    assert len(summary["epochs"]) == 1 and summary["stopped_early"] is False
    assert summary["interrupted"] == {"in_epoch": 2, "epochs_done": 1}
    assert not (out / "last" / "optimizer.pt").exists()
    assert (out / "best" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
