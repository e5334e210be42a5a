"""Copy one segment into the store while checking it against the journal, reading it ONCE.

Why one read: a segment can be gigabytes on a slow USB link, and a file read twice can differ
between the reads (hostile or failing media). So the bytes that ``store.put_object`` hashes and
stores are the same bytes that ``journal.check_segment`` compares with the camera's signed
commitments. The store hashes on the calling thread; check_segment runs on a helper thread fed by
a bounded queue, so the two SHA-256 passes run on two cores (hashlib drops the GIL) and memory
stays at a few MiB whatever the segment size.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evidence_store.clip.journal import JournalEntry, SegmentCheck, check_segment

if TYPE_CHECKING:
    from evidence_store.objects import ObjectRef

_EOF = object()
_ABORT = object()
QUEUE_BLOCKS = 16


class _Aborted(Exception):
    """The copy failed before the end: the check is void."""


class _QueueReader(io.RawIOBase):
    """The consumer side: ``read(n)`` returns bytes that the tee pushed, in order."""

    def __init__(self, q: queue.Queue):
        self._q = q
        self._buf = memoryview(b"")
        self.finished = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            if self.finished:
                return b""
            item = self._q.get()
            if item is _EOF:
                self.finished = True
                return b""
            if item is _ABORT:
                self.finished = True
                raise _Aborted()
            self._buf = memoryview(item)
        if n is None or n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return bytes(out)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Discard until the producer's end marker, so the producer never blocks on a full queue."""
        while not self.finished:
            item = self._q.get()
            if item is _EOF or item is _ABORT:
                self.finished = True


class TeeReader(io.RawIOBase):
    """The producer side, handed to ``store.put_object``: reads the camera file's fd and pushes
    every block to the checker. ``on_bytes`` reports progress."""

    def __init__(self, fd: int, q: queue.Queue, on_bytes: Callable[[int], None] | None = None):
        self._fd = fd
        self._q = q
        self._on_bytes = on_bytes
        self.bytes_read = 0
        self.ended = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        data = os.read(self._fd, n)
        self._push(data)
        return data

    def readinto(self, b) -> int:
        n = os.readv(self._fd, [b])
        self._push(bytes(memoryview(b)[:n]))
        return n

    def _push(self, data: bytes) -> None:
        if self.ended:
            return
        if not data:
            self.ended = True
            self._q.put(_EOF)
            return
        self.bytes_read += len(data)
        self._q.put(data)
        if self._on_bytes:
            self._on_bytes(len(data))

    def finish(self, ok: bool) -> None:
        if not self.ended:
            self.ended = True
            self._q.put(_EOF if ok else _ABORT)


@dataclass
class CopyResult:
    ref: ObjectRef
    check: SegmentCheck | None  # None only when the checker itself failed (reported as tampering)
    bytes_read: int


# put_object(src, max_bytes) only calls src.read(n): the tee is a raw stream, not the BinaryIO that
# Store.put_object declares, hence the open argument list.
def copy_and_check(put_object: Callable[..., ObjectRef], fd: int, name: str, entries: Iterable[JournalEntry], max_bytes: int,
                   on_bytes: Callable[[int], None] | None = None) -> CopyResult:
    """Stream ``fd`` into the store with ``put_object(src, max_bytes)`` and, from the same bytes,
    run ``check_segment`` against ``entries``. Exceptions of the read or of the store propagate."""
    q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
    reader = _QueueReader(q)
    result: dict = {}
    entries = list(entries)

    def checker() -> None:
        try:
            result["check"] = check_segment(reader, name, entries)
        except _Aborted:
            pass
        except Exception as exc:  # a bug in the checker must not hang the copy
            result["error"] = exc
        finally:
            reader.drain()

    thread = threading.Thread(target=checker, name=f"check-{name}", daemon=True)
    thread.start()
    tee = TeeReader(fd, q, on_bytes)
    ok = False
    try:
        ref = put_object(tee, max_bytes)
        ok = True
    finally:
        tee.finish(ok)
        thread.join()
    if "error" in result:
        raise result["error"]
    return CopyResult(ref, result.get("check"), tee.bytes_read)
