"""What is mounted where, read from ``/proc/self/mounts``: the one parser of that file."""

from __future__ import annotations

import os
import re
from pathlib import Path

PROC_MOUNTS = Path("/proc/self/mounts")
# The kernel writes a space, tab, newline or backslash in a path as a three-digit octal escape.
_ESCAPE = re.compile(r"\\([0-7]{3})")


def read_mounts(mounts: Path = PROC_MOUNTS) -> list[tuple[str, str]]:
    """(source, mount point) of every mount, in the file's order; [] if it cannot be read."""
    try:
        text = mounts.read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            source, target = (_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), f) for f in fields[:2])
            found.append((source, target))
    return found


def mounted_partition(mountpoint: str | os.PathLike, mounts: Path = PROC_MOUNTS) -> str | None:
    """The block device mounted exactly at ``mountpoint`` (the last such mount wins), or None."""
    target = os.path.realpath(mountpoint)
    found = None
    for source, point in read_mounts(mounts):
        if source.startswith("/dev/") and point == target:
            found = source
    return found


def partition_holding(path: str | os.PathLike, mounts: Path = PROC_MOUNTS) -> tuple[str, str] | None:
    """(block device, mount point) of the innermost device mount that holds ``path``, or None."""
    target = Path(os.path.realpath(path))
    best = None
    for source, point in read_mounts(mounts):
        if (source.startswith("/dev/") and (target == Path(point) or Path(point) in target.parents)
                and (best is None or len(point) >= len(best[1]))):
            best = (source, point)
    return best
