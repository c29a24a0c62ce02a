import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app, parse_sets
from mtl_tune.exceptions import ConfigError
from mtl_tune.platform.presets import PRESETS
from tests.conftest import LABELED, ORIGINAL
from tests.helpers import write_subset, write_tiny_public_files

runner = CliRunner()


def test_help_lists_the_nouns() -> None:
    result = runner.invoke(app, ["--help"])
    # the app groups commands noun-first
    assert result.exit_code == 0
    for noun in ("data", "trainables", "study", "report", "train", "predict"):
        assert noun in result.output


@pytest.mark.usefixtures("labeled_data")
def test_data_check_labeled_counts() -> None:
    result = runner.invoke(app, ["data", "check", "--data-dir", str(LABELED)])
    # every file of the labeled set is found
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "quora-train.csv" in x)
    # quora train: read fine, 14,214 rows read, 2 dirty ones skipped
    assert line.split()[2:7] == ["ok", "quora-train.csv", "14214", "2", "14212"]


@pytest.mark.usefixtures("original_data")
def test_data_check_original_reports_missing_and_skipped() -> None:
    # wide enough for every column (the 80-column case is in tests/reports/test_terminal.py)
    result = runner.invoke(app, ["data", "check", "--data-dir", str(ORIGINAL)],
                           env={"COLUMNS": "250"})
    # a missing file makes the check fail
    assert result.exit_code == 1
    dev = next(x for x in result.output.splitlines() if " quora-dev.csv" in x)
    # the two empty-label rows of quora-dev are skipped and counted
    assert dev.split()[4:7] == ["20214", "2", "20212"]
    # the unlabeled test-student files are reported as unlabeled
    assert "ids-sst-test-student.csv" in result.output and "unlabeled" in result.output
    # the missing quora-train.csv is named, and its row says "missing"
    assert "quora-train.csv" in result.output
    train = next(x for x in result.output.splitlines() if x.split()[:2] == ["PD", "train"])
    assert train.split()[2:4] == ["missing", "-"]


def test_data_check_missing_folder() -> None:
    result = runner.invoke(app, ["data", "check", "--data-dir", "/nonexistent/data"])
    # a missing data folder is an error with the folder and how to fix it
    assert result.exit_code == 1
    assert "data folder /nonexistent/data does not exist" in result.output


def test_parse_sets() -> None:
    # key=value pairs become a dict of strings
    assert parse_sets(["lr=1e-5", "pooling = mean"]) == {"lr": "1e-5", "pooling": "mean"}
    # a pair without '=' is refused with the value
    with pytest.raises(ConfigError, match="--set takes key=value, but got 'lr'"):
        parse_sets(["lr"])


