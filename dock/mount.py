"""The mount seam: make a docked camera's evidence partition visible as a folder, and take it away.

The partition is untrusted media. It is mounted ``nosuid,nodev,noexec`` so that nothing on it can
gain privileges, reach a device, or run; it is mounted read-write because the dock must write
receipts, the clock and the enrollment note onto it and delete the clips it has stored. The
filesystem types are limited (``-t``) so a hostile stick cannot make the kernel parse an exotic
filesystem. Reads from it still refuse links and special files (evidence_store.clip.fsutil).
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Protocol

from dock.errors import MountError

log = logging.getLogger(__name__)

MOUNT_OPTIONS = "rw,nosuid,nodev,noexec,noatime"
FS_TYPES = "ext4,vfat,exfat"


class Mounter(Protocol):
    def mount(self, devnode: str, mountpoint: Path) -> Path:
        """Mount ``devnode``; return the folder where its files are (usually ``mountpoint``)."""

    def unmount(self, path: Path) -> None:
        """Undo ``mount``. Must not raise when the device already vanished."""


class RealMounter:
    """mount(8)/umount(8). Needs CAP_SYS_ADMIN (the dock's systemd unit grants it)."""

    def __init__(self, *, options: str = MOUNT_OPTIONS, fs_types: str = FS_TYPES, timeout: float = 60):
        self.options = options
        self.fs_types = fs_types
        self.timeout = timeout

    def mount(self, devnode: str, mountpoint: Path) -> Path:
        mountpoint = Path(mountpoint)
        mountpoint.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.path.ismount(mountpoint):
            # A mount left over by a crashed dock: its content is the same camera or stale;
            # either way start from a clean mount point.
            log.warning("%s is still mounted (left by an earlier run); unmounting it", mountpoint)
            self.unmount(mountpoint)
        cmd = ["mount", "-t", self.fs_types, "-o", self.options, "--", devnode, str(mountpoint)]
        self._run(cmd, f"cannot mount {devnode} on {mountpoint}")
        return mountpoint

    def unmount(self, path: Path) -> None:
        if not os.path.ismount(path):
            return
        try:
            self._run(["umount", "--", str(path)], f"cannot unmount {path}")
        except MountError as exc:
            # Busy or the device vanished mid-ingest: detach lazily so the next docking of this
            # camera can mount again; the kernel frees it when the last file closes.
            log.warning("%s; detaching it lazily", exc)
            self._run(["umount", "-l", "--", str(path)], f"cannot detach {path}")

    def _run(self, cmd: list[str], what: str) -> None:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MountError(f"{what}: {exc}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise MountError(f"{what}: {detail[-1] if detail else f'exit {proc.returncode}'}",
                             "hint: the dock needs CAP_SYS_ADMIN; see systemd/bodycam-dock.service")
