"""Tests of reading, cleaning and tokenizing the CS224N files in mtl_tune.platform.data."""

from __future__ import annotations

import csv
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtl_tune.cli import app
from mtl_tune.exceptions import ConfigError, DataError, MtlTuneError
from mtl_tune.platform.config import DATA_ENV
from mtl_tune.platform.data import (
    DataConfig,
    Examples,
    read_split,
    read_splits,
)
from mtl_tune.platform.data_files import resolve_data_dir, split_path
from mtl_tune.platform.splits import tokenize_split
from mtl_tune.platform.tasks import TASKS, task_spec
from mtl_tune.platform.tokenizer import WordPieceTokenizer
from tests.conftest import LABELED, ORIGINAL, minilm_path
from tests.helpers import write_tiny_data

LOGGER = "mtl_tune.platform.data"
SST_HEADER = ["", "id", "sentence", "sentiment"]
PAIR_HEADER = ["", "id", "sentence1", "sentence2", "is_duplicate"]
STS_HEADER = ["", "id", "sentence1", "sentence2", "similarity"]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_pretrained(minilm_path(), max_length=64)


# ---------------------------------------------------------------------------- locating files


def test_missing_file_from_split_path(tmp_path: Path) -> None:
    # the message names the file, the task, the split and how to point at the data
    with pytest.raises(
        DataError,
        match=r"missing data file .*ids-sst-dev\.csv \(task 'sst', split 'dev'\).*"
        rf"--data-dir or {DATA_ENV}",
    ):
        split_path(tmp_path, "sst", "dev")


def test_missing_test_file_names_both_candidates(tmp_path: Path) -> None:
    # for a test split both accepted names are listed
    with pytest.raises(DataError, match=r"expected sts-test\.csv or sts-test-student\.csv"):
        split_path(tmp_path, "sts", "test")


def test_missing_file_from_read_split(tmp_path: Path) -> None:
    # an explicit path that does not exist is named with task, split and the data setting
    with pytest.raises(
        DataError,
        match=r"missing data file .*nope\.csv \(task 'para', split 'train'\).*"
        rf"--data-dir or {DATA_ENV}",
    ):
        read_split(tmp_path / "nope.csv", "para", "train")


def test_missing_file_from_read_splits(tmp_path: Path) -> None:
    config = DataConfig(data_dir=str(tmp_path), tasks=("sts",), splits=("train",))
    # read_splits reports the first missing file the same way
    with pytest.raises(DataError, match=r"sts-train\.csv \(task 'sts', split 'train'\)"):
        read_splits(config)


@pytest.mark.usefixtures("original_data")
def test_split_path_falls_back_to_test_student(tmp_path: Path) -> None:
    shutil.copy(ORIGINAL / "ids-sst-test-student.csv", tmp_path)
    # without -test.csv, the course's -test-student.csv is used
    assert split_path(tmp_path, "sst", "test") == tmp_path / "ids-sst-test-student.csv"
    (tmp_path / "ids-sst-test.csv").write_text("", encoding="utf-8")
    # a labeled -test.csv is preferred when both exist
    assert split_path(tmp_path, "sst", "test") == tmp_path / "ids-sst-test.csv"


@pytest.mark.parametrize(
    ("task", "split", "name"),
    [("sst", "train", "ids-sst-train.csv"), ("para", "dev", "quora-dev.csv"),
     ("sts", "test", "sts-test.csv"), ("cfimdb", "dev", "ids-cfimdb-dev.csv")],
)
def test_split_path_names(task: str, split: str, name: str, tiny_data_dir: Path) -> None:
    # each task's split is `<prefix>-<split>.csv`
    assert split_path(tiny_data_dir, task, split) == tiny_data_dir / name


def test_split_path_bad_split(tiny_data_dir: Path) -> None:
    # only train, dev and test are splits
    with pytest.raises(DataError, match=r"split must be one of \('train', 'dev', 'test'\).*'val'"):
        split_path(tiny_data_dir, "sst", "val")


def test_resolve_data_dir_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    # with no argument and no environment variable the message says how to give one
    with pytest.raises(
        DataError, match=rf"no data folder given: pass --data-dir DIR or set {DATA_ENV}"
    ):
        resolve_data_dir(None)


def test_resolve_data_dir_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_data_dir: Path
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    # the environment variable is used when no argument is given
    assert resolve_data_dir(None) == tmp_path
    # an explicit argument wins over the environment variable
    assert resolve_data_dir(tiny_data_dir) == tiny_data_dir
    # a folder that does not exist is refused, naming where it came from
    with pytest.raises(DataError, match=r"data folder .*absent does not exist \(from --data-dir\)"):
        resolve_data_dir(tmp_path / "absent")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "gone"))
    with pytest.raises(DataError, match=rf"gone does not exist \(from {DATA_ENV}\)"):
        resolve_data_dir(None)


