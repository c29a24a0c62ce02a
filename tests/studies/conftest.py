"""Study fixtures: spec files for the tiny model, Ray per module, and a check for leftover Ray."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray

from mtl_tune._reaper import environ_has
from tests.helpers import tiny_trial

CLI_MAIN = "from mtl_tune.cli import main; main()"
CLI = [sys.executable, "-c", CLI_MAIN]

# tiny trials spend most of their time starting up: half a CPU each (one torch thread) runs
# four at a time on 2 CPUs, about twice as fast as two trials of one CPU each
TINY_RESOURCES = "[resources]\ncpu = 0.5"


# the searched keys of the tiny Optuna studies, and the two schedulers they run under
TPE_SPACE = """
[space]
lr = { loguniform = [1e-5, 1e-3] }
sts_head = { choice = ["linear", "cosine"] }
"""
ASHA = """
[scheduler]
type = "asha"
grace_period = 1
reduction_factor = 2
"""
NO_SCHEDULER = '[scheduler]\ntype = "none"\n'
# a population judged after every epoch, a quarter of it exploited, lr and dropout mutated
PBT = """
[pbt]
interval = 1
quantile = 0.25

[pbt.mutations]
lr = { loguniform = [1e-5, 1e-3] }
dropout = [0.1, 0.2, 0.3]
"""


def tiny_fixed(tiny_bert_dir: Path, tiny_data_dir: Path, **extra: Any) -> dict[str, Any]:
    """[fixed] keys of a tiny trial: the random 2-layer BERT, 48 rows per file, short batches."""
    return tiny_trial(tiny_bert_dir, tiny_data_dir, threads=1, **extra)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def spec_text(top: str, fixed: dict[str, Any], tables: str = "") -> str:
    """A spec: top-level keys, [fixed] from a dict, the other tables ([resources]: TINY_RESOURCES
    unless `tables` has its own)."""
    lines = [top.strip(), "", "[fixed]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in fixed.items()]
    lines += ["", tables.strip()]
    if "[resources]" not in tables:
        lines += ["", TINY_RESOURCES]
    return "\n".join(lines) + "\n"


def write_spec(folder: Path, top: str, fixed: dict[str, Any], tables: str = "") -> Path:
    """Writes `spec_text(...)` to folder/spec.toml and returns the path."""
    path = folder / "spec.toml"
    path.write_text(spec_text(top, fixed, tables))
    return path


def launch_on_shared_ray(path: Path, root: Path) -> Any:
    """Launches the spec at `path` into `root` on the suite's shared Ray (see
    `tests.conftest.start_shared_ray`); returns the StudyOutcome."""
    from mtl_tune.studies import launch_study
    from mtl_tune.studies.spec import load_spec
    from tests.conftest import start_shared_ray

    start_shared_ray()
    return launch_study(load_spec(str(path)), root, path.read_text(), verbose=0)


def launch_on_own_ray(path: Path, root: Path, gpus: int = 0) -> Any:
    """Launches the spec at `path` into `root` on a Ray of its own (2 CPUs, `gpus` logical
    GPUs), shut down afterwards; returns the StudyOutcome."""
    from mtl_tune.studies import launch_study
    from mtl_tune.studies.spec import load_spec

    shutdown_and_check()  # the suite's shared Ray, if it runs: this test needs another shape
    ray.init(address="local", num_cpus=2, num_gpus=gpus, include_dashboard=False,
             log_to_driver=False)
    try:
        return launch_study(load_spec(str(path)), root, path.read_text(), verbose=0)
    finally:
        ray.shutdown()


def _ray_like(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        text = " ".join(proc.cmdline()) + " " + proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "ray" in text


def ray_children(pid: int | None = None) -> list[psutil.Process]:
    """Living Ray processes below `pid` (default: this process)."""
    try:
        children = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _ray_like(p)]


def wait_gone(procs: list[psutil.Process], timeout: float = 20.0) -> list[psutil.Process]:
    """Waits for `procs` to exit; returns those still alive (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.2)
    return alive


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def shutdown_and_check() -> None:
    """`ray.shutdown()` (of the shared Ray too, if it runs), then asserts no Ray process started
    by this test process survives."""
    ray.shutdown()
    left = wait_gone(ray_children())
    for proc in left:  # never leave them running, even when the check fails
        proc.kill()
    # ray.shutdown() stops every Ray process this test process started
    assert not left, [(p.pid, p.name()) for p in left]


