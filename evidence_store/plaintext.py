"""Decrypted video on disk: private while it exists, gone after a crash.

An export decrypts segments into a work folder that becomes the package only when complete. A
process killed in between (SIGKILL, power loss) cannot clean up after itself, so:

* the work folder is created 0700 under umask 077 (files 0600): no other user can read it,
  whatever the store's group or the folder it sits in allows;
* its name carries its owner: boot id, pid and the process's start time
  (``.bodycam-plaintext-<purpose>-<boot>-<pid>-<start>-<random>``), so anyone can tell
  whether the process that made it still runs (a reused pid has another start time, a reboot
  another boot id);
* it is registered in the store (``plaintext/<name>`` holding its absolute path) before the
  first byte is decrypted, and the next store command removes every registered folder whose
  owner is gone (``sweep``); an export also sweeps the folder it writes into.

Linux only (``/proc``), like the rest of the store.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evidence_store.clip.fsutil import atomic_write
from evidence_store.objects import make_shared_dir

log = logging.getLogger(__name__)

PREFIX = ".bodycam-plaintext-"
REGISTRY_DIR = "plaintext"  # in the store folder
PRIVATE_UMASK = 0o077
_NAME = re.compile(re.escape(PREFIX) + r"([a-z]{1,16})-([0-9a-f]{8})-([0-9]{1,10})-([0-9]{1,20})-[0-9a-f]{8}\Z")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and ")"
    return fields[19] if len(fields) > 19 else None


def owner_alive(name: str) -> bool:
    """Whether the process that made the folder ``name`` still runs. A foreign name: True (keep)."""
    match = _NAME.match(name)
    if match is None:
        return True
    _, boot, pid, start, = match.groups()
    return boot == _boot_id() and _start_ticks(int(pid)) == start


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created meanwhile are for their user alone (decrypted video)."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_workdir(parent: Path, purpose: str, store_root: Path) -> Path:
    """A new private folder in ``parent`` for plaintext, registered in the store for the sweep."""
    pid = os.getpid()
    name = f"{PREFIX}{purpose}-{_boot_id()}-{pid}-{_start_ticks(pid) or 0}-{os.urandom(4).hex()}"
    path = parent.resolve() / name
    registry = store_root / REGISTRY_DIR
    make_shared_dir(registry)
    # Registered first: a kill between the two leaves only a registration, which the sweep drops.
    atomic_write(registry / name, str(path).encode(), mode=0o640)  # the group's sweep reads it
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # whatever the umask was
    except OSError:
        (registry / name).unlink(missing_ok=True)
        raise
    return path


def remove_workdir(path: Path, store_root: Path) -> None:
    """Remove a work folder and its registration (after success: it was renamed away)."""
    shutil.rmtree(path, ignore_errors=True)
    try:
        (store_root / REGISTRY_DIR / path.name).unlink()
    except FileNotFoundError:
        pass


def _remove_dead(path: Path) -> bool:
    """Remove ``path`` if it is one of our work folders (not a link) whose owner is gone."""
    if _NAME.match(path.name) is None or owner_alive(path.name) or not os.path.lexists(path):
        return False
    try:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass  # another user's, or a read-only folder: it stays for a command that may remove it
    return not os.path.lexists(path)


def sweep(store_root: Path, *folders: Path) -> int:
    """Remove the plaintext left by dead processes: registered folders, and any in ``folders``.

    Returns how many were removed. Folders of another user that we may not remove stay for
    that user's next command; a registration naming a foreign path is only dropped.
    """
    removed = 0
    registry = store_root / REGISTRY_DIR
    try:
        entries = list(registry.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        if _NAME.match(entry.name) is None or owner_alive(entry.name):
            continue
        try:
            target = Path(entry.read_text())
        except (OSError, UnicodeDecodeError):
            target = None
        # Only the exact folder this registration was made for: never a path it was edited to.
        if target is not None and target.is_absolute() and target.name == entry.name:
            removed += _remove_dead(target)
            if os.path.lexists(target):
                continue
        try:
            entry.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only store: the command itself must still run
    for folder in folders:
        try:
            candidates = [p for p in folder.iterdir() if p.name.startswith(PREFIX)]
        except OSError:
            continue
        for path in candidates:
            removed += _remove_dead(path)
    if removed:
        log.warning("removed %d folder(s) of decrypted video left by a killed process", removed)
    return removed