@pytest.mark.parametrize("call", ["task_spec", "split_path", "read_split"])
def test_unknown_task_lists_valid_tasks(call: str, tiny_data_dir: Path) -> None:
    # an unknown task name is refused with the list of valid ones
    with pytest.raises(DataError, match=r"task must be one of \('sst', 'para', 'sts', 'cfimdb'\), "
                       r"but got 'quora'"):
        if call == "task_spec":
            task_spec("quora")
        elif call == "split_path":
            split_path(tiny_data_dir, "quora", "dev")
        else:
            read_split(tiny_data_dir / "quora-dev.csv", "quora", "dev")


def test_errors_are_mtl_tune_errors() -> None:
    # data errors derive from the base class the CLI catches
    assert issubclass(DataError, MtlTuneError)


# ---------------------------------------------------------------------------- real files


@pytest.mark.usefixtures("labeled_data")
@pytest.mark.parametrize(
    ("task", "split", "rows", "usable"),
    [
        ("sst", "train", 7544, 7544),
        ("sst", "dev", 1101, 1101),
        ("sst", "test", 1000, 1000),
        ("para", "train", 14214, 14212),  # two dirty rows were carried over from quora-dev
        ("para", "dev", 3000, 3000),
        ("para", "test", 3000, 3000),
        ("sts", "train", 5240, 5240),
        ("sts", "dev", 863, 863),
        ("sts", "test", 800, 800),
        ("cfimdb", "train", 1462, 1462),
        ("cfimdb", "dev", 245, 245),
        ("cfimdb", "test", 245, 245),
    ],
)
def test_labeled_counts(task: str, split: str, rows: int, usable: int) -> None:
    ex = read_split(split_path(LABELED, task, split), task, split)
    # the README's row count is what was read plus what was skipped
    assert len(ex) + len(ex.skipped) == rows
    # every clean row is kept
    assert len(ex) == usable
    # every split of the labeled set has one label per row
    assert ex.labels is not None and ex.labels.shape == (usable,)
    # ids, texts and labels line up
    assert len(ex.ids) == len(ex.texts) == usable


@pytest.mark.usefixtures("labeled_data")
def test_labeled_quora_train_skips_its_two_dirty_rows() -> None:
    ex = read_split(LABELED / "quora-train.csv", "para", "train")
    # the dirty rows are reported at their file lines with every problem of the row
    assert ex.skipped == ((9624, "empty label"), (13428, "empty sentence2; empty label"))


@pytest.mark.usefixtures("labeled_data")
def test_labeled_label_values() -> None:
    sst = read_split(LABELED / "ids-sst-dev.csv", "sst", "dev")
    sts = read_split(LABELED / "sts-dev.csv", "sts", "dev")
    para = read_split(LABELED / "quora-dev.csv", "para", "dev")
    assert sst.labels is not None and sts.labels is not None and para.labels is not None
    # SST labels are the five classes 0..4
    assert sorted(np.unique(sst.labels).tolist()) == [0, 1, 2, 3, 4]
    # paraphrase labels are 0/1
    assert sorted(np.unique(para.labels).tolist()) == [0, 1]
    # STS labels are real numbers in 0..5
    assert 0.0 <= sts.labels.min() and sts.labels.max() <= 5.0
    # ... and not all integers
    assert (sts.labels != np.round(sts.labels)).any()


@pytest.mark.usefixtures("original_data")
def test_shifted_header_read_by_name() -> None:
    path = ORIGINAL / "ids-sst-test-student.csv"
    # the file really has the extra leading column (header `0 <tab> <tab> id <tab> sentence`)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t") == ["0", "", "id", "sentence"]
    ex = read_split(path, "sst", "test")
    # all 2,210 rows are read
    assert len(ex) == 2210 and ex.skipped == ()
    # the id is taken from the `id` column, not from a position
    assert ex.ids[0] == "b7573736a6ddf7be102b7fee0"
    # the sentence comes from the `sentence` column, lower-cased and stripped
    assert ex.texts[0] == ("effective but too-tepid biopic",)
    # an unlabeled test file gives no labels
    assert ex.labels is None