def ray_processes(ray_tmp: Path) -> list[psutil.Process]:
    """Every living process started with our RAY_TMPDIR (the driver's Ray and its workers)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if environ_has(proc, f"RAY_TMPDIR={ray_tmp}"):  # Ray's agents included
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    return found


def kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()  # psutil refuses a pid that now names another process
        except psutil.NoSuchProcess:
            pass


@contextlib.contextmanager
def private_ray_tmp() -> Iterator[Path]:
    """A short private RAY_TMPDIR (Ray's socket paths must stay under 108 characters); on exit
    every process started with it is killed and the folder removed."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    try:
        yield folder
    finally:
        kill(ray_processes(folder))  # whatever happened in the test, leave nothing running
        wait_gone(ray_processes(folder), timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A private RAY_TMPDIR for the test (see `private_ray_tmp`)."""
    with private_ray_tmp() as folder:
        yield folder


@pytest.fixture
def fixed(tiny_bert_dir: Path, tiny_data_dir: Path) -> dict[str, Any]:
    return tiny_fixed(tiny_bert_dir, tiny_data_dir)


def kill_driver(driver: subprocess.Popen) -> None:
    """SIGKILLs a CLI driver's process group, unless it has ended, and reaps it."""
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)


def _start_driver(
    path: Path, data_dir: Path, root: Path | str, ray_tmp: Path, extra: tuple[str, ...],
    env_extra: dict[str, str] | None = None, command: tuple[str, ...] = (), prelude: str = "",
) -> subprocess.Popen:
    """`study launch` of the spec at `path` (or the CLI `command`, such as `study confirm
    NAME`) in a subprocess of its own session and RAY_TMPDIR, its output in launch.log beside
    the spec; `prelude` is Python the driver runs before the CLI (a patch that stops it at a
    chosen instant). Tune saves its state every 0.5 s (its default, 10 s or more, is longer than
    these tiny studies), so that a kill finds recent resume points."""
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "TUNE_GLOBAL_CHECKPOINT_S": "0.5",
           **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    args = [*(command or ("study", "launch", str(path), "--data-dir", str(data_dir))),
            "--storage", str(root), "--address", "local", *extra]
    with open(path.parent / "launch.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", f"{prelude}\n{CLI_MAIN}", *args], env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )


def _check_all_gone(started: list[psutil.Process], ray_tmp: Path) -> None:
    # the killed driver's reaper stopped its Ray, then itself: no process of it is left
    assert not wait_gone(started, timeout=20), [p.name() for p in started if p.is_running()]
    assert not wait_gone(ray_processes(ray_tmp), timeout=20)


def launch_and_kill_at_deletion(
    path: Path, data_dir: Path, root: Path | str, ray_tmp: Path,
    listing: Callable[[], set[str]], timeout: float = 300, extra: tuple[str, ...] = (),
) -> str:
    """Launches the study in a driver subprocess (see `_start_driver`), polls
    `listing()` (the checkpoint folders on the storage) as fast as it returns, and SIGKILLs the
    driver's process group the instant a folder it listed before is gone; returns that folder."""
    driver = _start_driver(path, data_dir, root, ray_tmp, extra)
    seen: set[str] = set()
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            current = listing()
            gone = seen - current
            if gone:
                os.killpg(driver.pid, signal.SIGKILL)
                break
            seen |= current
            if not started and seen:
                started = psutil.Process(driver.pid).children(recursive=True)
            # the driver is still running (the study did not end before a deletion)
            assert driver.poll() is None, "the driver ended before any checkpoint was deleted"
            assert time.monotonic() < deadline, f"no checkpoint deleted within {timeout} s"
        started += ray_processes(ray_tmp)
    finally:
        kill_driver(driver)
    _check_all_gone(started, ray_tmp)
    return sorted(gone)[0]


