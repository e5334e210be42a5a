"""Content-addressed objects: ``objects/ab/<64-hex SHA-256>``, read-only, written atomically.

Every ciphertext segment, signed manifest and journal is stored under the SHA-256 of its bytes, so
storing the same bytes twice is a no-op (a dock that crashed and reruns), and an object can be
checked against its name without any index. Files are made read-only (0440) so that a slip of a
tool cannot alter evidence in place; deletion (expiry) is a separate, logged act.

Permissions follow the documented deployment: the store folder belongs to the group
``bodycam-store`` (setgid, 2770); the dock and the expiry service run as different users of that
group. So every folder here is 2770 (group-writable, the group inherited), whoever creates it: the
expiry service must be able to unlink an object the dock wrote. Objects are 0440: the group reads
them (verify), nobody writes them, and other users never see even ciphertext.

``ObjectStore`` is the seam between the store and its object storage: this folder
(``LocalObjects``) or S3 with Object Lock (objects_s3.S3Objects). The lock methods
(``extend_retention``, ``set_legal_hold``) map the law onto S3's lock; a folder has no lock of its
own (its protection is the file mode and the group), so here they do nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from evidence_store.clip.fsutil import fsync_dir
from evidence_store.errors import EvidenceError, IntegrityError

log = logging.getLogger(__name__)

OBJECTS_DIR = "objects"
TMP_DIR = "tmp"
COPY_BLOCK = 1 << 20
OBJECT_MODE = 0o440
#: Folders of the store: group-writable, setgid so that new files keep the store's group.
SHARED_DIR_MODE = 0o2770
HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)

class ObjectRef:
    """A stored object: its SHA-256 (64 hex) and size in bytes."""

    sha256: str
    size: int


class ObjectTooLarge(EvidenceError):
    """More bytes arrived than the caller allowed (a segment larger than its manifest says)."""



def copy_hashed(src, write, max_bytes: int) -> ObjectRef:
    """Read ``src`` to its end, handing each block to ``write`` and hashing exactly what was
    handed on, so what a backend stores is what was hashed even if the source changes meanwhile.
    Raises ObjectTooLarge as soon as more than ``max_bytes`` arrive (the caller discards)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        block = src.read(min(COPY_BLOCK, max_bytes - size + 1))
        if not block:
            return ObjectRef(digest.hexdigest(), size)
        size += len(block)
        if size > max_bytes:
            raise ObjectTooLarge(f"more than the {max_bytes} bytes expected arrived",
                                 "hint: the file is larger than its manifest says; it was not stored")
        digest.update(block)
        write(block)


# Fault kinds of ``check`` (the same strings as verify's object faults).
OBJECT_MISSING = "object-missing"
OBJECT_ALTERED = "object-altered"
OBJECT_UNLOCKED = "object-unlocked"


@dataclass(frozen=True)
class ObjectFault:
    """One problem with one object: ``kind`` (constants above), its SHA-256, a one-line message."""

    kind: str
    sha256: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"object {self.sha256}: {self.message}"


@dataclass(frozen=True)
class LockTarget:
    """What one object must be locked for: its clip's deadline and whether the clip is held."""

    sha256: str
    size: int | None = None
    deadline: datetime | None = None
    held: bool = False