@pytest.mark.usefixtures("original_data")
@pytest.mark.parametrize(
    ("name", "task", "rows"),
    [("sts-test-student.csv", "sts", 1725), ("ids-cfimdb-test-student.csv", "cfimdb", 488)],
)
def test_other_unlabeled_test_files(name: str, task: str, rows: int) -> None:
    ex = read_split(ORIGINAL / name, task, "test")
    # every row of the course's unlabeled test files is read, without labels
    assert (len(ex), ex.labels) == (rows, None)


def _empty_label_lines(path: Path) -> tuple[int, list[int]]:
    """An independent reading: data rows, and file lines of rows whose last column is empty."""
    rows, empty = 0, []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        for row in reader:
            rows += 1
            if not row[-1].strip():
                empty.append(reader.line_num)
    return rows, empty


@pytest.mark.usefixtures("original_data")
def test_quora_dev_empty_labels_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    path = ORIGINAL / "quora-dev.csv"
    rows, empty = _empty_label_lines(path)
    # our own reading: 20,214 rows, two of them with an empty label at lines 2577 and 14222
    assert (rows, empty) == (20214, [2577, 14222])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ex = read_split(path, "para", "dev")
    # the other 20,212 rows are read
    assert len(ex) == 20212
    # the two skipped rows are counted at their file lines
    assert [line for line, _ in ex.skipped] == empty
    # both reasons mention the empty label
    assert all("empty label" in why for _, why in ex.skipped)
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    # exactly one warning for the file ...
    assert len(warnings) == 1
    # ... naming the count and each file:line
    assert "skipped 2 row(s)" in warnings[0].getMessage()
    assert "quora-dev.csv:2577 (empty label)" in warnings[0].getMessage()
    assert "quora-dev.csv:14222 (empty sentence2; empty label)" in warnings[0].getMessage()


@pytest.mark.usefixtures("original_data")
def test_quora_dev_strict_raises_at_first_dirty_line() -> None:
    # strict mode stops at the first dirty row, naming file:line and the reason
    with pytest.raises(
        DataError, match=r"quora-dev\.csv:2577: empty label \(task 'para', strict mode\)"
    ):
        read_split(ORIGINAL / "quora-dev.csv", "para", "dev", strict=True)


@pytest.mark.usefixtures("labeled_data")
def test_clean_file_gives_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        read_split(LABELED / "sts-dev.csv", "sts", "dev")
    # a clean file is read silently
    assert [r for r in caplog.records if r.name == LOGGER] == []


# ---------------------------------------------------------------------------- dirty rows


@pytest.mark.parametrize(
    ("header", "task", "bad_row", "reason"),
    [
        (SST_HEADER, "sst", ["1", "b", "a fine film", "good"], "non-numeric label 'good'"),
        (SST_HEADER, "sst", ["1", "b", "a fine film", "5"], r"label '5' outside \(0, 4\)"),
        (SST_HEADER, "sst", ["1", "b", "a fine film", "-1"], r"label '-1' outside \(0, 4\)"),
        (SST_HEADER, "sst", ["1", "b", "a fine film", "2.5"], "label '2.5' is not a whole class"),
        (SST_HEADER, "sst", ["1", "b", "a fine film", "nan"], r"label 'nan' outside"),
        (SST_HEADER, "sst", ["1", "b", "   ", "3"], "empty sentence"),
        (SST_HEADER, "sst", ["1", "", "a fine film", "3"], "empty id"),
        (PAIR_HEADER, "para", ["1", "b", "q one?", "q two?", "2.0"], r"label '2\.0' outside"),
        (PAIR_HEADER, "para", ["1", "b", "", "q two?", "1.0"], "empty sentence1"),
        (STS_HEADER, "sts", ["1", "b", "s one", "s two", "5.5"], r"label '5\.5' outside"),
        (STS_HEADER, "sts", ["1", "b", "s one", "s two", "n/a"], "non-numeric label 'n/a'"),
        # a tab inside the sentence: csv.DictReader would have read the label as 4
        (SST_HEADER, "sst", ["1", "b", "a fine", "4", "0"],
         r"5 fields, the header has 4 \(a tab inside a cell\?\)"),
        (SST_HEADER, "sst", ["1", "b", "3"], r"3 fields, the header has 4 \(a missing cell\?\)"),
        (PAIR_HEADER, "para", ["1", "b", "q one?", "q", "1.0", "0.0"],
         "6 fields, the header has 5"),
    ],
)
def test_dirty_row_skipped_or_strict(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    header: list[str],
    task: str,
    bad_row: list[str],
    reason: str,
) -> None:
    width = len(header)
    good = ["0", "a", *(["good words"] * (width - 3)), "1"]
    path = _write(tmp_path / "f.csv", header, [good, bad_row, ["2", "c", *good[2:]]])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ex = read_split(path, task, "dev")
    # the bad row is skipped and the two good rows kept
    assert len(ex) == 2
    # the skip is counted at file line 3 with its reason
    assert len(ex.skipped) == 1 and ex.skipped[0][0] == 3
    assert re.search(reason, ex.skipped[0][1])
    # the warning names file:line
    assert "f.csv:3 (" in caplog.text
    # strict mode raises DataError naming file:line and the reason
    with pytest.raises(DataError, match=rf"f\.csv:3: {reason}"):
        read_split(path, task, "dev", strict=True)


