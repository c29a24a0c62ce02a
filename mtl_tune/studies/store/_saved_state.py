"""Ray Tune's saved experiment state, read without Ray, and a whole copy of it to restore from.

Tune's driver writes its state as files at the top of the experiment folder: the experiment
state (`experiment_state-<run>.json`, the trials), the searcher's state, the callbacks' and
`tuner.pkl`. They are rewritten in place (and uploaded, on an object store), so a full disk or a
kill mid-write can leave them cut, and Tune then starts the experiment afresh over the study.

`snapshot` copies them, as one set, into a folder of `SNAPSHOT_DIR` (which its manifest then
names) whenever their experiment state reads whole and none of them changed during the copy;
checkpoint retention deletes only against such a copy. On an object store the store copies
them: the driver sends no bytes of them, however large the state grows. `restore_snapshot`,
before `Tuner.restore`, puts the set back when the newest state does not read whole (the cut
files are kept beside, as `NAME.torn`). Works on any pyarrow file system.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mtl_tune.studies.store._resume_checkpoint import checkpoint_manager_latest

logger = logging.getLogger(__name__)

STATE_PATTERN = "experiment_state-*.json"  # Tune's saved experiment state, one per driver run
SNAPSHOT_DIR = ".mtl-tune-saved-state"  # the last whole set of Tune's driver files
SETTLED_DIR = ".mtl-tune-settled"  # an empty file per trial id that retention has settled
MANIFEST = "manifest.json"  # written last: the set's file names and its experiment state
TORN = ".torn"
# a trial id as a key in a trial's JSON text: which texts to parse for a trial
_NAMED_ID = re.compile(r'"trial_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class SavedTrial:
    """A trial as Tune's saved state has it: its status and the checkpoint it resumes from
    (what retention compares; `_resume_checkpoint`), its config and its folder."""

    status: str
    checkpoint: str | None
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    folder: str = field(default="", compare=False)  # relative to the experiment's (Tune's)


def _trial_data(text: bytes | str) -> list[Any]:
    """The (trial JSON, metadata JSON) pairs of a saved experiment state.

    Raises:
        ValueError: The text is not a whole saved state (e.g. cut by a full disk).
    """
    try:
        pairs = json.loads(text)["trial_data"]
        if not all(isinstance(a, str) and isinstance(b, str) for a, b in pairs):
            raise TypeError("a trial's entry is not two JSON texts")
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a whole saved experiment state ({err})") from None
    return list(pairs)


def _parse_trial(trial_json: str, metadata_json: str) -> tuple[str, SavedTrial]:
    trial, metadata = json.loads(trial_json), json.loads(metadata_json)
    try:
        name = checkpoint_manager_latest(metadata, str(trial.get("relative_logdir", "")))
    except ValueError:  # another version's state, or a member on another's checkpoint: its
        # last result's (which can be one newer than the one it resumes from)
        name = (metadata.get("last_result") or {}).get("checkpoint_dir_name")
    return str(trial["trial_id"]), SavedTrial(
        str(trial.get("status")), str(name) if name else None,
        dict(trial.get("config") or {}), str(trial.get("relative_logdir", "")))


def parse_state(text: bytes | str) -> dict[str, SavedTrial]:
    """Trial id -> SavedTrial of a saved experiment state, every trial read.

    Raises:
        ValueError: The text is not a whole saved state (e.g. cut by a full disk).
    """
    try:
        return dict(_parse_trial(*pair) for pair in _trial_data(text))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a whole saved experiment state ({err})") from None


class SavedState(Mapping[str, SavedTrial]):
    """A saved experiment state's trials, each read when it is asked for.

    Tune keeps each trial as a JSON text of its own inside its state (tens of megabytes at a
    thousand trials), and a retention pass asks for the few trials it watches: only their texts
    are parsed, found through an index of the trial ids each text names, so that a pass costs
    about the same at any study size. A trial whose text does not parse is missing, as one that
    Tune has not saved."""

    def __init__(self, text: bytes | str) -> None:
        """Raises ValueError: the text is not a whole saved state."""
        self._pairs = _trial_data(text)
        self._named: dict[str, list[int]] | None = None  # id -> the texts naming it
        self._read: dict[str, SavedTrial | None] = {}

    def _texts_naming(self, trial_id: str) -> list[int]:
        if self._named is None:
            self._named = {}
            for index, (trial_json, _) in enumerate(self._pairs):
                for named in set(_NAMED_ID.findall(trial_json)):
                    self._named.setdefault(named, []).append(index)
        return self._named.get(trial_id, [])

    def __getitem__(self, trial_id: str) -> SavedTrial:
        if trial_id not in self._read:
            self._read[trial_id] = None
            for index in self._texts_naming(trial_id):
                try:
                    found, trial = _parse_trial(*self._pairs[index])
                except (KeyError, TypeError, AttributeError, json.JSONDecodeError):
                    continue
                if found == trial_id:  # not a text naming it under a key of its own
                    self._read[trial_id] = trial
                    break
        read = self._read[trial_id]
        if read is None:
            raise KeyError(trial_id)
        return read

    def _every(self) -> dict[str, SavedTrial]:
        every = {}
        for pair in self._pairs:
            try:
                trial_id, trial = _parse_trial(*pair)
            except (KeyError, TypeError, AttributeError, json.JSONDecodeError):
                continue
            every[trial_id] = trial
        return every

    def __iter__(self) -> Iterator[str]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())


def list_files(fs: Any, folder: str, recursive: bool = False) -> list[Any]:
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(folder, allow_not_found=True, recursive=recursive)
    return list(fs.get_file_info(selector))


def read_file(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return bytes(stream.read())


def _write(fs: Any, path: str, data: bytes) -> None:
    """Writes whole or not at all: a sibling moved into place (a rename on a disk)."""
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as stream:
        stream.write(data)
    fs.move(tmp, path)


def _driver_files(fs: Any, experiment: str) -> dict[str, str]:
    """Name -> 'size|mtime' of Tune's driver files (the experiment folder's top-level files).

    Through Tune's driver's client, which knows the names of the files there, their stamps
    are asked by name: on an object store a listing of the folder returns every trial's folder
    too (1,000 at 1,000 trials) to find Tune's handful of files."""
    import pyarrow.fs

    file_names = getattr(getattr(fs, "handler", None), "file_names", None)
    names = file_names(experiment) if file_names is not None else None
    if names is None:
        found = list_files(fs, experiment)
    else:
        found = fs.get_file_info([f"{experiment}/{name}" for name in sorted(names)
                                  if not name.startswith(".") and not name.endswith(TORN)])
    return {i.base_name: f"{i.size}|{i.mtime_ns}" for i in found
            if i.type == pyarrow.fs.FileType.File and not i.base_name.startswith(".")
            and not i.base_name.endswith(TORN)}