class ObjectStore(Protocol):
    """What the store asks of its object storage (LocalObjects, objects_s3.S3Objects)."""

    def put(self, src: BinaryIO, max_bytes: int, retain_until: datetime | None = None,
            legal_hold: bool = False) -> ObjectRef: ...
    def put_bytes(self, data: bytes, retain_until: datetime | None = None, legal_hold: bool = False) -> ObjectRef: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def read(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def size(self, sha256: str) -> int | None: ...
    def delete(self, sha256: str) -> bool: ...
    def delete_many(self, sha256s: Iterable[str]) -> int: ...
    def names(self) -> Iterator[str]: ...
    def age_seconds(self, name: str, now: float) -> float: ...
    def leftovers(self) -> int: ...
    def remove_stale(self, cutoff: float) -> int: ...
    def extend_retention(self, sha256: str, retain_until: datetime) -> int: ...
    def set_legal_hold(self, sha256: str, on: bool) -> int: ...
    def check_many(self, targets: Iterable[LockTarget], *, quick: bool = False) -> list[ObjectFault]: ...
    #: Whether the storage enforces retention and legal hold itself (S3 Object Lock).
    locking: bool


def make_shared_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as a store folder (SHARED_DIR_MODE). An existing
    folder is left as it is (another writer made it, or the admin did)."""
    if path.is_dir():
        return
    if not path.parent.is_dir():
        make_shared_dir(path.parent)
    try:
        path.mkdir(mode=SHARED_DIR_MODE)
    except FileExistsError:
        return  # a concurrent writer made it
    # mkdir's mode passes through the umask (0022 would drop group write): set it explicitly.
    os.chmod(path, SHARED_DIR_MODE)


def check_sha256(text: str) -> str:
    """Return ``text`` if it is 64 lower-case hex digits; IntegrityError otherwise (it becomes a path)."""
    if not isinstance(text, str) or not HEX64.match(text):
        raise IntegrityError(f"not a SHA-256 object name: {str(text)[:70]!r}", where=str(text)[:70])
    return text


class LocalObjects:
    """Objects in a local folder. Safe for concurrent writers: each writes its own temp file and
    the final rename is atomic; two writers of the same bytes produce the same file."""

    #: No lock of its own (see the module docstring): verify asks no deadline of it.
    locking = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / OBJECTS_DIR
        self.tmp = Path(root) / TMP_DIR

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, src: BinaryIO, max_bytes: int, retain_until: datetime | None = None,
            legal_hold: bool = False) -> ObjectRef:
        """Copy ``src`` into the store while hashing it (temp, fsync, rename, fsync folder).
        (``retain_until`` and ``legal_hold``: a folder has no lock; see the module docstring.)

        Returns the ObjectRef. Idempotent: if the object exists, the copy replaces it (same bytes,
        fresh time). Raises
        ObjectTooLarge if more than ``max_bytes`` arrive; nothing is stored then.
        """
        make_shared_dir(self.tmp)
        tmp = self.tmp / f"put-{os.getpid()}-{os.urandom(6).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        def write(block: bytes) -> None:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view):]

        try:
            ref = copy_hashed(src, write, max_bytes)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return self._commit(tmp, ref)

    def put_bytes(self, data: bytes, retain_until: datetime | None = None, legal_hold: bool = False) -> ObjectRef:
        import io

        return self.put(io.BytesIO(data), len(data))

    def _commit(self, tmp: Path, ref: ObjectRef) -> ObjectRef:
        target = self.path(ref.sha256)
        make_shared_dir(target.parent)
        os.chmod(tmp, OBJECT_MODE)
        # Also when the object exists: the same bytes (the name is their hash), and a fresh
        # modification time. Expiry removes unreferenced objects by age, so an old orphan that a
        # camera delivers again must look new until its ingest commits.
        os.replace(tmp, target)
        fsync_dir(target.parent)
        return ref

    def open(self, sha256: str) -> BinaryIO:
        """Open an object for reading. Raises IntegrityError if it is missing."""
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise IntegrityError(f"object {sha256} is missing", where=sha256) from None

    def read(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()

    def delete(self, sha256: str) -> bool:
        """Remove an object (expiry). Returns False if it was already gone (a rerun after a crash)."""
        return self.delete_many([sha256]) == 1

    def delete_many(self, sha256s: Iterable[str]) -> int:
        """Remove objects (expiry); returns how many were still there. Each touched folder is
        fsynced once, after its unlinks, not once per object: an expiry of 150,000 objects
        would otherwise wait for 150,000 folder syncs."""
        root = str(self.root)
        touched: set[str] = set()
        count = 0
        for sha256 in sha256s:
            check_sha256(sha256)  # so the name is 64 hex digits: plain string joins are safe
            folder = f"{root}/{sha256[:2]}"
            try:
                os.unlink(f"{folder}/{sha256}")
            except FileNotFoundError:
                continue
            touched.add(folder)
            count += 1
        for folder in sorted(touched):
            fsync_dir(folder)
        return count

    def names(self) -> Iterator[str]:
        """Every object name on disk (for verify: objects without an index row)."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                for entry in sorted(sub.iterdir()):
                    yield entry.name

    def age_seconds(self, name: str, now: float) -> float:
        """Seconds since the file ``objects/<ab>/<name>`` was last written (0 if it is gone)."""
        try:
            return now - (self.root / name[:2] / name).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def tmp_files(self) -> Iterator[tuple[Path, float]]:
        """(path, modification time) of every file in tmp/: writes in progress or interrupted."""
        if not self.tmp.is_dir():
            return
        for entry in sorted(self.tmp.iterdir()):
            try:
                yield entry, entry.lstat().st_mtime
            except FileNotFoundError:
                continue  # its writer just renamed it

    def rehash(self, sha256: str) -> tuple[str, int]:
        """SHA-256 and size of the object's current bytes. Raises IntegrityError if missing."""
        digest = hashlib.sha256()
        size = 0
        with self.open(sha256) as f:
            while block := f.read(COPY_BLOCK):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size

    def size(self, sha256: str) -> int | None:
        """The object's size in bytes; None if it is missing (or not a file)."""
        try:
            st = self.path(sha256).stat()
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def leftovers(self) -> int:
        """How many temporary files of object writes are in tmp/ (in progress or interrupted)."""
        return sum(1 for _ in self.tmp_files())

    def remove_stale(self, cutoff: float) -> int:
        """Remove temp files last written before ``cutoff`` (a crashed copy; its camera still
        holds the clip, or the rerun made a new copy). Not evidence: never indexed or named."""
        count = 0
        for path, mtime in self.tmp_files():
            if mtime < cutoff and path.is_file():
                path.unlink(missing_ok=True)
                count += 1
        if count:
            fsync_dir(self.tmp)
        return count

    def extend_retention(self, sha256: str, retain_until: datetime) -> int:
        """No lock in a folder: nothing to extend (0 versions changed)."""
        check_sha256(sha256)
        return 0

    def set_legal_hold(self, sha256: str, on: bool) -> int:
        """No lock in a folder: the store's hold rows and events are the hold (0 versions changed)."""
        check_sha256(sha256)
        return 0

    def check_many(self, targets: Iterable[LockTarget], *, quick: bool = False) -> list[ObjectFault]:
        """Missing or altered objects: re-hashed, or with ``quick`` only their presence (and size,
        where the target names one) is checked. No lock to check in a folder."""
        faults = []
        for target in targets:
            sha = target.sha256
            if quick:
                size = self.size(sha)
                if size is None:
                    faults.append(ObjectFault(OBJECT_MISSING, sha, "is missing"))
                elif target.size is not None and size != target.size:
                    faults.append(ObjectFault(OBJECT_ALTERED, sha, f"has {size} bytes, the index says {target.size}"))
                continue
            try:
                digest, _ = self.rehash(sha)
            except IntegrityError:
                faults.append(ObjectFault(OBJECT_MISSING, sha, "is missing"))
                continue
            if digest != sha:
                faults.append(ObjectFault(OBJECT_ALTERED, sha, f"was altered (its bytes hash to {digest[:16]}...)"))
        return faults


#: ``store.json`` key naming central object storage (``s3://BUCKET/PREFIX``); absent: the folder.
OBJECTS_KEY = "objects"


def open_objects(root: Path, config: dict) -> ObjectStore:
    """The object store a store's configuration names: the local folder by default, S3 with
    Object Lock (objects_s3, which loads boto3 only then) where ``"objects"`` names a bucket."""
    url = config.get(OBJECTS_KEY)
    if url:
        from evidence_store.objects_s3 import ARRIVAL_RETENTION, S3Objects

        return S3Objects(url, default_retention=ARRIVAL_RETENTION)
    return LocalObjects(root)