def test_integral_float_class_labels_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", SST_HEADER, [["0", "a", "x", "4.0"], ["1", "b", "y", " 0 "]])
    ex = read_split(path, "sst", "dev")
    # "4.0" and " 0 " are whole class numbers and kept
    assert ex.labels is not None and ex.labels.tolist() == [4.0, 0.0]


@pytest.mark.parametrize("split", ["train", "dev"])
def test_labeled_split_needs_label_column(tmp_path: Path, split: str) -> None:
    path = _write(tmp_path / "f.csv", ["", "id", "sentence"], [["0", "a", "fine"]])
    # train and dev splits must carry the label column, named in the message
    with pytest.raises(DataError, match=rf"f\.csv:1: the {split} split needs a 'sentiment' column"):
        read_split(path, "sst", split)


def test_test_split_may_lack_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", ["", "id", "sentence"], [["0", "a", "fine"]])
    # a test split without the label column is read unlabeled
    assert read_split(path, "sst", "test").labels is None


def test_header_lacking_text_column(tmp_path: Path) -> None:
    header = ["", "id", "sentence1", "is_duplicate"]
    path = _write(tmp_path / "f.csv", header, [["0", "a", "x", "1"]])
    # a missing text column is named, with the header found
    with pytest.raises(
        DataError, match=r"f\.csv:1: header lacks column\(s\) \['sentence2'\] for task 'para'"
    ):
        read_split(path, "para", "dev")


