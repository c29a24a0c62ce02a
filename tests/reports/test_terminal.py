"""What `report ablation` prints, the score cache that makes a second report fast, and the
seeds advice."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.reports import (
    SeedsAdvice,
    advice_text,
    fit_table,
    report_ablation,
    seeds_advice,
)
from mtl_tune.studies import score_cache_key

ORDER = ["it1-baseline", "it3-cosine-sts", "it4-round-robin"]


def _report(study: Path, out: Path, *extra: str) -> list[str]:
    result = CliRunner().invoke(
        app, ["report", "ablation", study.name, "--storage", str(study.parent), "--out",
              str(out), "--resamples", "50", *extra],
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_report_prints_compact_tables_then_the_page(study: Path, tmp_path: Path) -> None:
    # --format, with --formats kept as its alias
    lines = _report(study, tmp_path / "r", "--format", "md,html")
    # not a terminal: no line over 120 characters, but for one word too long for any line (a
    # path), which stays whole so that it can be copied
    assert all(len(line) <= 120 or len(line.split()) == 1 for line in lines), lines
    dev = lines.index("Dev table")
    header = lines[dev + 1]
    # the dev table's compact columns, as report.md shows them
    for column in ("Iteration", "SST acc", "Overall", "Δ prev", "p (Holm)", "Seeds 80%"):
        assert column in header, column
    rows = lines[dev + 2: dev + 2 + len(ORDER)]
    assert [row.split()[0] for row in rows] == ORDER
    assert all("±" in row for row in rows)  # mean ± sd over the two seeds
    assert "Test table" in lines
    # it ends with the page to open
    assert lines[-1] == f"report: {tmp_path / 'r' / 'report.html'}"
    _report(study, tmp_path / "r2", "--formats", "md")
    assert (tmp_path / "r2" / "report.md").is_file()
    assert not (tmp_path / "r2" / "report.html").exists()


def test_narrow_tables_drop_the_least_needed_columns_first() -> None:
    frame = pd.DataFrame({"Iteration": ["it1-baseline", "it7-cosrelu-tuned"],
                          "Change": ["the paper's baseline, a long description", "tuned lr"],
                          "Overall": ["0.512 ± 0.010", "0.555 ± 0.004"],
                          "Δ base": ["–", "+0.043"], "Note": ["", "x" * 90]})
    lines, dropped = fit_table(frame, 60)
    assert max(map(len, lines)) <= 60
    assert dropped == ["Change", "Note"]  # in DROP_ORDER, only as many as needed
    lines, dropped = fit_table(frame, 30)
    # narrower still: the spreads go (means stay), then other cells are cut; no line passes
    # the width and no row name is cut
    assert max(map(len, lines)) <= 30 and dropped == ["Change", "Note", "Δ base", "± sd"]
    assert [line.split()[0] for line in lines[1:]] == ["it1-baseline", "it7-cosrelu-tuned"]
    assert lines[2].endswith("0.555")
    lines, dropped = fit_table(frame, 10)
    # narrower than a row name: the name stays whole all the same
    assert lines[2].startswith("it7-cosrelu-tuned")
    lines, dropped = fit_table(frame, 500)
    # wide enough: every column, text left-aligned and numbers right-aligned
    assert dropped == [] and lines[1].startswith("it1-baseline       the paper's")
    assert lines[0].split("  ")[-2:] == ["Δ base", "Note"] and lines[1].rstrip().endswith("–")


def test_second_report_reads_test_scores_from_the_study(
    study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtl_tune.reports._test_table as test_table

    shutil.rmtree(study / "cache", ignore_errors=True)  # other tests' reports filled it
    first = report_ablation(study, out=tmp_path / "first", formats=("csv",), n_resamples=50)
    assert not first.tables["test"]["cached"].any()

    def rescoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint was scored again")

    monkeypatch.setattr(test_table, "predict_data", rescoring)
    second = report_ablation(study, out=tmp_path / "second", formats=("csv",), n_resamples=50)
    # nothing re-scored: every row from the study's cache, wherever --out is
    assert second.tables["test"]["cached"].all()
    pd.testing.assert_frame_equal(second.tables["test"].drop(columns="cached"),
                                  first.tables["test"].drop(columns="cached"))
    # the leaderboard files are there too, byte for byte
    for name in ORDER:
        files = sorted((tmp_path / "first" / "test-predictions" / name).iterdir())
        # the three leaderboard files, scores.json and the manifest
        assert [f.name for f in files] == ["para-test-output.csv", "predictions.json",
                                           "scores.json", "sst-test-output.csv",
                                           "sts-test-output.csv"]
        for path in files:
            copy = tmp_path / "second" / "test-predictions" / name / path.name
            assert copy.read_bytes() == path.read_bytes()
    assert any("read from the study's cache" in note for note in second.notes)


def test_cache_key_follows_trial_epoch_and_test_file_bytes(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    key = score_cache_key("abc_00001", 2, tiny_data_dir)
    assert key == score_cache_key("abc_00001", 2, tiny_data_dir)
    assert key != score_cache_key("abc_00001", 1, tiny_data_dir)
    assert key != score_cache_key("abc_00002", 2, tiny_data_dir)
    changed = Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))
    test_file = next(changed.glob("*sst*test*.csv"))
    test_file.write_text(test_file.read_text() + "\n")
    # other test files: scored afresh
    assert key != score_cache_key("abc_00001", 2, changed)


def test_seeds_advice_names_the_launch_that_settles_every_change(
    study: Path, tmp_path: Path
) -> None:
    advice = seeds_advice(study)
    dev = report_ablation(study, out=tmp_path / "r", formats=("csv",), n_resamples=50).tables["dev"]
    # the dev table's power column, row by row
    np.testing.assert_array_equal(advice.rows["seeds_needed"], dev["seeds_needed"])
    unsettled = [v for v, n in zip(dev["seeds_needed"], dev["n"], strict=True)
                 if np.isfinite(v) and v > n]
    # two seeds of a random tiny model leave these changes unsettled
    assert unsettled and advice.seeds == max(unsettled)
    # and a row of 2 seeds is never settled, whatever its own spread suggests
    assert (dev["n"] == 2).all() and not advice.rows["settled"].any()
    words = shlex.split(advice.command or "")
    assert words[:4] == ["mtl-tune", "study", "launch", str(study / "spec.toml")]
    assert words[words.index("--seeds") + 1] == str(advice.seeds)
    assert words[words.index("--storage") + 1] == str(study.parent)
    lines = _report(study, tmp_path / "unused", "--seeds-advice")
    # printed as a table and the command; no report is written
    assert lines[-1].strip() == advice.command and not (tmp_path / "unused").exists()



def test_unreadable_cache_entry_is_scored_again_and_rewritten(
    study: Path, tmp_path: Path
) -> None:
    from mtl_tune.studies.store._score_cache import CACHE_DIR, ENTRY_FILE

    report_ablation(study, out=tmp_path / "fill", formats=("csv",), n_resamples=50)
    entries = sorted((study / CACHE_DIR).iterdir())
    assert len(entries) == len(ORDER)
    broken = entries[0] / ENTRY_FILE
    broken.write_text("{half written")
    again = report_ablation(study, out=tmp_path / "again", formats=("csv",), n_resamples=50)
    # the broken entry's checkpoint is scored afresh, the others come from the cache
    assert again.tables["test"]["cached"].sum() == len(ORDER) - 1
    # and its entry is whole again
    assert broken.read_text().startswith("{\n")


def test_settled_changes_need_no_launch() -> None:
    rows = pd.DataFrame({"iteration": ["it1-baseline", "it3-cosine-sts"],
                         "delta_prev": [np.nan, 0.05], "seeds": [3, 3],
                         "seeds_needed": [np.nan, 2.0], "settled": [True, True]})
    text = advice_text(SeedsAdvice(rows, None, None))
    lines = text.splitlines()
    # the table, then the verdict; no command
    assert lines[0].split() == ["Iteration", "Δ", "prev", "Seeds", "run", "Seeds", "needed",
                                "(80%", "power)", "Settled"]
    assert lines[2].split() == ["it3-cosine-sts", "+0.050", "3", "2", "yes"]
    assert lines[-1].startswith("Every change is settled") and "mtl-tune" not in text


def test_the_best_trials_train_command_trains_it_again(study: Path, tmp_path: Path) -> None:
    import json

    from mtl_tune.studies import best_rerun, best_row, load_results
    from mtl_tune.studies.results import trial_config

    results = load_results(study)
    row = best_row(results)
    line = best_rerun(results)
    assert line is not None
    # the trial, its epoch and score, its checkpoint and the command
    assert line.startswith(f"Best single trial {row['trial_id']} ({row['trainable']}) at epoch "
                           f"{int(row['epoch'])}: dev Overall {row['overall']:.4f}; its "
                           f"checkpoint: {row['checkpoint']}; train it again with: mtl-tune "
                           f"train {row['trainable']} ")
    command = shlex.split(line.split("train it again with: ", 1)[1])
    # every key that differs from the preset is set, the study's own keys are not
    sets = dict(command[i + 1].split("=", 1) for i, w in enumerate(command) if w == "--set")
    config = trial_config(row)
    assert {"backbone", "batch_size", "max_length", "epochs", "eval_batch_size"} <= set(sets)
    assert sets["backbone"] == config["backbone"] and "trainable" not in sets
    # run as printed, it gives the trial's dev scores at the same epoch
    out = tmp_path / "rerun"
    result = CliRunner().invoke(app, [*command[1:], "--out", str(out)])
    assert result.exit_code == 0, result.output
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    again = next(e for e in epochs if int(e["epoch"]) == int(row["epoch"]))
    for key in ("sst_acc", "para_acc", "sts_corr", "overall"):
        assert abs(again[key] - float(row[key])) < 1e-3, key
    # `study status --best` prints the same line; so do the reports' notes
    status = CliRunner().invoke(app, ["study", "status", study.name, "--storage",
                                      str(study.parent), "--best"])
    assert status.exit_code == 0 and line in status.output, status.output
    report = report_ablation(study, out=tmp_path / "r", formats=("md",), n_resamples=50)
    assert line in report.notes


def _in_a_tty(args: list[str], columns: int) -> list[str]:
    """The lines a command prints in a real terminal `columns` wide (a pseudo-terminal)."""
    import fcntl
    import pty
    import struct
    import sys
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size first, then the command
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        os.execve(sys.executable, [sys.executable, "-c", "from mtl_tune.cli import main; main()",
                                   *args], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks).decode()[-3000:]
    text = b"".join(chunks).decode()
    return [part for line in text.split("\r\n") for part in line.split("\r")]


def test_an_80_column_terminal_cuts_no_iteration_name(study: Path, tmp_path: Path) -> None:
    lines = _in_a_tty(["report", "ablation", study.name, "--storage", str(study.parent),
                       "--out", str(tmp_path / "r"), "--resamples", "50"], 80)
    # no line passes the terminal's width (but the page's path, and a word longer than a line,
    # such as a checkpoint's path, alone on its line: neither is cut)
    long = [line for line in lines if len(line) > 80 and not line.startswith("report: /")
            and len(line.split()) > 1]
    assert not long, long
    for title in ("Dev table", "Test table", "Beside the paper"):
        start = lines.index(title)
        rows = [line.split()[0] for line in lines[start + 2: start + 2 + len(ORDER)]]
        # every iteration's name whole, in every table
        assert rows == ORDER, (title, lines[start: start + 6])
    # what was left out to fit is named under the table
    assert any(line.startswith("(left out to fit 80 columns: ") for line in lines)


def test_the_commands_tables_fit_80_columns_with_one_format_per_number_column(
    study: Path, tiny_data_dir: Path
) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "80"}
    for args in (["study", "status", study.name, "--storage", str(study.parent)],
                 ["study", "list", "--storage", str(study.parent)],
                 ["data", "check", "--data-dir", str(tiny_data_dir)],
                 ["trainables", "list"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        lines = result.stdout.splitlines()
        long = [line for line in lines if len(line) > 80 and len(line.split()) > 1]
        assert not long, (args, long)  # a longer one is one word (a path), kept whole
    status = runner.invoke(app, ["study", "status", study.name, "--storage", str(study.parent)],
                           env=env).stdout.splitlines()
    header = status[0].split()
    overall = header.index("Overall")
    values = [line.split()[overall] for line in status[1:7]]  # its six trials
    # every score in the column to 4 decimals, none in another format
    assert values and all(re.fullmatch(r"\d\.\d{4}", v) for v in values), values
    # scores and states by the names the reports use, never by their keys
    assert [line.split()[header.index("state")] for line in status[1:7]] == ["done"] * 6
    assert "overall" not in header and "TERMINATED" not in "\n".join(status)
    listing = runner.invoke(app, ["study", "list", "--storage", str(study.parent)], env=env)
    assert "best Overall" in listing.stdout.splitlines()[1]
    check = runner.invoke(app, ["data", "check", "--data-dir", str(tiny_data_dir)], env=env)
    tasks = {line.split()[0] for line in check.stdout.splitlines()[2:] if "ok" in line.split()}
    assert {"SST", "PD", "STS"} <= tasks and "para" not in tasks


def test_status_and_list_as_json(study: Path) -> None:
    import json

    from mtl_tune.studies import load_results

    runner = CliRunner()
    status = runner.invoke(app, ["study", "status", study.name, "--storage", str(study.parent),
                                 "--json"])
    assert status.exit_code == 0, status.output
    payload = json.loads(status.stdout)
    # the documented schema: study, storage, driver, the planned trials, one object per trial
    assert set(payload) == {"study", "storage", "driver", "planned_trials", "trials"}
    assert payload["study"] == study.name and payload["driver"] is None
    assert payload["planned_trials"] == len(payload["trials"])
    trials = payload["trials"]
    results = load_results(study)
    assert sorted(t["trial_id"] for t in trials) == sorted(results["trial_id"].unique())
    assert {"state", "trainable", "seed", "epochs", "overall", "best"} <= set(trials[0])
    assert all(isinstance(t["overall"], float) and t["state"] == "TERMINATED" for t in trials)
    listed = runner.invoke(app, ["study", "list", "--storage", str(study.parent), "--json"])
    assert listed.exit_code == 0, listed.output
    studies = json.loads(listed.stdout)
    assert studies["storage"] == str(study.parent)
    assert study.name in [s["study"] for s in studies["studies"]]
