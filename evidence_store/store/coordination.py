"""One dock per camera: a lock, held by the store, for the whole docking of one camera.

Why in the store: a dock's own per-camera lock (dock/lock.py) lives in its state folder, so it
only orders the dock processes of one machine. A data centre runs several docks against one
central store; two of them can be shown the same camera at once (a partition exported to both, a
watched share mounted on both, two partitions claiming one serial). Unordered, both would verify
the same clips: the later one would find the device chain already past a clip it had just
checked and quarantine the genuine recording as a replay, and both would delete on the camera.
So the docking of a camera holds a lock that every dock of the store sees:

* central store (PostgreSQL): a session-level advisory lock keyed by the device id. The server
  releases it when the session ends, so a dock that dies never leaves a camera locked: a killed
  process's connection closes at once; a machine cut off (power, network) is found dead by the
  server's TCP keepalive probes, which the session sets to about a minute (KEEPALIVE);
* local store (SQLite, one machine): flock(2) on ``locks/<device-id>.lock`` in the store folder,
  which the kernel releases when the process dies, whatever dock state folder each dock uses.

The second dock waits (``waiting`` is told who holds the lock, for its log line), then docks the
camera again: whatever the first left is ingested, and what it stored is recognised as stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from evidence_store.clip.ids import check_device_id
from evidence_store.errors import EvidenceError
from evidence_store.index import CENTRAL, backend_of
from evidence_store.objects import make_shared_dir
from evidence_store.store.records import _store_umask

if TYPE_CHECKING:
    from evidence_store.store.facade import Store

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"
#: The first key of every camera lock: the advisory lock space is shared by all users of the
#: database (the store's own schema lock uses the one-key form).
LOCK_SPACE = 0x62646B63  # "bdkc"
#: What a waiting dock is told when the holder cannot be named (another role's session).
UNKNOWN_HOLDER = "another dock"
#: TCP keepalive of a dock's database session (idle, interval, probes): a dock machine that is
#: cut off frees its cameras within about a minute.
KEEPALIVE = (30, 10, 3)


def lock_key(device_id: str) -> tuple[int, int]:
    """The advisory lock key of a camera: (LOCK_SPACE, 31 bits of SHA-256 of its id). Two ids
    that share the 31 bits only make their docks wait for each other; nothing else."""
    digest = hashlib.sha256(check_device_id(device_id).encode()).digest()
    return LOCK_SPACE, int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


def holder_name() -> str:
    """How this process names itself to a dock waiting for it (PostgreSQL's application_name
    holds at most 63 bytes)."""
    return f"bodycam-dock {socket.gethostname().split('.')[0]} pid {os.getpid()}"[:63]


@contextlib.contextmanager
def hold_camera(store: Store, device_id: str, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the store-wide lock of camera ``device_id`` for the body (blocking). ``waiting(holder)``
    is called once if another process holds it, before waiting."""
    check_device_id(device_id)
    tell = waiting or (lambda holder: None)
    if backend_of(store.config) == CENTRAL:
        with _database_lock(store, device_id, tell):
            yield
    else:
        with _folder_lock(store, device_id, tell):
            yield


@contextlib.contextmanager
def _database_lock(store: Store, device_id: str, tell: Callable[[str], None]) -> Iterator[None]:
    key = lock_key(device_id)
    index = store.index
    index.name_session(holder_name())
    index.probe_session(*KEEPALIVE)
    if not index.try_lock_camera(*key):
        found = index.camera_lock_holder(*key)
        tell(_describe(found) if found else UNKNOWN_HOLDER)
        index.lock_camera(*key)
    try:
        yield
    finally:
        try:
            index.unlock_camera(*key)
        except EvidenceError as exc:  # the session is gone, and the lock with it
            log.warning("camera %s: releasing its dock lock: %s (the server released it with the session)",
                        device_id, exc)


def _describe(holder: tuple) -> str:
    name, address, pid = holder
    where = f" at {address}" if address else ""
    return f"{name or UNKNOWN_HOLDER}{where} (database session {pid})"


@contextlib.contextmanager
def _folder_lock(store: Store, device_id: str, tell: Callable[[str], None]) -> Iterator[None]:
    folder = store.root / LOCKS_DIR
    with _store_umask():
        make_shared_dir(folder)
        fd = os.open(folder / f"{device_id}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            named = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            tell(named if named.isprintable() and named else UNKNOWN_HOLDER)
            fcntl.flock(fd, fcntl.LOCK_EX)
        # Who holds it, for the next dock's log line (read only under contention; never trusted).
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_name().encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the flock