def test_train_rejects_unknown_key_before_training(tmp_path: Path, tiny_data_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "it1-baseline",
            "--set",
            "lrate=1",
            "--data-dir",
            str(tiny_data_dir),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    # unknown keys stop the command with the key named, no traceback, nothing written
    assert result.exit_code == 1
    assert "unknown config key(s) ['lrate']" in result.output
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def trained(tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "it7-cosrelu-tuned",
            "--set",
            f"backbone={tiny_bert_dir}",
            "--set",
            "batch_size=8",
            "--set",
            "max_length=32",
            "--epochs",
            "2",
            "--max-examples",
            "16",
            "--data-dir",
            str(tiny_data_dir),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_metrics_and_checkpoints(trained: Path) -> None:
    summary = json.loads((trained / "metrics.json").read_text())
    # one metrics entry per epoch, with the preset's values and the overrides
    assert [e["epoch"] for e in summary["epochs"]] == [1.0, 2.0]
    assert (summary["config"]["sts_head"], summary["config"]["max_examples"]) == ("cosine-relu", 16)
    # best and last checkpoints are written
    assert (trained / "best" / "model.safetensors").is_file()
    assert (trained / "last" / "trainer_state.json").is_file()
    # the run is finished: neither keeps the optimizer state, which only resuming would need
    assert not (trained / "best" / "optimizer.pt").exists()
    assert not (trained / "last" / "optimizer.pt").exists()


def test_train_refuses_to_overwrite(trained: Path, tiny_data_dir: Path) -> None:
    result = runner.invoke(
        app, ["train", "it1-baseline", "--data-dir", str(tiny_data_dir), "--out", str(trained)]
    )
    # a non-empty output folder is never silently replaced
    assert result.exit_code == 1 and "is not empty" in result.output


def _ids(path: Path, id_column: str = "id") -> list[str]:
    with path.open(newline="") as handle:
        return [row[id_column].strip().lower() for row in csv.DictReader(handle, delimiter="\t")]


@pytest.mark.usefixtures("original_data")
def test_predict_unlabeled_writes_leaderboard_files(trained: Path, tmp_path: Path) -> None:
    data = tmp_path / "original"
    data.mkdir()
    write_subset(ORIGINAL, data, rows=30)  # keeps the -test-student names, no quora test
    out = tmp_path / "pred"
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained / "best"),
            "--split",
            "test",
            "--data-dir",
            str(data),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    # the task whose test file is absent is skipped with a notice naming the file
    assert "quora-test" in result.output
    for task, source, header in (
        ("sst", "ids-sst-test-student.csv", "Predicted_Sentiment"),
        ("sts", "sts-test-student.csv", "Predicted_Similiary"),
    ):
        lines = (out / f"{task}-test-output.csv").read_text().splitlines()
        # the course's header line
        assert lines[0] == f"id \t {header} "
        # one `id , prediction` row per input id, in the input's order
        assert [x.split(" , ")[0] for x in lines[1:]] == _ids(data / source)


def test_predict_labeled_scores(trained: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained / "best"),
            "--split",
            "test",
            "--data-dir",
            str(tiny_data_dir),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    # the three course-format files are written too
    assert {p.name for p in tmp_path.glob("*-output.csv")} == {
        "sst-test-output.csv",
        "para-test-output.csv",
        "sts-test-output.csv",
    }
    # a labeled split is scored on all three tasks: the scores are those of the written
    # predictions against the split's labels, computed here
    from scipy import stats

    pairs = {}
    for task, source, label in (("sst", "ids-sst-test.csv", "sentiment"),
                                ("para", "quora-test.csv", "is_duplicate"),
                                ("sts", "sts-test.csv", "similarity")):
        lines = (tmp_path / f"{task}-test-output.csv").read_text().splitlines()[1:]
        predicted = dict(line.split(" , ") for line in lines)
        with (tiny_data_dir / source).open(newline="") as handle:
            labels = {row["id"].strip().lower(): float(row[label])
                      for row in csv.DictReader(handle, delimiter="\t")}
        assert sorted(predicted) == sorted(labels)
        pairs[task] = ([float(predicted[i]) for i in labels], list(labels.values()))
    sst = sum(p == y for p, y in zip(*pairs["sst"], strict=True)) / len(pairs["sst"][1])
    para = sum(p == y for p, y in zip(*pairs["para"], strict=True)) / len(pairs["para"][1])
    sts = float(stats.pearsonr(*pairs["sts"]).statistic)
    assert scores == pytest.approx({
        "sst_acc": sst, "para_acc": para, "sts_corr": sts,
        "overall": (sst + para + (sts + 1) / 2) / 3, "mean_score": (sst + para + sts) / 3})


def test_trainables_list() -> None:
    result = runner.invoke(app, ["trainables", "list"])
    # all eleven iterations with their descriptions and presets
    assert result.exit_code == 0
    names = [line.split(":")[0] for line in result.output.splitlines() if line[:2] == "it"]
    assert names == list(PRESETS)
    assert "it7-cosrelu-tuned: + ReLU(cos) x5 STS head" in result.output


def test_predict_rejects_unknown_split(trained: Path) -> None:
    result = runner.invoke(app, ["predict", str(trained / "best"), "--split", "validation"])
    # a bad split is refused with the allowed values, before any file is read
    assert result.exit_code == 1
    assert "--split must be one of ('dev', 'test', 'train'), but got 'validation'" in result.output


def test_predict_refuses_a_damaged_checkpoint(
    trained: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    import shutil

    damaged = tmp_path / "best"
    shutil.copytree(trained / "best", damaged)
    weights = damaged / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
    weights.write_bytes(bytes(data))
    result = runner.invoke(app, ["predict", str(damaged), "--split", "dev", "--data-dir",
                                 str(tiny_data_dir), "--out", str(tmp_path / "out")])
    # the damage is found before any prediction: exit 1, the file named, no traceback
    assert result.exit_code == 1 and result.exception is not None
    assert f"Error: {weights} does not match the sha256 recorded" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_predict_refuses_a_folder_where_a_test_file_belongs(
    trained: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_subset(tiny_data_dir, data, rows=8)
    (data / "sts-test.csv").unlink()
    (data / "sts-test.csv").mkdir()
    result = runner.invoke(app, ["predict", str(trained / "best"), "--split", "test",
                                 "--data-dir", str(data), "--out", str(tmp_path / "out")])
    # a file that exists but is unusable is an error, not a task quietly skipped as missing
    assert result.exit_code == 1
    assert "sts-test.csv is a folder, not a data file (task 'sts', split 'test')" in result.stderr


def test_predict_refuses_duplicate_ids_in_an_unlabeled_split(trained: Path,
                                                              tmp_path: Path) -> None:
    data = write_tiny_public_files(tmp_path / "original", rows=8)
    sst = data / "ids-sst-test-student.csv"
    lines = sst.read_text().splitlines()
    lines.append(lines[1])  # the first data row again, line 10
    sst.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(trained / "best"), "--split", "test",
                                 "--data-dir", str(data), "--out", str(out)])
    # one error line with file:line of both rows, and no leaderboard file written
    row_id = _ids(sst)[0]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {sst}:10: id {row_id!r} is also the id of line 2; ")
    assert not out.exists()


def test_data_check_reports_a_symlink_loop(tmp_path: Path) -> None:
    data = write_tiny_public_files(tmp_path / "data", rows=8)
    (data / "sts-dev.csv").unlink()
    (data / "sts-dev.csv").symlink_to("sts-dev.csv")
    result = runner.invoke(app, ["data", "check", "--data-dir", str(data)])
    # the loop is named as a loop, not listed as a missing file
    assert "symbolic link loop" in result.output, result.output
    assert "sts-dev.csv -> sts-dev.csv" in result.output


def test_a_journal_path_is_kept_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mtl_tune.cli.study import _optuna_url
    from mtl_tune.studies import JOURNAL_PREFIX

    monkeypatch.chdir(tmp_path)
    # a relative --optuna-storage journal is the one in the launching folder, wherever
    # `resume` and `report` run later; URLs are kept as given
    assert _optuna_url("o.journal") == f"{JOURNAL_PREFIX}{tmp_path / 'o.journal'}"
    assert _optuna_url("sqlite:///x.db") == "sqlite:///x.db" and _optuna_url(None) is None


def test_predict_out_on_an_existing_file_is_one_error_line(trained: Path, tiny_data_dir: Path,
                                                           tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    result = runner.invoke(app, ["predict", str(trained / "best"), "--split", "dev",
                                 "--data-dir", str(tiny_data_dir), "--out", str(blocker)])
    # exit 1, what and where, and how to fix it; no traceback
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: --out {blocker} is an existing file, not a "
                                    "folder; pass a new folder for the predictions")
    # the user's file is untouched
    assert blocker.read_text() == "mine"


@pytest.mark.process
def test_train_out_on_a_read_only_disk_is_one_error_line(tiny_data_dir: Path,
                                                          tmp_path: Path) -> None:
    from tests.helpers import tmpfs

    with tmpfs(tmp_path / "ro", "ro,size=1m") as disk:
        result = runner.invoke(app, ["train", "it1-baseline", "--epochs", "1", "--max-examples",
                                     "16", "--data-dir", str(tiny_data_dir),
                                     "--out", str(disk / "run")])
    # exit 1 with the path, the cause and the way out (as root, only a read-only disk refuses)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "Error: cannot use" in result.stderr and "Read-only file system" in result.stderr
    assert "choose another place (e.g. with --out)" in result.stderr


@pytest.mark.process
def test_version_and_python_dash_m() -> None:
    import subprocess
    import sys

    from mtl_tune import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"mtl-tune {__version__}\n"
    # `python -m mtl_tune` is the same command line
    module = subprocess.run([sys.executable, "-m", "mtl_tune", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert (module.returncode, module.stdout) == (0, f"mtl-tune {__version__}\n")


def test_a_mistyped_name_gets_a_did_you_mean(tmp_path: Path) -> None:
    from mtl_tune.reports._output import check_formats

    def error(args: list[str]) -> str:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        return result.stderr

    # a trainable and a config key, refused before any data is read
    assert "but got 'it7-cosrelu' (did you mean 'it7-cosrelu-tuned'?)" in error(
        ["train", "it7-cosrelu", "--data-dir", str(tmp_path / "none")])
    assert "unknown config key(s) ['learning_rate'] (did you mean 'lr'?)" in error(
        ["train", "it7-cosrelu-tuned", "--set", "learning_rate=1e-5"])
    assert "['pooling_mod'] (did you mean 'pooling'?)" in error(
        ["train", "it7-cosrelu-tuned", "--set", "pooling_mod=mean"])
    # a study name
    (tmp_path / "studies" / "demo").mkdir(parents=True)
    (tmp_path / "studies" / "demo" / "study.json").write_text("{}")
    assert "no study 'dmeo' in " in (text := error(
        ["study", "status", "dmeo", "--storage", str(tmp_path / "studies")]))
    assert "(did you mean 'demo'?); studies there: ['demo']" in text
    # a report format
    with pytest.raises(ConfigError, match=r"but got \['htm'\] \(did you mean 'html'\?\)"):
        check_formats(["md", "htm"])


@pytest.mark.parametrize("command", [["study", "launch"], ["study", "resume"], ["train"],
                                     ["predict"], ["export"], ["report", "ablation"]])
def test_help_shows_placeholders_and_an_example(command: list[str]) -> None:
    text = runner.invoke(app, [*command, "--help"]).output
    # placeholders that say what to type, never a Python type
    assert not re.search(r"<(bool|str|int|path|list\[str\]|str \| None)>", text), text
    # an argument is its metavar alone, in the usage line and in the help
    usage = text.splitlines()[0]
    # (an optional one in brackets: `train [TRAINABLE]`, as `train --replay` needs none)
    assert "{" not in usage and re.search(r"\[OPTIONS\] \[?[A-Z_]+", usage), usage
    assert "Example: mtl-tune " + " ".join(command) in " ".join(text.split())


@pytest.mark.parametrize("command", [
    ["study", "launch"], ["study", "resume"], ["study", "status"], ["study", "list"],
    ["report", "ablation"], ["report", "search"], ["data", "check"], ["data", "fetch"],
    ["trainables", "list"], ["train"], ["predict"], ["export"]])
def test_no_help_shows_a_python_type(command: list[str]) -> None:
    text = runner.invoke(app, [*command, "--help"]).output
    assert not re.search(r"<[a-z][a-z_\[\]| ]*>", text) and "{" not in text.splitlines()[0], text


@pytest.mark.parametrize(("extra", "message"), [
    (["--epochs", "2", "--set", "epochs=1"],
     "--epochs 2 and --set epochs=1 both set epochs on the command line; give one"),
    (["--max-examples", "8", "--set", "max_examples=16"],
     "--max-examples 8 and --set max_examples=16 both set max_examples on the command line"),
    (["--set", "data_dir=/nonexistent"],
     "data folder /nonexistent does not exist (from --set data_dir=/nonexistent)"),
    (["--set", "data_dir=/nonexistent", "--data-dir", "/elsewhere"],
     "--data-dir /elsewhere and --set data_dir=/nonexistent both name the data folder"),
])
def test_train_refuses_a_value_given_twice_or_a_missing_set_data_dir(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str],
    message: str,
) -> None:
    # with $MTL_TUNE_DATA set, a --set data_dir was once ignored in its favour
    monkeypatch.setenv("MTL_TUNE_DATA", str(tiny_data_dir))
    result = runner.invoke(app, ["train", "it1-baseline", "--out", str(tmp_path / "run"),
                                 *extra])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert not (tmp_path / "run").exists()


def test_train_reads_the_data_folder_of_a_set(
    tiny_bert_dir: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "not-the-data"
    elsewhere.mkdir()
    monkeypatch.setenv("MTL_TUNE_DATA", str(elsewhere))
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "it1-baseline", "--set", f"backbone={tiny_bert_dir}", "--set", "batch_size=8",
        "--set", "max_length=32", "--epochs", "1", "--max-examples", "16",
        "--set", f"data_dir={tiny_data_dir}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the run trained on, and recorded, the folder the --set named
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["data_dir"] == str(tiny_data_dir.resolve())
