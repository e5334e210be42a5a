"""Durable file writes: every write of durable state goes through ``atomic_write``.

Why: a camera loses power without warning and a dock can be killed at any instant. The only
sequence that leaves either the old or the new file, never a torn one, is: write a temporary
file in the same folder, fsync it, rename it over the target, fsync the folder.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so that a rename or unlink inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp, fsync, rename, fsync folder)."""
    path = Path(path)
    # A random name created exclusively: on a hostile camera partition a fifo or link planted at a
    # predictable temporary name (the dock's pid is guessable) would hang or redirect the write.
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def append_durable(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` and fdatasync: for append-only logs such as the clip journal."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


class UnsafeFileError(OSError):
    """A path is a link, a device, a fifo, or too large: hostile media, never followed."""


def require_plain_dir(path: str | os.PathLike, *, same_device_as: str | os.PathLike | None = None) -> None:
    """Refuse ``path`` unless it is a real folder (not a link), on the same file system as
    ``same_device_as``: a camera partition whose clips/ links to another camera's mount would
    otherwise let one camera's docking read, receipt and delete another camera's clips."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(f"{path}: is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFileError(f"{path}: not a folder")
    if same_device_as is not None and os.stat(same_device_as).st_dev != st.st_dev:
        raise UnsafeFileError(f"{path}: lies on another file system than {same_device_as}")


def open_regular(path: str | os.PathLike, *, max_bytes: int | None = None) -> int:
    """Open ``path`` read-only without following a final symlink; refuse anything but a regular
    file (a camera's partition is untrusted: a link could point at /etc/shadow, a fifo could hang
    the dock). Returns an fd; the caller closes it."""
    # Looked at before opening: opening a socket fails with ENXIO, which would pass for a
    # medium that went away (and leave the clip on the camera at every docking).
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise UnsafeFileError(f"{path}: is a symbolic link")
    if not stat.S_ISREG(mode):
        raise UnsafeFileError(f"{path}: not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise UnsafeFileError(f"{path}: is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # swapped for a socket since the look
            raise UnsafeFileError(f"{path}: not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFileError(f"{path}: not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise UnsafeFileError(f"{path}: {st.st_size} bytes, more than the {max_bytes} allowed")
    return fd


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """Read a whole regular file of at most ``max_bytes`` (see open_regular)."""
    fd = open_regular(path, max_bytes=max_bytes)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{path}: grew beyond {max_bytes} bytes while being read")
    return data