def test_extra_field_not_read_as_label(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # line 3: the sentence "dull<tab>4" puts a valid label 4 before the real label 0
    path = tmp_path / "f.csv"
    path.write_text("\tid\tsentence\tsentiment\n0\ta\tgood\t3\n1\tb\tdull\t4\t0\n2\tc\tok\t2\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ex = read_split(path, "sst", "dev")
    # the row is skipped, not read with the label 4
    assert ex.ids == ("a", "c") and ex.labels is not None and ex.labels.tolist() == [3.0, 2.0]
    # it is counted at its file line with the field counts
    assert ex.skipped == ((3, "5 fields, the header has 4 (a tab inside a cell?)"),)
    # the file's one warning gives the count and file:line
    assert "skipped 1 row(s): f.csv:3 (5 fields, the header has 4" in caplog.text


def test_field_count_checked_in_unlabeled_split(tmp_path: Path) -> None:
    path = tmp_path / "sts-test-student.csv"
    # line 3 lacks its leading index cell, which would shift the id into the index column
    path.write_text("0\t\tid\tsentence1\tsentence2\n1\t0.0\taa\tx\ty\n1.0\tbb\tz\tw\n")
    ex = read_split(path, "sts", "test")
    # even a leaderboard file skips a row whose cells cannot be matched to the columns
    assert (ex.ids, ex.skipped) == (("aa",), ((3, "4 fields, the header has 5 (a missing cell?)"),))


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("\tid\tsentence\tsentiment\n0\ta\tgood\t3\n\n1\tb\tok\t2\n\n")
    ex = read_split(path, "sst", "dev")
    # empty lines are neither rows nor skips (as csv.DictReader did)
    assert (ex.ids, ex.skipped) == (("a", "b"), ())


# ---------------------------------------------------------------------------- broken files


def test_header_only_file_holds_no_usable_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", SST_HEADER, [])
    # a header without rows is an error naming the file, task and split, not an empty split
    with pytest.raises(
        DataError,
        match=r"f\.csv holds no usable rows \(task 'sst', split 'train'\): it has a header "
        r"but no data rows; use the complete file$",
    ):
        read_split(path, "sst", "train")


def test_empty_file_holds_no_usable_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("")
    # a file without even a header says what the header must hold
    with pytest.raises(
        DataError,
        match=r"f\.csv holds no usable rows \(task 'para', split 'dev'\): the file is empty; "
        r"it needs a tab-separated header line \(id, sentence1, sentence2, is_duplicate\)",
    ):
        read_split(path, "para", "dev")


def test_all_rows_skipped_holds_no_usable_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [[str(i), f"r{i}", "fine", "9"] for i in range(5)]
    path = _write(tmp_path / "f.csv", SST_HEADER, rows)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(
        DataError,
        match=r"f\.csv holds no usable rows \(task 'sst', split 'dev'\): all 5 data row\(s\) "
        r"were skipped: f\.csv:2 \(label '9' outside \(0, 4\)\), f\.csv:3 .*, f\.csv:4 .* "
        r"and 2 more; fix those rows or use another file$",
    ):
        read_split(path, "sst", "dev")
    # the skip warning still lists every row
    assert "skipped 5 row(s)" in caplog.text and "f.csv:6 (label '9'" in caplog.text


def test_read_splits_refuses_an_empty_split(tmp_path: Path) -> None:
    _write(tmp_path / "ids-sst-train.csv", SST_HEADER, [])
    _write(tmp_path / "ids-sst-dev.csv", SST_HEADER, [["0", "a", "fine", "3"]])
    config = DataConfig(data_dir=str(tmp_path), tasks=("sst",), splits=("train", "dev"))
    # training data is refused before any model is built, not when batches are drawn
    with pytest.raises(DataError, match=r"ids-sst-train\.csv holds no usable rows"):
        read_splits(config)


@pytest.mark.parametrize(("bom", "line"), [(False, 3), (True, 3), (False, 5000), (True, 5000)])
def test_non_utf8_byte(tmp_path: Path, bom: bool, line: int) -> None:
    rows = [f"{i}\tr{i}\tfine\t3\n".encode() for i in range(line - 1)]
    rows[line - 2] = b"9\tbad\tcaf\xe9\t3\n"  # Latin-1 e-acute at file line `line`
    path = tmp_path / "f.csv"
    header = b"\tid\tsentence\tsentiment\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + header + b"".join(rows))
    # the byte is named at its file line (past the first read chunk too), with how to convert
    with pytest.raises(
        DataError,
        match=rf"f\.csv:{line}: byte 0xe9 is not UTF-8; data files must be UTF-8: convert this "
        r"one, e\.g\. `iconv -f LATIN1 -t UTF-8 f\.csv > f\.utf8\.csv` if it is Latin-1",
    ):
        read_split(path, "sst", "dev")


def test_utf8_bom_before_header(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id\tsentence\tsentiment\nA\tfine\t3\n", encoding="utf-8-sig")
    # the file really starts with a byte order mark, glued to the first column name `id`
    assert path.read_bytes()[:5] == b"\xef\xbb\xbfid"
    ex = read_split(path, "sst", "dev")
    # the mark is dropped: the `id` column is found and the row read
    assert (ex.ids, ex.texts, ex.skipped) == (("a",), (("fine",),), ())


def test_huge_field(tmp_path: Path) -> None:
    rows = [["0", "a", "fine", "3"], ["1", "b", "x" * 1_000_000, "3"], ["2", "c", "ok", "1"]]
    path = _write(tmp_path / "f.csv", SST_HEADER, rows)
    # a 1 MB cell is an error at its file line, not a raw csv traceback
    with pytest.raises(
        DataError,
        match=r"f\.csv:3: the row starting on this line cannot be split into cells: field larger "
        r"than field limit \(131072\); the file is broken there \(e\.g\. a cell of megabytes, "
        r"or a double quote that opens a cell and is never closed\): fix that row or regenerate "
        r"the file$",
    ):
        read_split(path, "sst", "dev")
    # csv's field size limit is left at its default
    assert csv.field_size_limit() == 131072


def test_unclosed_quote_reported_where_it_opens(tmp_path: Path) -> None:
    rows = [["0", "a", '"opens a cell', "3"]] + [[str(i), "b", "y" * 60, "3"] for i in range(3000)]
    path = _write(tmp_path / "f.csv", SST_HEADER, rows)
    # the quote swallows the following lines until csv's limit; the error points at line 2
    with pytest.raises(DataError, match=r"f\.csv:2: the row starting on this line cannot be split"):
        read_split(path, "sst", "dev")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "ids-sst-train.csv").mkdir()
    folder = r"ids-sst-train\.csv is a folder, not a data file \(task 'sst', split 'train'\); "
    # split_path says the name is a folder, not that the file is missing
    with pytest.raises(DataError, match=folder + r"put the tab-separated file ids-sst-train\.csv"):
        split_path(tmp_path, "sst", "train")
    # read_split given the folder says the same
    with pytest.raises(DataError, match=folder + "put the"):
        read_split(tmp_path / "ids-sst-train.csv", "sst", "train")


@pytest.mark.usefixtures("original_data")
def test_folder_under_preferred_test_name(tmp_path: Path) -> None:
    shutil.copy(ORIGINAL / "ids-sst-test-student.csv", tmp_path)
    (tmp_path / "ids-sst-test.csv").mkdir()
    # a folder under the preferred labeled name is reported, not passed over for the unlabeled file
    with pytest.raises(DataError, match=r"ids-sst-test\.csv is a folder, not a data file"):
        split_path(tmp_path, "sst", "test")


def test_symlink_loop_is_reported_as_a_loop(tmp_path: Path) -> None:
    (tmp_path / "ids-sst-train.csv").symlink_to("ids-sst-train.csv")
    # the name exists (as a link that leads back to itself): a loop, not a missing file
    loop = (rf"data file {tmp_path}/ids-sst-train\.csv \(task 'sst', split 'train'\) is a "
            rf"symbolic link loop \({tmp_path}/ids-sst-train\.csv -> ids-sst-train\.csv\); "
            "point the link at the tab-separated file")
    with pytest.raises(DataError, match=loop):
        split_path(tmp_path, "sst", "train")
    with pytest.raises(DataError, match=loop):
        read_split(tmp_path / "ids-sst-train.csv", "sst", "train")


def test_dangling_symlink_names_its_target(tmp_path: Path) -> None:
    (tmp_path / "ids-sst-dev.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(DataError, match=rf"is a symbolic link to {tmp_path}/gone\.csv, which "
                                        "does not exist; point the link at"):
        split_path(tmp_path, "sst", "dev")


def test_data_folder_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to(tmp_path / "data")
    with pytest.raises(DataError, match=r"data folder .*data \(from --data-dir\) is a symbolic "
                                        r"link loop \(.*data -> .*data\); point the link"):
        resolve_data_dir(tmp_path / "data")


def test_duplicate_id_in_a_labeled_split_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [["0", "a", "fine", "3"], ["1", "b", "good", "4"], ["2", "A", "bad", "0"]]
    path = _write(tmp_path / "f.csv", SST_HEADER, rows)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        examples = read_split(path, "sst", "dev")
    # ids compare case-insensitively (they are read lower-cased); the first row with the id stays
    assert examples.ids == ("a", "b")
    assert examples.skipped == ((4, "duplicate id 'a' (first on line 2)"),)
    assert "f.csv:4 (duplicate id 'a' (first on line 2))" in caplog.text
    with pytest.raises(DataError, match=r"f\.csv:4: duplicate id 'a' \(first on line 2\) "
                                        r"\(task 'sst', strict mode\)"):
        read_split(path, "sst", "dev", strict=True)


def test_duplicate_id_in_an_unlabeled_split_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", ["", "id", "sentence"],
                  [["0", "a", "fine"], ["1", "b", "good"], ["2", "a", "bad"]])
    # the leaderboard files need one prediction per id: the file is refused, not cut
    with pytest.raises(DataError, match=r"f\.csv:4: id 'a' is also the id of line 2; the "
                                        "leaderboard files need one prediction per id"):
        read_split(path, "sst", "test")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        # tests run as root, so a file without read permission is simulated
        (PermissionError(13, "Permission denied"),
         r"cannot read data file .*f\.csv: Permission denied; check the file's permissions "
         r"\(e\.g\. `ls -l`\): the user running mtl-tune must be able to read it"),
        # another error is named with its own reason, without a permissions hint
        (OSError(5, "Input/output error"),
         r"cannot read data file .*f\.csv: Input/output error; check that the file exists "
         r"and that its disk or share can be read$"),
    ],
)
def test_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, message: str
) -> None:
    path = _write(tmp_path / "f.csv", SST_HEADER, [["0", "a", "fine", "3"]])
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise error
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refuse)
    # the file is named with the reason and what to check
    with pytest.raises(DataError, match=message):
        read_split(path, "sst", "dev")


