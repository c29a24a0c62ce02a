"""One driver per study: a lock file in the study folder, with the driver's pid, host and
heartbeat.

A driver holds `driver.json` while it runs the study and refreshes its heartbeat every
`HEARTBEAT_SECONDS`. The lock is taken with an exclusive create, so two drivers starting at once
cannot both get it. A lock is stale when its process is gone (same host) or its heartbeat is
older than `STALE_SECONDS` (another host, whose processes this one cannot see): a stale lock
means the last driver died without finishing, and a new driver may take over.

On an object store the lock is an object of the same content. A store offers no exclusive
create here (pyarrow writes objects unconditionally), so a driver writes its lock, waits
`SETTLE_SECONDS` and reads it back: of two drivers starting within that time, the one whose
write the store kept runs, the other stops.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import psutil

from mtl_tune.exceptions import MtlTuneError, SpecError
from mtl_tune.studies.store._storage import LOCK_FILE
from mtl_tune.studies.store._study_store import StudyStore

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: float  # the driver process's start time (tells a reused pid apart)
    heartbeat: float

    def alive(self, now: float | None = None) -> bool:
        """Whether the driver still runs: its process (this host) or its heartbeat (another)."""
        if self.host != socket.gethostname():
            return (now or time.time()) - self.heartbeat < STALE_SECONDS
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.started) < 1.0 and proc.status() != "zombie"
        except psutil.NoSuchProcess:
            return False

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {since}"


def read_holder(folder: Path) -> Holder | None:
    """The driver recorded in the study's lock (file or store object), or None when none is."""
    try:
        return Holder(**json.loads(StudyStore.at(folder).read_current(LOCK_FILE)))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def live_holder(folder: Path) -> Holder | None:
    """The driver running the study now, or None (no lock, or a stale one)."""
    holder = read_holder(folder)
    return holder if holder is not None and holder.alive() else None


def refuse_running(folder: Path, name: str) -> None:
    """Raises SpecError when a live driver holds the study in `folder`.

    Raises:
        SpecError: Another driver runs the study (its pid, host and start named).
    """
    other = read_holder(folder)
    if other is not None and other.alive():
        raise SpecError(
            f"study {name!r} is being run by another driver ({other.describe()}); "
            "wait for it to finish or stop it, then resume"
        )


class DriverLock:
    """Holds a study's lock while a driver runs it (a context manager).

    Raises:
        SpecError: On entry, when another live driver holds the study.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.store = StudyStore.at(folder)
        self.name = name
        me = psutil.Process()
        self.holder = Holder(os.getpid(), socket.gethostname(), me.create_time(), time.time())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _refuse_live(self) -> None:
        refuse_running(self.path.parent, self.name)
        other = read_holder(self.path.parent)
        if other is not None:
            logger.info("taking over study %s from a driver that died (%s)",
                        self.name, other.describe())

    def _kept_in_store(self) -> None:
        """Reads the lock object back after `SETTLE_SECONDS`: a driver that wrote its own at
        the same time may have replaced this one's."""
        time.sleep(SETTLE_SECONDS)
        kept = read_holder(self.path.parent)
        if kept is None or (kept.pid, kept.host, kept.started) != (
            self.holder.pid, self.holder.host, self.holder.started
        ):
            raise SpecError(
                f"study {self.name!r} was taken by another driver starting at the same time "
                f"({kept.describe() if kept else 'unknown'}); wait for it to finish, then resume"
            )

    def __enter__(self) -> DriverLock:
        for _ in range(2):
            if self.store.create_new(LOCK_FILE, json.dumps(asdict(self.holder))):
                break
            self._refuse_live()
            self.store.delete_current(LOCK_FILE)  # stale: its driver died without finishing
        else:
            raise SpecError(f"could not take the lock {self.path}; another driver took it first")
        if self.store.on_store:
            self._kept_in_store()
        self._start_heartbeat()
        return self

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="study-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            beat = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
            try:
                self.store.write_current(LOCK_FILE, json.dumps(asdict(beat)))
            except (OSError, MtlTuneError) as err:  # a full disk or a store outage must not
                # kill the study
                logger.warning("cannot refresh the study lock %s: %s", self.path, err)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = read_holder(self.path.parent)
        if current is not None and (current.pid, current.host) == (self.holder.pid,
                                                                   self.holder.host):
            self.store.delete_current(LOCK_FILE)
