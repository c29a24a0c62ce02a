"""The one opener of a study's Optuna storage: a SQLAlchemy URL or `journal:PATH`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

JOURNAL_PREFIX = "journal:"  # `journal:PATH`: an Optuna journal file, as `study launch` accepts
SQLITE_PREFIX = "sqlite:///"


def open_storage(url: str, create: bool = True) -> Any | None:
    """The Optuna storage at `url`; with `create=False`, None where its file does not exist."""
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL_PREFIX) :])
        if not create and not path.is_file():
            return None
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    sqlite_file = Path(url[len(SQLITE_PREFIX) :]) if url.startswith(SQLITE_PREFIX) else None
    if not create and sqlite_file is not None and not sqlite_file.is_file():
        return None
    return optuna.storages.RDBStorage(url)
