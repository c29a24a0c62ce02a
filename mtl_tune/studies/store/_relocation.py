"""A study is where it is: paths that a study's earlier drivers recorded, mapped into the folder
the study is opened in.

A study folder copied or moved (`cp -a`, `mv`) keeps its files, but the paths a driver recorded
name the old place: its folder and default Optuna file in `study.json`, and the folders that the
callbacks and the scheduler Ray Tune pickled with the experiment write to. The driver that
resumes a moved study registers the old folder as moved to the one it runs in
(`register_move`), and those writers pass every recorded path through `here`, so the copy is
resumed in place and its original is never written to. Readers get the Optuna URL mapped by
`read_meta` (`moved_url`).
"""

from __future__ import annotations

from pathlib import Path

from mtl_tune.studies.store._optuna_storage import JOURNAL_PREFIX, SQLITE_PREFIX

_MOVES: dict[Path, Path] = {}  # old study folder -> the folder this driver runs it in


def register_move(old: Path, new: Path) -> None:
    """From now on, in this process, paths under `old` mean the same paths under `new`."""
    _MOVES[Path(old)] = Path(new)


def forget_moves() -> None:
    _MOVES.clear()


def here(path: str | Path) -> Path:
    """`path`, mapped out of a study folder registered as moved."""
    path = Path(path)
    for old, new in _MOVES.items():
        if path == old or old in path.parents:
            return new / path.relative_to(old)
    return path


def moved_url(url: str, old: Path, new: Path) -> str:
    """An Optuna URL of a SQLite or journal file under `old`, pointed under `new`; any other
    (a database server, a file elsewhere) as it is."""
    for prefix in (SQLITE_PREFIX, JOURNAL_PREFIX):
        if url.startswith(prefix):
            path = Path(url[len(prefix):])
            if path == old or old in path.parents:
                return prefix + str(new / path.relative_to(old))
    return url


def here_url(url: str) -> str:
    """`moved_url` through every registered move."""
    for old, new in _MOVES.items():
        url = moved_url(url, old, new)
    return url


def recorded_folder(folder: str | None, url: str, default_file: str) -> Path | None:
    """The folder a study's metadata says it was launched or last resumed in: its `folder`, or
    for a study from before that key, the folder of its default Optuna file; None if unknown."""
    if folder:
        return Path(folder)
    if url.startswith(SQLITE_PREFIX) and url.endswith("/" + default_file):
        return Path(url[len(SQLITE_PREFIX):]).parent
    return None