def test_data_check_reports_broken_files(tmp_path: Path, tiny_data_dir: Path) -> None:
    write_tiny_data(tmp_path, rows=4)
    _write(tmp_path / "ids-sst-train.csv", SST_HEADER, [])
    (tmp_path / "sts-dev.csv").unlink()
    (tmp_path / "sts-dev.csv").mkdir()
    result = CliRunner().invoke(app, ["data", "check", "--data-dir", str(tmp_path)])
    # `mtl-tune data check` fails and names each broken file with its problem
    assert result.exit_code == 1
    assert "ids-sst-train.csv holds no usable rows (task 'sst', split 'train')" in result.output
    assert "sts-dev.csv is a folder, not a data file (task 'sts', split 'dev')" in result.output
    # the other files are still read
    assert len(re.findall(r"^Error: ", result.output, flags=re.MULTILINE)) == 2
    # in the table (tasks by their names) the broken files say "error" (they exist), not "missing"
    rows = {tuple(x.split()[:2]): x.split()[2:4] for x in result.output.splitlines()}
    assert rows[("SST", "train")] == ["error", "ids-sst-train.csv"]
    assert rows[("STS", "dev")] == ["error", "sts-dev.csv"]
    assert rows[("SST", "dev")][0] == "ok"


# ---------------------------------------------------------------------------- normalisation