def _newest_state(names: Any) -> str | None:
    states = sorted(n for n in names if fnmatch.fnmatch(n, STATE_PATTERN))
    return states[-1] if states else None


def state_stamp(fs: Any, experiment: str) -> str | None:
    """A stamp of Tune's driver files (None: no experiment state yet); it changes whenever
    Tune writes them."""
    files = _driver_files(fs, experiment)
    if _newest_state(files) is None:
        return None
    return json.dumps(sorted(files.items()))


def saved_trials(fs: Any, experiment: str) -> dict[str, SavedTrial] | None:
    """The trials of Tune's newest saved experiment state, as `Tuner.restore` will read it;
    None when there is none or it does not read whole.

    Raises:
        OSError: The storage cannot be read.
    """
    newest = _newest_state(_driver_files(fs, experiment))
    if newest is None:
        return None
    try:
        return parse_state(read_file(fs, f"{experiment}/{newest}"))
    except ValueError:
        return None


def saved_trials_in(folder: str) -> dict[str, SavedTrial] | None:
    """`saved_trials` of a local folder: Tune's driver folder, where it copies its saved files
    on a restore."""
    import pyarrow.fs

    return saved_trials(pyarrow.fs.LocalFileSystem(), folder)


def write_whole(fs: Any, path: str, data: bytes) -> None:
    """Writes a file on any pyarrow file system whole or not at all (`_write`)."""
    _write(fs, path, data)


