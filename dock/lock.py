"""Per-camera locks: one ingest per camera at a time, across threads and processes.

Why: two ingests of the same camera (the daemon's udev path and a one-shot ``ingest``, or two
partitions claiming one serial) would race on the device chain and could delete a clip the other
has not stored yet. Different cameras never wait for each other; the store is concurrency-safe.
A flock(2) is released by the kernel when its process dies, so a SIGKILLed dock never leaves a
stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from evidence_store.clip.ids import check_device_id

log = logging.getLogger(__name__)


class DeviceLocks:
    def __init__(self, lock_dir: str | os.PathLike):
        self.lock_dir = Path(lock_dir)
        self._guard = threading.Lock()
        self._threads: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, device_id: str) -> Iterator[None]:
        """Hold the lock of ``device_id`` (blocking). The id is checked first: it becomes a file name."""
        check_device_id(device_id)
        with self._guard:
            tlock = self._threads.setdefault(device_id, threading.Lock())
        # flock is per open file description, so two threads of one process would not exclude
        # each other through it alone: the thread lock comes first.
        if not tlock.acquire(blocking=False):
            log.info("camera %s: waiting for another ingest of the same camera", device_id)
            tlock.acquire()
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_dir / f"{device_id}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("camera %s: waiting for another dock process", device_id)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            tlock.release()