def launch_and_kill(
    path: Path, data_dir: Path, root: Path | str, ray_tmp: Path, until: Callable[[], Any],
    timeout: float = 300, extra: tuple[str, ...] = (), interrupt: bool = False,
    env_extra: dict[str, str] | None = None, command: tuple[str, ...] = (), prelude: str = "",
) -> Any:
    """Launches the study (or runs the CLI `command`) in a driver subprocess (`env_extra` added
    to its environment, `prelude` run before the CLI), polls
    `until()` (with the driver stopped) until it returns something, kills the driver (its
    process alone) with SIGKILL (`interrupt`: sends the driver a SIGINT, a Ctrl-C, and waits for
    it to exit 130) and checks that no process of it is left; returns what `until()` returned."""
    driver = _start_driver(path, data_dir, root, ray_tmp, extra, env_extra, command, prelude)
    try:
        deadline, seen = time.monotonic() + timeout, None
        while seen is None:
            assert time.monotonic() < deadline, f"nothing to kill at within {timeout} s"
            # the driver is still running (it did not fail before the kill)
            assert driver.poll() is None, "the driver ended before the kill"
            # judged on a stopped driver, so that the moment judged is the moment killed
            os.kill(driver.pid, signal.SIGSTOP)
            seen = until()
            if seen is None:
                os.kill(driver.pid, signal.SIGCONT)
                time.sleep(0.2)
        # every process below the driver: its Ray (whose agents outlive the driver's process
        # group, by Ray's design) and the reaper that stops them when the driver dies
        started = psutil.Process(driver.pid).children(recursive=True) + ray_processes(ray_tmp)
        assert any("Agent" in p.name() for p in started)
        if interrupt:
            os.kill(driver.pid, signal.SIGINT)
            os.kill(driver.pid, signal.SIGCONT)
            # Ctrl-C: the driver stops its trials, says how to resume and exits 130
            assert driver.wait(120) == 130, (path.parent / "launch.log").read_text()[-3000:]
        else:
            # the driver alone, as `kill -9 PID` does: its Ray is left to the reaper
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(30)
    finally:
        kill_driver(driver)
    _check_all_gone(started, ray_tmp)
    return seen


class BetweenTwoTrials:
    """The moment to kill the driver of a study that runs its trials one at a time: a trial
    finished, and Tune's newest saved state has registered a checkpoint of the running one (its
    checkpoint manager holds it, not only its last result: Tune registers a checkpoint a moment
    after the result that names it, and restores a trial from the manager's). Returns the
    record's last event by trial.

    `read(relative)` gives a study file's text, None while it is missing; `listing()` the study's
    relative file paths (a folder or an object store)."""

    def __init__(self, read: Callable[[str], str | None], listing: Callable[[], list[str]]):
        self.read, self.listing = read, listing

    def __call__(self) -> dict[str, str] | None:
        import json

        record = self.read("trials.jsonl")
        if record is None:
            return None
        events = [json.loads(line) for line in record.splitlines() if line.endswith("}")]
        last = {e["trial_id"]: e["event"] for e in events}
        running = [t for t, event in last.items() if event == "running"]
        if "finished" not in last.values() or len(running) != 1:
            return None
        listed = self.listing()
        states = sorted(p for p in listed if p.startswith("tune/main/experiment_state-"))
        text = self.read(states[-1]) if states else None
        if text is None or not _registered(text, running[0]):
            return None
        # and the running trial's first result is there too (Tune uploads its saved state and
        # the trials' files one after the other)
        results = [p for p in listed if p.startswith("tune/main/") and running[0] in p
                   and p.endswith("/result.json")]
        return last if results and (self.read(results[0]) or "").strip() else None


def _registered(state: str, trial_id: str) -> bool:
    """Whether a saved experiment state registers a checkpoint of the trial: its last result
    names one and its checkpoint manager (pickled, as hex) holds that one."""
    import json

    try:
        for trial_json, metadata_json in json.loads(state)["trial_data"]:
            if str(json.loads(trial_json)["trial_id"]) != trial_id:
                continue
            metadata = json.loads(metadata_json)
            name = (metadata.get("last_result") or {}).get("checkpoint_dir_name")
            manager = metadata.get("checkpoint_manager") or {}
            pickled = bytes.fromhex(manager.get("value", "")) if isinstance(manager, dict) else b""
            return bool(name) and str(name).encode() in pickled
    except (ValueError, KeyError, TypeError):  # being written or uploaded
        return False
    return False


def resume_cli(
    name: str, root: Path | str, ray_tmp: Path, log: Path, timeout: float = 480
) -> str:
    """Runs `study resume` to the end (within `timeout` seconds); returns its output (also
    written to `log`)."""
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    resume = subprocess.run(
        [*CLI, "study", "resume", name, "--storage", str(root), "--address", "local"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )
    output = resume.stdout.decode(errors="replace")
    log.write_text(output)
    # the resumed study runs to the end
    assert resume.returncode == 0, output[-4000:]
    return output


def stored_objects(uri: str) -> dict[str, Any]:
    """Relative path -> pyarrow FileInfo of every object under `uri` (an object store folder)."""
    import pyarrow.fs

    fs, base = pyarrow.fs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1:]: i for i in infos if i.type == pyarrow.fs.FileType.File}


def experiment_rows(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial id -> its result rows (`result.json`), of a study folder's main experiment."""
    from mtl_tune.studies.results import read_result_rows

    rows = {}
    for trial_dir in (folder / "tune" / "main").iterdir():
        if trial_dir.is_dir() and (trial_dir / "result.json").is_file():
            found = read_result_rows(trial_dir)
            rows[found[0]["trial_id"]] = found
    return rows