def test_single_sentence_normalisation(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", SST_HEADER, [["0", "ABC", "  What's UP? It's Great.  ", "2"]])
    ex = read_split(path, "sst", "dev")
    # single sentences are lower-cased and stripped only (the course's SST loader)
    assert ex.texts == (("what's up? it's great.",),)
    # ids are lower-cased
    assert ex.ids == ("abc",)


def test_pair_normalisation(tmp_path: Path) -> None:
    row = ["0", "a", "What's up?", "  Yes,   it's  FINE.  ", "1.0"]
    ex = read_split(_write(tmp_path / "f.csv", PAIR_HEADER, [row]), "para", "dev")
    # pairs are lower-cased with . ? , ' split off and whitespace collapsed (course's preprocess)
    assert ex.texts == (("what 's up ?", "yes , it 's fine ."),)


# ---------------------------------------------------------------------------- subsets


def test_max_examples_subset(tmp_path: Path) -> None:
    path = write_tiny_data(tmp_path, rows=400) / "ids-sst-train.csv"
    full = read_split(path, "sst", "train")
    a = read_split(path, "sst", "train", max_examples=100)
    b = read_split(path, "sst", "train", max_examples=100)
    # the subset has the requested size
    assert len(a) == 100 and a.labels is not None and a.labels.shape == (100,)
    # the same subset every time
    assert a.ids == b.ids
    index = {row_id: i for i, row_id in enumerate(full.ids)}
    positions = [index[i] for i in a.ids]
    # rows are a subset of the file, kept in file order
    assert positions == sorted(positions)
    # each kept row carries its own text and label
    assert full.labels is not None
    assert [full.texts[p] for p in positions] == list(a.texts)
    assert np.array_equal(full.labels[positions], a.labels)
    # and it is a random subset, not simply the first rows
    assert positions != list(range(100))


def test_max_examples_larger_than_file_keeps_all(tiny_data_dir: Path) -> None:
    ex = read_split(tiny_data_dir / "sts-dev.csv", "sts", "dev", max_examples=10_000)
    # asking for more rows than there are keeps every row
    assert len(ex) == 48


def test_max_examples_negative(tiny_data_dir: Path) -> None:
    # a negative subset size is refused
    with pytest.raises(ConfigError, match="max_examples must be >= 0 or None, but got -1"):
        read_split(tiny_data_dir / "sts-dev.csv", "sts", "dev", max_examples=-1)


def test_read_splits_max_examples_spares_test(tiny_data_dir: Path) -> None:
    config = DataConfig(
        data_dir=str(tiny_data_dir), tasks=("sst", "sts"), splits=("train", "test"), max_examples=10
    )
    out = read_splits(config)
    # train splits are cut to max_examples
    assert len(out["sst"]["train"]) == 10 and len(out["sts"]["train"]) == 10
    # test splits are always read whole
    assert len(out["sst"]["test"]) == 48 and len(out["sts"]["test"]) == 48


def test_read_splits_explicit_files_without_data_dir(
    monkeypatch: pytest.MonkeyPatch, tiny_data_dir: Path
) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    config = DataConfig(
        tasks=("sts",), splits=("dev",), files=(("sts", "dev", str(tiny_data_dir / "sts-dev.csv")),)
    )
    # explicit files for every (task, split) need no data folder
    assert len(read_splits(config)["sts"]["dev"]) == 48


def test_read_splits_partial_explicit_files_need_data_dir(
    monkeypatch: pytest.MonkeyPatch, tiny_data_dir: Path
) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    config = DataConfig(
        tasks=("sst",), splits=("dev",), files=(("sts", "dev", str(tiny_data_dir / "sts-dev.csv")),)
    )
    # an explicit file for another task does not stand in for the data folder
    with pytest.raises(DataError, match="no data folder given"):
        read_splits(config)


# ---------------------------------------------------------------------------- tokenizing


def _examples(task: str, texts: Sequence[tuple[str, ...]], labels: list[float]) -> Examples:
    return Examples(
        task=task,
        split="dev",
        path="mem",
        ids=tuple(str(i) for i in range(len(texts))),
        texts=tuple(texts),
        labels=np.asarray(labels, dtype=np.float32),
        skipped=(),
    )


PAIRS = [("what 's up ?", "nothing much ."), ("a b c d e f g", "z")]


def test_tokenize_siamese_pairs(tokenizer: WordPieceTokenizer) -> None:
    split = tokenize_split(_examples("sts", PAIRS, [4.2, 0.0]), tokenizer, "siamese")
    # siamese encoding gives one segment per sentence
    assert len(split.segments) == 2
    first = tokenizer.encode([a for a, _ in PAIRS])
    second = tokenizer.encode([b for _, b in PAIRS])
    # each segment is its sentence encoded alone
    assert torch.equal(split.segments[0].input_ids, first.input_ids)
    assert torch.equal(split.segments[1].input_ids, second.input_ids)
    # a single-sentence segment has token type 0 only
    assert int(split.segments[1].token_type_ids.max()) == 0
    # a row's length is its longest segment's
    assert split.lengths.tolist() == [
        max(int(first.lengths[i]), int(second.lengths[i])) for i in range(2)
    ]


def test_tokenize_cross_pairs(tokenizer: WordPieceTokenizer) -> None:
    split = tokenize_split(_examples("para", PAIRS, [1.0, 0.0]), tokenizer, "cross")
    # cross encoding gives one joint segment
    assert len(split.segments) == 1
    seg = split.segments[0]
    ids = seg.input_ids[0, : int(seg.lengths[0])].tolist()
    types = seg.token_type_ids[0, : int(seg.lengths[0])].tolist()
    second_start = ids.index(102) + 1
    # the layout is [CLS] a [SEP] b [SEP]
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(102) == 2
    # token types are 0 up to the first [SEP] and 1 on the second sentence and its [SEP]
    assert types == [0] * second_start + [1] * (len(ids) - second_start)


def test_tokenize_single_sentence_task(tokenizer: WordPieceTokenizer) -> None:
    for encoding in ("siamese", "cross"):
        split = tokenize_split(_examples("sst", [("a film .",)], [3.0]), tokenizer, encoding)
        # a single-sentence task has one segment whatever the pair encoding
        assert len(split.segments) == 1


@pytest.mark.parametrize(
    ("task", "texts", "dtype"),
    [("sst", [("a",)], torch.long), ("para", [("a", "b")], torch.long),
     ("sts", [("a", "b")], torch.float32), ("cfimdb", [("a",)], torch.long)],
)
def test_label_dtypes(
    tokenizer: WordPieceTokenizer, task: str, texts: list[tuple[str, ...]], dtype: torch.dtype
) -> None:
    split = tokenize_split(_examples(task, texts, [1.0]), tokenizer)
    # classification labels are long, STS similarity float
    assert split.labels is not None and split.labels.dtype == dtype
    # the value is kept
    assert split.labels.tolist() == [1]


@pytest.mark.usefixtures("original_data")
def test_tokenize_unlabeled_and_empty(tokenizer: WordPieceTokenizer) -> None:
    ex = read_split(ORIGINAL / "sts-test-student.csv", "sts", "test", max_examples=5)
    split = tokenize_split(ex, tokenizer)
    # an unlabeled split tokenizes with labels None and keeps its ids
    assert split.labels is None and split.ids == ex.ids
    empty = tokenize_split(_examples("sts", [], []), tokenizer, "siamese")
    # an empty pair split still has one segment per sentence column
    assert len(empty) == 0 and len(empty.segments) == 2


def test_pair_encoding_checked(tokenizer: WordPieceTokenizer) -> None:
    # only siamese and cross are pair encodings
    with pytest.raises(
        ValueError, match=r"pair_encoding must be one of \('siamese', 'cross'\), but got 'joint'"
    ):
        tokenize_split(_examples("sts", PAIRS, [1.0, 2.0]), tokenizer, "joint")


def test_every_task_has_a_spec() -> None:
    # the four tasks are the course's three plus CFIMDB
    assert tuple(TASKS) == ("sst", "para", "sts", "cfimdb")


def test_unlabeled_split_keeps_rows_with_empty_sentences(tmp_path: Path) -> None:
    path = tmp_path / "sts-test-student.csv"
    path.write_text("0\t\tid\tsentence1\tsentence2\n1\t0.0\taa\tx y\t\n2\t1.0\tbb\tz\tw\n")
    examples = read_split(path, "sts", "test")
    # a leaderboard file needs a prediction for every input id, so no row is skipped
    assert (examples.ids, examples.skipped) == (("aa", "bb"), ())
