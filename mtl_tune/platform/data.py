"""CS224N data files: read them by column name, skip and count dirty rows.

The files are tab-separated with a header; columns are read by NAME because the course's
test-student files carry an extra leading column that shifts everything right.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_tune.exceptions import ConfigError, DataError, MissingDataFile
from mtl_tune.platform.config import DATA_ENV
from mtl_tune.platform.data_files import refuse_unusable, resolve_data_dir, split_path
from mtl_tune.platform.tasks import MAIN_TASKS, TaskSpec, task_spec

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Examples:
    """The rows of one split that could be used, and what was skipped (file line, reason)."""

    task: str
    split: str
    path: str
    ids: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...]  # one tuple of sentences per row
    labels: np.ndarray | None  # None for an unlabeled (test-student) split
    skipped: tuple[tuple[int, str], ...]

    def __len__(self) -> int:
        return len(self.ids)


def _normalise(text: str, pair: bool) -> str:
    # the course's loader: lower-case and strip; for sentence pairs it also split punctuation
    text = text.lower().strip()
    if pair:
        for mark in (".", "?", ",", "'"):
            text = text.replace(mark, " " + mark)
        text = " ".join(text.split())
    return text


def _parse_label(raw: str | None, spec: TaskSpec) -> float:
    text = (raw or "").strip()
    if not text:
        raise ValueError("empty label")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"non-numeric label {text!r}") from None
    low, high = spec.label_range
    if not low <= value <= high:  # also catches nan
        raise ValueError(f"label {text!r} outside {spec.label_range}")
    if spec.num_classes and value != int(value):
        raise ValueError(f"label {text!r} is not a whole class index")
    return value


def _data_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The file line and fields of each row of a tab-separated UTF-8 file, the header first.

    A UTF-8 byte order mark before the header is dropped. The line of a row is its last line
    (a quoted cell may span lines), as `csv.reader` counts it.

    Raises:
        DataError: The file cannot be opened or read, holds a byte that is not UTF-8, or a row
            csv cannot split (e.g. a cell over csv's field size limit); the message gives
            file:line where a line is known, and how to fix it.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read()
    except OSError as err:
        fix = (
            "check the file's permissions (e.g. `ls -l`): the user running mtl-tune must be "
            "able to read it"
            if isinstance(err, PermissionError)
            else "check that the file exists and that its disk or share can be read"
        )
        raise DataError(f"cannot read data file {path}: {err.strerror or err}; {fix}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        # err.object is what was decoded (without a byte order mark), so offsets are into it
        line = err.object.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}:{line}: byte {err.object[err.start]:#04x} is not UTF-8; data files must be "
            f"UTF-8: convert this one, e.g. `iconv -f LATIN1 -t UTF-8 {path.name} > "
            f"{path.stem}.utf8.csv` if it is Latin-1, and read the converted file"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    start = 1  # the first line of the row being split
    try:
        for fields in reader:
            yield reader.line_num, fields
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(
            f"{path}:{start}: the row starting on this line cannot be split into cells: {err}; "
            "the file is broken there (e.g. a cell of megabytes, or a double quote that opens "
            "a cell and is never closed): fix that row or regenerate the file"
        ) from None


def _parse_row(
    header: list[str], fields: list[str], spec: TaskSpec, pair: bool, labeled: bool
) -> tuple[str, tuple[str, ...], float]:
    """One row's id, normalised sentences and label; ValueError naming every problem of the row.

    A row whose field count differs from the header's is refused outright: its cells cannot
    be matched to the columns (a tab inside a sentence shifts the label into another column).
    """
    if len(fields) != len(header):
        hint = "a tab inside a cell?" if len(fields) > len(header) else "a missing cell?"
        raise ValueError(f"{len(fields)} fields, the header has {len(header)} ({hint})")
    row = dict(zip(header, fields, strict=True))
    problems: list[str] = []
    row_id = (row.get("id") or "").strip()
    if not row_id:
        problems.append("empty id")
    row_texts = tuple(_normalise(row.get(c) or "", pair) for c in spec.text_columns)
    # an unlabeled (leaderboard) split keeps empty sentences: every input id needs a prediction
    problems.extend(
        f"empty {column}"
        for column, text in zip(spec.text_columns, row_texts, strict=True)
        if not text and labeled
    )
    label = 0.0
    if labeled:
        try:
            label = _parse_label(row.get(spec.label_column), spec)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError("; ".join(problems))
    return row_id, row_texts, label


def _duplicate(path: Path, line: int, row_id: str, first: int, labeled: bool) -> None:
    """A row whose id an earlier row has: skipped (ValueError) if labeled, else DataError.

    An unlabeled split feeds the leaderboard files, which need one prediction per id: which
    of two rows the grader means cannot be guessed, so the file is refused.
    """
    if not labeled:
        raise DataError(
            f"{path}:{line}: id {row_id!r} is also the id of line {first}; the leaderboard "
            "files need one prediction per id: give one of the rows another id or remove it",
            path,
        )
    raise ValueError(f"duplicate id {row_id!r} (first on line {first})")


def read_split(
    path: str | Path,
    task: str,
    split: str,
    strict: bool = False,
    max_examples: int | None = None,
) -> Examples:
    """Reads one CS224N split file by column name.

    Rows with an empty or unparseable label, an empty sentence, an empty id, an id an earlier
    row has (ids compare case-insensitively) or another number of fields than the header are
    skipped and counted, with one warning per file listing
    file:line of each; `strict=True` raises instead. Blank lines are ignored. The file must be
    UTF-8; a byte order mark before the header is allowed.

    Args:
        path: The tab-separated file.
        task: One of `TASKS`.
        split: "train", "dev" or "test"; only a test split may lack the label column.
        strict: Raise DataError on the first dirty row instead of skipping it.
        max_examples: Keep a random subset of this size (seed 0, the same for every run), in
            file order; None keeps every row.

    Returns:
        The usable rows as `Examples`.

    Raises:
        DataError: The file is missing, a folder, unreadable, not UTF-8 or not splittable into
            cells; its header lacks a needed column; it holds no usable row; or, with `strict`,
            a row is dirty; an unlabeled split repeats an id. The message names the file (with
            :line where one is known).
        ConfigError: `max_examples` is negative.
    """
    spec = task_spec(task)
    if max_examples is not None and max_examples < 0:
        raise ConfigError(f"max_examples must be >= 0 or None, but got {max_examples}")
    path = Path(path)
    refuse_unusable(path, task, split)
    if not path.is_file():
        raise MissingDataFile(
            f"missing data file {path} (task {task!r}, split {split!r}); "
            f"check the path, or set --data-dir or {DATA_ENV} to the folder that holds it"
        )
    pair = len(spec.text_columns) == 2
    ids: list[str] = []
    texts: list[tuple[str, ...]] = []
    labels: list[float] = []
    skipped: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}  # id -> the line it was first read on
    no_rows = f"{path} holds no usable rows (task {task!r}, split {split!r})"
    rows = _data_rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(
            f"{no_rows}: the file is empty; it needs a tab-separated header line "
            f"(id, {', '.join(spec.text_columns)}, {spec.label_column}), then one row per example"
        )
    header = first[1]
    needed = ("id", *spec.text_columns)
    absent = [c for c in needed if c not in header]
    if absent:
        raise DataError(
            f"{path}:1: header lacks column(s) {absent} for task {task!r}; "
            f"the header has {header}"
        )
    labeled = spec.label_column in header
    if not labeled and split != "test":
        raise DataError(
            f"{path}:1: the {split} split needs a {spec.label_column!r} column; "
            f"the header has {header}"
        )
    for line, fields in rows:
        if not fields:  # a blank line, skipped silently as csv.DictReader does
            continue
        try:
            row_id, row_texts, label = _parse_row(header, fields, spec, pair, labeled)
            row_id = row_id.lower()
            if row_id in first_line:
                _duplicate(path, line, row_id, first_line[row_id], labeled)
        except ValueError as err:
            if strict:
                raise DataError(f"{path}:{line}: {err} (task {task!r}, strict mode)") from None
            skipped.append((line, str(err)))
            continue
        first_line[row_id] = line
        ids.append(row_id)
        texts.append(row_texts)
        labels.append(label)
    if skipped:
        where = ", ".join(f"{path.name}:{line} ({why})" for line, why in skipped)
        logger.warning("%s: skipped %d row(s): %s", path, len(skipped), where)
    if not ids:
        if not skipped:
            raise DataError(f"{no_rows}: it has a header but no data rows; use the complete file")
        listed = ", ".join(f"{path.name}:{line} ({why})" for line, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise DataError(
            f"{no_rows}: all {len(skipped)} data row(s) were skipped: {listed}{more}; "
            "fix those rows or use another file"
        )
    order = np.arange(len(ids))
    if max_examples is not None and max_examples < len(ids):
        order = np.sort(np.random.default_rng(0).permutation(len(ids))[:max_examples])
    label_array = np.asarray(labels, dtype=np.float32)[order] if labeled else None
    return Examples(
        task=task,
        split=split,
        path=str(path),
        ids=tuple(ids[i] for i in order),
        texts=tuple(texts[i] for i in order),
        labels=label_array,
        skipped=tuple(skipped),
    )


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how much of it to use."""

    data_dir: str | None = None  # None: $MTL_TUNE_DATA
    tasks: tuple[str, ...] = MAIN_TASKS
    splits: tuple[str, ...] = ("train", "dev")
    max_examples: int | None = None  # per task and split; None: all
    strict: bool = False
    files: tuple[tuple[str, str, str], ...] = ()  # explicit (task, split, path) overrides


def read_splits(config: DataConfig) -> dict[str, dict[str, Examples]]:
    """Reads every (task, split) of `config`: task -> split -> Examples."""
    explicit = {(task, split): path for task, split, path in config.files}
    covered = all((t, s) in explicit for t in config.tasks for s in config.splits)
    data_dir = None if covered else resolve_data_dir(config.data_dir)
    out: dict[str, dict[str, Examples]] = {}
    for task in config.tasks:
        task_spec(task)
        out[task] = {}
        for split in config.splits:
            if (task, split) in explicit:
                path = Path(explicit[(task, split)])
            else:
                assert data_dir is not None
                path = split_path(data_dir, task, split)
            limit = config.max_examples if split != "test" else None
            out[task][split] = read_split(path, task, split, config.strict, limit)
    return out
