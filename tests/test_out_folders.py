"""`--out` of `train`, `predict` and `export`: never over the command's inputs, and `--force`
replaces only the command's own earlier output (every byte of anything else stays)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.platform.out_folder import OutputKind, check_out

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder`: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _train_args(tiny_bert: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "it6-balanced", "--set", f"backbone={tiny_bert}", "--set", "batch_size=8",
            "--set", "max_length=32", "--epochs", "1", "--max-examples", "16",
            "--data-dir", str(data), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def run(tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Path:
    """A finished `mtl-tune train` run (metrics.json, best/, last/); tests copy it."""
    out = tmp_path_factory.mktemp("train") / "run"
    result = runner.invoke(app, _train_args(tiny_bert_dir, tiny_data_dir, out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def my_run(run: Path, tmp_path: Path) -> Path:
    """A copy of the run with a file of the user's in it."""
    mine = shutil.copytree(run, tmp_path / "runs" / "x")
    (mine / "notes.md").write_text("what I learned")
    return mine


def _refused(result, start: str) -> None:
    # exit 1, one line on stderr saying what and how to fix, no traceback
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {start}"), result.stderr


def test_export_into_its_own_run_folder_is_refused_with_force(my_run: Path) -> None:
    before = _tree(my_run)
    result = runner.invoke(app, ["export", str(my_run / "best"), "--out", str(my_run), "--force"])
    # the folder holding the checkpoint is never the export's, whatever the flags
    _refused(result, f"--out {my_run} contains the checkpoint {my_run / 'best'}; `mtl-tune "
                     "export` never writes over what it reads, whatever the flags")
    assert _tree(my_run) == before


def test_export_into_the_checkpoint_is_refused(my_run: Path) -> None:
    before = _tree(my_run)
    checkpoint = my_run / "best"
    for out in (checkpoint, checkpoint / "exported"):
        result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out), "--force"])
        relation = "is" if out == checkpoint else "lies inside"
        _refused(result, f"--out {out} {relation} the checkpoint {checkpoint};")
    assert _tree(my_run) == before


