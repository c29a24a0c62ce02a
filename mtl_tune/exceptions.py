"""The project's errors: one base class the CLI catches at its boundary, a few subclasses, and
the "did you mean" every refusal of a name adds."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MtlTuneError(Exception):
    """Base class of every error mtl-tune raises for a user's mistake or bad input."""


class DataError(MtlTuneError):
    """A data file is missing, unreadable or holds a row that cannot be used."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path  # the file concerned, where one is known


class MissingDataFile(DataError):
    """No file of that name exists (as opposed to one that exists but cannot be used)."""


class ConfigError(MtlTuneError, ValueError):
    """A configuration key is unknown or its value is not allowed."""


class CheckpointError(MtlTuneError):
    """A checkpoint or model folder cannot be loaded into the requested model."""


class TrainingError(MtlTuneError):
    """Training cannot go on, e.g. a loss became NaN or infinite."""


class SpecError(MtlTuneError, ValueError):
    """A study spec is invalid."""


class FetchError(MtlTuneError):
    """Downloading the public data files failed."""


class Interrupted(MtlTuneError):
    """The user interrupted a command (Ctrl-C); the message says what was kept. Exit 130."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices` to a mistyped `value`, else ""."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
