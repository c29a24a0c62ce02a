"""Finished trials lose their checkpoints' optimizer state; errored ones keep it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mtl_tune.studies.store._lean import drop_finished_optimizer_state


def _trial_dir(root: Path, name: str, checkpoints: int = 2) -> Path:
    folder = root / name
    for i in range(checkpoints):
        ckpt = folder / f"checkpoint_{i:06d}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"w" * 10)
        (ckpt / "optimizer.pt").write_bytes(b"o" * 100)
    return folder


def _optimizer_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("optimizer.pt"))


def _result(path: Path, trial_id: str, error: Exception | None = None) -> SimpleNamespace:
    return SimpleNamespace(path=str(path), error=error, filesystem=None,
                           metrics={"trial_id": trial_id})


def test_sweep_skips_errored_and_interrupted_trials_and_counts_bytes(tmp_path: Path) -> None:
    ok, failed = _trial_dir(tmp_path, "ok", 3), _trial_dir(tmp_path, "failed")
    interrupted = _trial_dir(tmp_path, "interrupted")
    results = [
        _result(ok, "ok"),
        _result(failed, "failed", RuntimeError("boom")),
        _result(interrupted, "interrupted"),  # Ctrl-C: no error, but not ended either
        _result(tmp_path / "never-started", "never"),
    ]
    ended = {"ok", "failed", "never"}
    # three optimizer files of 100 bytes are freed; a missing trial folder is no error
    assert drop_finished_optimizer_state(results, ended) == 300
    # an errored trial may be resumed (resume_errored), so it keeps its optimizer state
    assert _optimizer_files(ok) == [] and len(_optimizer_files(failed)) == 2
    # an interrupted trial, which the record does not say ended, keeps it to resume from
    assert len(_optimizer_files(interrupted)) == 2
    # a second sweep finds nothing left to free
    assert drop_finished_optimizer_state(results, ended) == 0


def test_sweep_passes_over_the_trials_retention_settled(tmp_path: Path) -> None:
    # retention settled them already (their optimizer state is gone): on a store each sweep
    # is a listing, a thousand of them at the end of a thousand-trial study
    settled, other = _trial_dir(tmp_path, "settled"), _trial_dir(tmp_path, "other")
    (tmp_path / ".mtl-tune-settled").mkdir()
    (tmp_path / ".mtl-tune-settled" / "settled").touch()
    results = [_result(settled, "settled"), _result(other, "other")]
    assert drop_finished_optimizer_state(results, {"settled", "other"}) == 200
    assert len(_optimizer_files(settled)) == 2 and _optimizer_files(other) == []
