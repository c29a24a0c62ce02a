"""The study driver as a user runs it: exit codes, one driver per study, Ctrl-C, a killed
driver, a shared folder, and a local Ray that never leaves loopback.

Each test runs the CLI in a subprocess with its own RAY_TMPDIR, so its Ray processes can be
found and none survives the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from mtl_tune.studies.spec import CURVE_KEY
from mtl_tune.studies.store import read_meta
from mtl_tune.studies.store._lock import LOCK_FILE
from tests.helpers import tensorboard_scalars, unavailable
from tests.studies.conftest import (
    CLI,
    NO_SCHEDULER,
    kill_driver,
    private_ray_tmp,
    ray_processes,
    tiny_fixed,
    wait_gone,
    write_spec,
)

TOP = """
name = "{name}"
trainables = ["it6-balanced"]
search = "grid"
seeds = {seeds}
max_concurrent = 1
"""


def _env(ray_tmp: Path) -> dict[str, str]:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    return env


def _spec(tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, name: str, seeds: int,
          **fixed: object) -> Path:
    values = tiny_fixed(tiny_bert_dir, tiny_data_dir, **fixed)
    return write_spec(tmp_path, TOP.format(name=name, seeds=seeds), values, NO_SCHEDULER)


def _cli(args: list[str], ray_tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=_env(ray_tmp), capture_output=True, text=True,
                          timeout=timeout)


def _start(args: list[str], ray_tmp: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(CLI + args, env=_env(ray_tmp), stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(predicate, driver: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, f"the driver ended before {what}"
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Seen(NamedTuple):
    run: subprocess.CompletedProcess  # the launch's exit code and output
    root: Path  # its storage root: the study is root/seen


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path,
         tiny_data_dir: Path) -> Iterator[Seen]:
    """One finished study launched by the CLI, as a user does (`--seeds 2` over the spec's 1:
    two trials), for the tests that read its output or copy its folder."""
    folder = tmp_path_factory.mktemp("seen")
    path = _spec(folder, tiny_bert_dir, tiny_data_dir, "seen", seeds=1)
    root = folder / "studies"
    with private_ray_tmp() as ray_tmp:
        run = _cli(["study", "launch", str(path), "--storage", str(root), "--seeds", "2"],
                   ray_tmp)
        yield Seen(run, root)


def _stop_mid_study(driver: subprocess.Popen, folder: Path, epochs: int,
                    timeout: float = 180) -> None:
    """SIGSTOPs the driver once a trial has saved a checkpoint (each epoch's report does, on
    the storage itself) and none has saved its last (`epochs`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the driver ended before it was stopped mid-study"
        os.kill(driver.pid, signal.SIGSTOP)
        # checkpoint_000000 is the first epoch's
        saved = [int(p.name.split("_")[-1]) for p in folder.glob("tune/main/*/checkpoint_*")]
        if saved and max(saved) < epochs - 1:
            return
        os.kill(driver.pid, signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("timed out waiting for a trial to report")


def _an_epoch_logged(log: Path) -> bool:
    """Whether the driver printed an epoch's progress line (at once: a trial's result.json
    reaches the study folder only with Tune's next sync, once after the whole study)."""
    return " epoch " in log.read_text(errors="replace")


def test_errored_trials_exit_1_and_name_their_error_files(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    # a backbone whose weights are damaged: its tokenizer passes the driver's checks, the
    # trial fails as it loads the weights
    import shutil

    damaged = shutil.copytree(tiny_bert_dir, tmp_path / "damaged-bert")
    (damaged / "model.safetensors").write_bytes(b"not a safetensors file")
    path = _spec(tmp_path, damaged, tiny_data_dir, "fails", seeds=1)
    root = tmp_path / "studies"
    run = _cli(["study", "launch", str(path), "--storage", str(root)], ray_tmp)
    # a study with an errored trial exits 1 ...
    assert run.returncode == 1, run.stdout + run.stderr
    # ... says how many errored, and where each error is written
    assert "study fails: 0 of 1 planned trials finished, 1 errored, 0 unfinished" in run.stdout
    files = re.findall(r"^  (/\S+error\.txt)$", run.stderr, flags=re.MULTILINE)
    assert "1 trial(s) errored; their errors are in:" in run.stderr and len(files) == 1
    assert "model.safetensors" in Path(files[0]).read_text()
    # the driver released the study and left no Ray process behind
    assert not (root / "fails" / LOCK_FILE).exists()
    assert not wait_gone(ray_processes(ray_tmp), timeout=20)


@pytest.mark.chaos  # its hint and exit code are also checked by test_interruptions' Ctrl-C
def test_ctrl_c_exits_130_with_the_command_that_continues(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    path = _spec(tmp_path, tiny_bert_dir, tiny_data_dir, "stopped", seeds=3, epochs=4)
    root = tmp_path / "studies"
    driver = _start(["study", "launch", str(path), "--storage", str(root)], ray_tmp,
                    tmp_path / "launch.log")
    try:
        _wait_for(lambda: _an_epoch_logged(tmp_path / "launch.log"), driver, "an epoch")
        os.kill(driver.pid, signal.SIGINT)  # Ctrl-C
        driver.wait(120)
    finally:
        kill_driver(driver)
    log = (tmp_path / "launch.log").read_text()
    # an interrupted study exits 130, the shell's code for Ctrl-C ...
    assert driver.returncode == 130, log[-3000:]
    # ... and prints the exact command that continues it, instead of Tune's Python hint
    hint = "interrupted; continue the study with:\n  mtl-tune study resume stopped --storage "
    assert hint + str(root) in log
    assert "Tuner.restore(" not in log
    # the study is not marked finished, and `study status` says how to go on; the Ctrl-C found
    # a trial training (shown interrupted) or, on a slow machine, fell between two trials
    assert read_meta(root / "stopped").finished_at is None
    status = _cli(["study", "status", "stopped", "--storage", str(root)], ray_tmp)
    assert "no driver runs this study: it stopped before finishing" in status.stdout
    finished = re.search(r"(\d) of 3 planned trials finished", status.stdout)
    assert finished is not None and int(finished.group(1)) < 3, status.stdout
    resumed = _cli(["study", "resume", "stopped", "--storage", str(root)], ray_tmp)
    # resuming finishes it: exit 0, every trial finished
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "3 of 3 planned trials finished, 0 errored, 0 unfinished" in resumed.stdout
    assert not wait_gone(ray_processes(ray_tmp), timeout=20)


def test_one_driver_per_study_and_a_killed_driver_is_reported(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    path = _spec(tmp_path, tiny_bert_dir, tiny_data_dir, "held", seeds=1, epochs=8)
    root = tmp_path / "studies"
    folder = root / "held"
    driver = _start(["study", "launch", str(path), "--storage", str(root)], ray_tmp,
                    tmp_path / "launch.log")
    try:
        # the driver frozen mid-study (SIGSTOP, judged while stopped): it still runs the
        # study, however long the checks below take
        _stop_mid_study(driver, folder, epochs=8)
        second = _cli(["study", "resume", "held", "--storage", str(root)], ray_tmp)
        # a second driver on a running study is refused, naming the one that runs it
        assert second.returncode == 1
        refusal = f"study 'held' is being run by another driver (pid {driver.pid} on "
        assert refusal in second.stderr
        status = _cli(["study", "status", "held", "--storage", str(root)], ray_tmp)
        # `study status` names the live driver
        assert f"running: driver pid {driver.pid} on" in status.stdout
        kill_driver(driver)
    finally:
        kill_driver(driver)
    status = _cli(["study", "status", "held", "--storage", str(root)], ray_tmp)
    # after kill -9, no trial shows as running: they are interrupted, and the fix is printed
    assert " running " not in status.stdout and " interrupted " in status.stdout
    assert (f"no driver runs this study: it stopped before finishing; continue it with:\n"
            f"  mtl-tune study resume held --storage {root}") in status.stdout
    # the dead driver's lock is stale: a new driver takes the study over and finishes it
    resumed = _cli(["study", "resume", "held", "--storage", str(root)], ray_tmp)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 of 1 planned trials finished, 0 errored, 0 unfinished" in resumed.stdout
    assert not (folder / LOCK_FILE).exists()
    assert not wait_gone(ray_processes(ray_tmp), timeout=20)


def test_a_refused_resume_starts_no_ray(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    from mtl_tune.studies.store import DriverLock, StudyMeta, write_meta

    path = _spec(tmp_path, tiny_bert_dir, tiny_data_dir, "busy", seeds=1)
    folder = tmp_path / "studies" / "busy"
    folder.mkdir(parents=True)
    shutil.copy(path, folder / "spec.toml")
    write_meta(folder, StudyMeta(name="busy", trainables=("it6-balanced",)))
    with DriverLock(folder, "busy"):  # this test process is the live driver
        started = time.monotonic()
        refused = _cli(["study", "resume", "busy", "--storage", str(tmp_path / "studies")],
                       ray_tmp)
        seconds = time.monotonic() - started
    # the resume is refused, naming the driver that holds the study ...
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"is being run by another driver (pid {os.getpid()} on" in refused.stderr
    # ... before any Ray started: no Ray session folder, no Ray process
    assert list(ray_tmp.iterdir()) == [], (list(ray_tmp.rglob("*"))[:5], seconds)
    assert ray_processes(ray_tmp) == []


def test_a_study_folder_others_can_write_is_resumed_only_with_trust(
    seen: Seen, tmp_path: Path, ray_tmp: Path
) -> None:
    root = tmp_path / "studies"
    shutil.copytree(seen.root / "seen", root / "shared")  # a copy: the others read the study
    tuner = next((root / "shared" / "tune" / "main").glob("tuner.pkl"))
    tuner.chmod(0o666)  # anyone may replace the pickle that resuming loads
    refused = _cli(["study", "resume", "shared", "--storage", str(root)], ray_tmp)
    # resuming is refused with the file, the risk and the two ways out
    assert refused.returncode == 1
    assert (f"Error: {tuner} is writable by every user (mode -rw-rw-rw-): resuming unpickles"
            in refused.stderr)
    assert "chmod -R o-w" in refused.stderr and "--trust" in refused.stderr
    # ... before any Ray started
    assert list(ray_tmp.iterdir()) == []
    trusted = _cli(["study", "resume", "shared", "--storage", str(root), "--trust"], ray_tmp)
    # with --trust the user takes that risk, and the (finished) study resumes as usual
    assert trusted.returncode == 0, trusted.stdout[-3000:] + trusted.stderr[-3000:]
    assert "2 of 2 planned trials finished, 0 errored, 0 unfinished" in trusted.stdout


def test_a_resumed_study_whose_record_was_emptied_counts_what_its_table_shows(
    seen: Seen, tmp_path: Path, ray_tmp: Path
) -> None:
    root = tmp_path / "studies"
    shutil.copytree(seen.root / "seen", root / "emptied")
    ids = sorted({json.loads(line)["trial_id"] for line in
                  (root / "emptied" / "trials.jsonl").read_text().splitlines()})
    (root / "emptied" / "trials.jsonl").write_text("")  # `: > trials.jsonl`
    resumed = _cli(["study", "resume", "emptied", "--storage", str(root)], ray_tmp)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # the count and the table agree: both trials, each done
    assert "2 of 2 planned trials finished, 0 errored, 0 unfinished" in resumed.stdout
    rows = [line for line in resumed.stdout.splitlines() if line.startswith("main ")]
    assert len(ids) == 2 and sorted(line.split()[1] for line in rows) == ids
    assert all(line.split()[2] == "done" for line in rows), rows
    # the driver wrote the record again, so status lists them too
    status = _cli(["study", "status", "emptied", "--storage", str(root), "--json"], ray_tmp)
    assert sorted(t["trial_id"] for t in json.loads(status.stdout)["trials"]) == ids


CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_INET6?), .*?"
                     r"(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")")


def _outside_loopback(trace: str) -> list[str]:
    """The connect() calls of an strace log to addresses outside 127.0.0.0/8 and ::1."""
    bad = []
    for line in trace.splitlines():
        match = CONNECT.search(line)
        if not match:
            continue  # AF_UNIX, AF_NETLINK and the like stay on the machine
        address = match.group(2) or match.group(3)
        if not (address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")):
            bad.append(line)
    return bad


def test_outside_loopback_parser() -> None:
    lines = [
        '1 connect(6, {sa_family=AF_INET, sin_port=htons(53), '
        'sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
        '2 connect(7, {sa_family=AF_INET, sin_port=htons(80), '
        'sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '3 connect(8, {sa_family=AF_INET6, sin6_port=htons(1), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::ffff:192.0.2.2", &sin6_addr), sin6_scope_id=0}, 28) = -1',
        '4 connect(9, {sa_family=AF_UNIX, sun_path="/tmp/x"}, 110) = 0',
    ]
    # the parser flags exactly the outward connects, IPv4 and IPv6
    assert [line[0] for line in _outside_loopback("\n".join(lines))] == ["1", "3"]


@pytest.mark.chaos  # a minute under strace; the loopback settings it proves are unit-tested
def test_a_local_study_connects_only_to_loopback(
    tmp_path: Path, tiny_bert_dir: Path, tiny_data_dir: Path, ray_tmp: Path
) -> None:
    strace = shutil.which("strace")
    if strace is None:
        unavailable("strace is not installed: cannot watch the connections of Ray's processes "
                    "(Debian: apt-get install strace; .ci/run installs it)")
    probe = subprocess.run([strace, "-f", "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        unavailable(f"strace cannot trace here (ptrace refused): {probe.stderr.decode()[:200]}")
    path = _spec(tmp_path, tiny_bert_dir, tiny_data_dir, "offline", seeds=1)
    trace = tmp_path / "trace"
    run = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *CLI, "study", "launch",
         str(path), "--storage", str(tmp_path / "studies")],
        env=_env(ray_tmp), capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = trace.read_text()
    # the trace saw the study's processes connect (so it watched the right thing) ...
    assert text.count("connect(") > 20
    # ... and none of them, Ray's agents included, connected outside loopback
    assert _outside_loopback(text) == []


def _extra(tool: str) -> str:
    """The hint a missing viewer gets: the extra that brings it."""
    return "" if shutil.which(tool) else "  # pip install 'mtl-tune[dashboard]'"


def test_launch_shows_progress_of_the_total_and_the_next_commands(seen: Seen) -> None:
    from mtl_tune.studies.store import load_study_spec

    run, root = seen.run, seen.root
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # no Ray configuration box, no TensorBoard hint at Ray's temporary session folder
    assert "Configuration for experiment" not in run.stdout + run.stderr
    assert "/tmp/ray/session" not in run.stdout and "╭" not in run.stdout
    # each finished trial: done of the study's total, time elapsed, and an ETA (none at the end)
    progress = re.findall(r"finished: (\d)/(\d) trials done, \d+:\d\d:\d\d elapsed, (ETA "
                          r"\d+:\d\d:\d\d|done)$", run.stdout, flags=re.MULTILINE)
    assert [(done, total) for done, total, _ in progress] == [("1", "2"), ("2", "2")]
    assert progress[0][2].startswith("ETA") and progress[1][2] == "done"
    # it ends with what to run next
    folder = root / "seen"
    assert run.stdout.rstrip().endswith(
        f"next:\n  mtl-tune report ablation seen --storage {root}\n"
        f"  optuna-dashboard sqlite:///{folder / 'optuna.db'}{_extra('optuna-dashboard')}\n"
        f"  tensorboard --logdir {folder / 'tune'}{_extra('tensorboard')}")
    # the seed count is the study's own: a resume runs the same two seeds
    assert read_meta(folder).seeds == 2 and load_study_spec(folder).seeds == 2
    # TensorBoard: Tune's scalar per epoch, and each task's training loss at the loss curve's
    # points (steps of the run: here fewer than 50 an epoch, so each epoch's last step)
    trial_dirs = [p.parent for p in folder.glob("tune/main/*/result.json")]
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        scalars = tensorboard_scalars(trial_dir)
        epochs = [step for step, _ in scalars["ray/tune/overall"]]
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        ends = [int(point["step"]) for row in rows for point in row[CURVE_KEY]]
        assert len(epochs) == len(rows) == len(ends) > 0 and ends == sorted(ends)
        assert [step for step, _ in scalars["train_loss/sst"]] == ends
        # one window an epoch: its mean is the epoch's mean train loss
        assert [v for _, v in scalars["train_loss/sst"]] == pytest.approx(
            [row["train_loss_sst"] for row in rows], rel=1e-6)
        assert "ray/tune/train_loss_curve" not in " ".join(scalars)
