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
import uuid
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

STATE_PATTERN = "experiment_state-*.json"  # Tune's saved experiment state, one per driver run
SNAPSHOT_DIR = ".mtl-tune-saved-state"  # the last whole set of Tune's driver files
SETTLED_DIR = ".mtl-tune-settled"  # an empty file per trial id that retention has settled
MANIFEST = "manifest.json"  # written last: the set's file names and its experiment state
TORN = ".torn"


@dataclass(frozen=True)
class SavedTrial:
    """A trial as Tune's saved state has it: its status and the checkpoint it resumes from
    (what retention compares), its config and its folder."""

    status: str
    checkpoint: str | None
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    folder: str = field(default="", compare=False)  # relative to the experiment's (Tune's)


def parse_state(text: bytes | str) -> dict[str, SavedTrial]:
    """Trial id -> SavedTrial of a saved experiment state.

    Raises:
        ValueError: The text is not a whole saved state (e.g. cut by a full disk).
    """
    try:
        data = json.loads(text)
        trials = {}
        for trial_json, metadata_json in data["trial_data"]:
            trial, metadata = json.loads(trial_json), json.loads(metadata_json)
            name = (metadata.get("last_result") or {}).get("checkpoint_dir_name")
            trials[str(trial["trial_id"])] = SavedTrial(
                str(trial.get("status")), str(name) if name else None,
                dict(trial.get("config") or {}), str(trial.get("relative_logdir", "")))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a whole saved experiment state ({err})") from None
    return trials


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
    """Name -> 'size|mtime' of Tune's driver files (the experiment folder's top-level files)."""
    import pyarrow.fs

    return {i.base_name: f"{i.size}|{i.mtime_ns}" for i in list_files(fs, experiment)
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


def write_whole(fs: Any, path: str, data: bytes) -> None:
    """Writes a file on any pyarrow file system whole or not at all (`_write`)."""
    _write(fs, path, data)


def snapshot(fs: Any, experiment: str) -> dict[str, SavedTrial] | None:
    """Copies Tune's driver files into a new set folder of `SNAPSHOT_DIR` and returns the trials
    of its experiment state; None (and no new set) when that state does not read whole or a
    file changed during the copy (Tune was writing: the next pass copies it).

    The files are copied where they are (on an object store, by the store itself: no byte
    passes through the driver, whatever the state's size), into a folder of their own that the
    manifest names only once the set is whole; the set it replaces is deleted after."""
    before = _driver_files(fs, experiment)
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
        trials = parse_state(read_file(fs, f"{folder}/{newest}"))
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