def test_train_out_on_its_data_folder_is_refused_with_force(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    data = shutil.copytree(tiny_data_dir, tmp_path / "data")
    (data / "my-notes.txt").write_text("where these rows came from")
    before = _tree(data)
    for out in (data, data / "run", tmp_path):
        result = runner.invoke(app, _train_args(tiny_bert_dir, data, out, "--force"))
        relation = {data: "is", tmp_path: "contains"}.get(out, "lies inside")
        _refused(result, f"--out {out} {relation} the data folder {data};")
    # the data folder, the user's notes included, is there byte for byte
    assert _tree(data) == before


def test_export_force_keeps_a_folder_of_other_files(my_run: Path, tmp_path: Path) -> None:
    userdir = tmp_path / "userdir"
    (userdir / "sub").mkdir(parents=True)
    (userdir / "thesis.tex").write_text("chapter 1")
    (userdir / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = _tree(userdir)
    result = runner.invoke(app, ["export", str(my_run / "best"), "--out", str(userdir),
                                 "--force"])
    # not an earlier export: refused, naming what is there, and nothing is touched
    _refused(result, f"--out {userdir} is not the output of an earlier `mtl-tune export` (it has "
                     "no heads.json) and holds sub, thesis.tex; --force replaces only the "
                     "command's own output")
    assert _tree(userdir) == before


def test_export_force_replaces_an_earlier_export(my_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert runner.invoke(app, ["export", str(my_run / "best"), "--out", str(out)]).exit_code == 0
    (out / "config.json").write_text("stale")
    result = runner.invoke(app, ["export", str(my_run / "last"), "--out", str(out), "--force"])
    # an earlier export is replaced whole
    assert result.exit_code == 0, result.output
    assert (out / "config.json").read_text() != "stale"
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    again = runner.invoke(app, ["export", str(my_run / "last"), "--out", str(out), "--force"])
    # ... but one with a file of the user's beside it is refused, the file named
    _refused(again, f"--out {out} holds the output of an earlier `mtl-tune export` and also "
                    "notes.txt, which it did not write")
    assert _tree(out) == before


def test_train_force_keeps_files_beside_an_earlier_run(
    my_run: Path, tiny_bert_dir: Path, tiny_data_dir: Path
) -> None:
    before = _tree(my_run)
    result = runner.invoke(app, _train_args(tiny_bert_dir, tiny_data_dir, my_run, "--force"))
    _refused(result, f"--out {my_run} holds the output of an earlier `mtl-tune train` and also "
                     "notes.md, which it did not write")
    assert _tree(my_run) == before


@pytest.mark.parametrize(("out", "reason"), [
    (".", "is the current folder or a folder above it"),
    ("..", "is the current folder or a folder above it"),
])
@pytest.mark.parametrize("force", [(), ("--force",)])
def test_export_to_the_current_folder_or_above_is_one_line(
    my_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, reason: str,
    force: tuple[str, ...],
) -> None:
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    (work / "mine.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    result = runner.invoke(app, ["export", str(my_run / "best"), "--out", out, *force])
    # no traceback about an empty name, no "Device or resource busy"
    _refused(result, f"--out {out} {reason}; pass a new folder for the export")
    assert _tree(tmp_path) == before


def test_predict_out_rules(my_run: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    before = _tree(my_run)
    checkpoint = my_run / "best"
    args = ["predict", str(checkpoint), "--split", "dev", "--data-dir", str(tiny_data_dir)]
    # never into its checkpoint or its data folder
    _refused(runner.invoke(app, [*args, "--out", str(checkpoint / "p"), "--force"]),
             f"--out {checkpoint / 'p'} lies inside the checkpoint {checkpoint};")
    _refused(runner.invoke(app, [*args, "--out", str(tiny_data_dir), "--force"]),
             f"--out {tiny_data_dir} is the data folder {tiny_data_dir};")
    assert _tree(my_run) == before
    out = tmp_path / "predictions"
    first = runner.invoke(app, [*args, "--out", str(out)])
    assert first.exit_code == 0, first.output
    written = sorted(p.name for p in out.iterdir())
    # the course's files, the scores and the manifest that marks the folder as predictions
    assert written == ["para-dev-output.csv", "predictions.json", "scores.json",
                       "sst-dev-output.csv", "sts-dev-output.csv"]
    # again: refused without --force; with it, the earlier predictions are replaced
    _refused(runner.invoke(app, [*args, "--out", str(out)]),
             f"--out {out} already exists and is not empty; pass another --out, or --force")
    assert runner.invoke(app, [*args, "--out", str(out), "--force"]).exit_code == 0
    (out / "mine.csv").write_text("keep")
    _refused(runner.invoke(app, [*args, "--out", str(out), "--force"]),
             f"--out {out} holds the output of an earlier `mtl-tune predict` and also mine.csv")
    assert (out / "mine.csv").read_text() == "keep"


def test_predict_writes_to_the_current_folder_by_default(
    my_run: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["predict", str(my_run / "best"), "--split", "dev",
                                 "--data-dir", str(tiny_data_dir)])
    assert result.exit_code == 0, result.output
    # predictions-SPLIT in the current folder, not inside the checkpoint
    assert (tmp_path / "predictions-dev" / "scores.json").is_file()
    assert not (my_run / "best" / "predictions-dev").exists()


def test_an_input_inside_a_symlinked_out_is_still_found(tmp_path: Path) -> None:
    data = tmp_path / "real" / "data"
    data.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    kind = OutputKind("train", "run", "metrics.json", {"metrics.json"}.__contains__)
    from mtl_tune.exceptions import MtlTuneError

    # paths are compared resolved: a link to a folder above the data is still above it
    with pytest.raises(MtlTuneError, match=r"--out .*link contains the data folder"):
        check_out(tmp_path / "link", kind, {"data folder": data}, force=True)


def test_a_file_uri_is_the_local_checkpoint(my_run: Path, tiny_data_dir: Path,
                                            tmp_path: Path) -> None:
    uri = (my_run / "best").as_uri()
    # file:///abs/path is the folder it names (it was once "does not exist")
    exported = runner.invoke(app, ["export", uri, "--out", str(tmp_path / "e")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "e" / "heads.json").is_file()
    predicted = runner.invoke(app, ["predict", uri, "--split", "dev", "--data-dir",
                                    str(tiny_data_dir), "--out", str(tmp_path / "p")])
    assert predicted.exit_code == 0, predicted.output


def test_an_unsupported_uri_scheme_is_refused_at_once(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "ftp://host/x/best", "--out", str(tmp_path / "e")])
    # one line naming the scheme and what is supported, no network tried
    _refused(result, "ftp://host/x/best: ftp:// is not a supported store; give a local path (or "
                     "file:///path), or one of s3://bucket/prefix, gs://bucket/prefix")
    assert not (tmp_path / "e").exists()


@pytest.mark.chaos  # half a minute of the GCS client's bounded retries
@pytest.mark.process  # the CLI in a subprocess, with the GCS client's environment
def test_an_unreachable_gs_store_fails_in_seconds_with_its_error(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import need_module

    need_module("cryptography", "pip install cryptography (moto brings it)")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # a store and a token service on loopback ports where nothing listens: every connection
    # the GCS client makes stays on this machine, and is refused
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    account = tmp_path / "account.json"
    account.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k",
        "private_key": key, "client_email": "a@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token"}))
    env = {**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(account),
           "CLOUD_STORAGE_EMULATOR_ENDPOINT": "http://127.0.0.1:9",
           "MTL_TUNE_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    # it once retried for minutes without a word: now it ends (well within the timeout) ...
    run = subprocess.run(
        [sys.executable, "-c", "from mtl_tune.cli import main; main()", "export",
         "gs://bucket/run/best", "--out", str(tmp_path / "e")],
        env=env, capture_output=True, text=True, timeout=150)
    # ... with exit 1 and one line: what failed, where, and what to check
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.startswith("Error: object store error while listing bucket/run/best: "), (
        run.stderr)
    assert "check the store's credentials, endpoint and permissions" in run.stderr
    assert not (tmp_path / "e").exists()