def snapshot(fs: Any, experiment: str, stamp: str | None = None) -> SavedState | None:
    """Copies Tune's driver files into a new set folder of `SNAPSHOT_DIR` and returns the trials
    of its experiment state (each read when asked for, `SavedState`); None (and no new set)
    when that state does not read whole or a file changed during the copy (Tune was writing:
    the next pass copies it).

    The files are copied where they are (on an object store, by the store itself: no byte
    passes through the driver, whatever the state's size), into a folder of their own that the
    manifest names only once the set is whole; the set it replaces is deleted after. `stamp`:
    the files' `state_stamp` just taken, for the copy to start from (not asked again)."""
    before = dict(json.loads(stamp)) if stamp is not None else _driver_files(fs, experiment)
    newest = _newest_state(before)
    if newest is None:
        return None
    root = f"{experiment}/{SNAPSHOT_DIR}"
    name = uuid.uuid4().hex[:16]  # never the set the manifest names now
    folder = f"{root}/{name}"
    try:
        fs.create_dir(folder)
        for file in before:
            fs.copy_file(f"{experiment}/{file}", f"{folder}/{file}")
        # as the driver sent it, when it did (Tune's driver's client keeps it): what the copy
        # holds if no file changed meanwhile (checked next), without a download
        sent = _as_sent(fs, f"{experiment}/{newest}", before[newest])
        trials = SavedState(sent if sent is not None else read_file(fs, f"{folder}/{newest}"))
        if _driver_files(fs, experiment) != before:
            raise ValueError("Tune wrote its files during the copy")
        _write(fs, f"{root}/{MANIFEST}",
               json.dumps({"files": sorted(before), "state": newest, "set": name}).encode())
    except (OSError, ValueError) as err:  # a full disk, a cut state: the last whole set stays
        logger.debug("saved state of %s not copied now: %s", experiment, err)
        _delete_quietly(fs, folder)
        return None
    try:
        replaced = [e.path for e in list_files(fs, root) if e.base_name not in (name, MANIFEST)]
    except OSError as err:  # left for the next set to delete
        logger.debug("cannot list %s: %s", root, err)
        replaced = []
    for path in replaced:
        _delete_quietly(fs, path)
    return trials


def _as_sent(fs: Any, path: str, stamp: str) -> bytes | None:
    """The saved state at `path` as this process last sent it, when its file system kept it
    and the store's file is still that one (`UnchangedSkipping.sent_state`; `stamp`, as
    listed: 'size|mtime')."""
    sent_state = getattr(getattr(fs, "handler", None), "sent_state", None)
    return sent_state(path, stamp) if sent_state is not None else None


def _delete_quietly(fs: Any, path: str) -> None:
    import pyarrow.fs

    try:
        (info,) = fs.get_file_info([path])
        if info.type == pyarrow.fs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type == pyarrow.fs.FileType.File:
            fs.delete_file(path)
    except OSError as err:  # a leftover costs space, never the study
        logger.debug("cannot delete %s: %s", path, err)


def repair_saved_state(experiment_uri: str) -> str | None:
    """`restore_snapshot` for an experiment's folder or store URI."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(experiment_uri)
    return restore_snapshot(fs, path)


def restore_snapshot(fs: Any, experiment: str) -> str | None:
    """Before `Tuner.restore`: if Tune's newest experiment state does not read whole, moves
    Tune's driver files aside (`NAME.torn`) and puts the last whole set back. Returns the name
    of the state file restored, or None when nothing needed repair (or no whole set exists)."""
    current = _driver_files(fs, experiment)
    newest = _newest_state(current)
    if newest is None:
        return None
    try:
        parse_state(read_file(fs, f"{experiment}/{newest}"))
        return None
    except (OSError, ValueError) as err:
        problem = str(err)
    root = f"{experiment}/{SNAPSHOT_DIR}"
    try:
        manifest = json.loads(read_file(fs, f"{root}/{MANIFEST}"))
        folder = f"{root}/{manifest['set']}" if "set" in manifest else root  # older: flat
        kept = {name: read_file(fs, f"{folder}/{name}") for name in manifest["files"]}
        parse_state(kept[manifest["state"]])
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("Tune's saved state %s/%s is not readable (%s) and no whole copy of an "
                       "earlier one exists (%s)", experiment, newest, problem, err)
        return None
    for name in current:
        fs.move(f"{experiment}/{name}", f"{experiment}/{name}{TORN}")
    for name, data in kept.items():
        _write(fs, f"{experiment}/{name}", data)
    logger.warning("Tune's saved state %s/%s was not readable (%s): restored the last whole "
                   "copy, %s (the files it replaces are kept as NAME%s)", experiment, newest,
                   problem, manifest["state"], TORN)
    return str(manifest["state"])
