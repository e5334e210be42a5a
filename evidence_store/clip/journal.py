"""The clip journal: the camera's signed, append-only commitments while it records.

Why: power can fail at any instant. At least once a second the recorder completes a chunk,
fdatasyncs the segment and appends one signed line here saying "C ciphertext bytes of this
segment exist and hash to X; their plaintext is P bytes hashing to Y". After a crash the segment
holds at least those C bytes (P_present >= C); if its first C bytes do not hash to X, someone
altered it. That is how a crash is told apart from tampering without any key.

Each line is canonical JSON of the entry plus ``sig`` (Ed25519 over JOURNAL_CONTEXT ||
canonical(entry without sig)); ``prev`` is the SHA-256 of the previous line, so lines cannot be
dropped or reordered unnoticed. A torn last line (power lost mid-append) is reported, not fatal.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

from evidence_store.clip import canonical
from evidence_store.clip.devkey import JOURNAL_CONTEXT, DeviceKey, DevicePublicKey, b64, unb64
from evidence_store.clip.errors import FormatError, IntegrityError

JOURNAL_FILE = "journal"
GENESIS = "0" * 64
MAX_JOURNAL_BYTES = 64 * 1024 * 1024  # a day of recording is ~86,400 lines; more is hostile

WHOLE = "whole"
CUT = "cut"
TAMPERED = "tampered"


@dataclass(frozen=True)
class JournalEntry:
    clip: str
    segment: str
    bytes: int  # ciphertext bytes committed (durably on disk)
    sha256: str  # of those ciphertext bytes
    plaintext_bytes: int
    plaintext_sha256: str
    time: str
    final: bool  # the segment was closed: no more bytes will follow
    prev: str

    def body(self) -> builtins.bytes:  # the field ``bytes`` shadows the type in this class
        return canonical.dumps(asdict(self))


def sign_entry(entry: JournalEntry, key: DeviceKey) -> bytes:
    """The journal line (with newline) for ``entry``."""
    record = asdict(entry) | {"sig": b64(key.sign(JOURNAL_CONTEXT, entry.body()))}
    return canonical.dumps(record) + b"\n"


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass
class Journal:
    entries: list[JournalEntry]
    torn_tail: bool  # the last line was cut by a crash and ignored
    last_line_hash: str


def parse_journal(data: bytes, public_key: DevicePublicKey, clip_id: str) -> Journal:
    """Parse and verify a whole journal. Raises IntegrityError naming the line that fails."""
    if len(data) > MAX_JOURNAL_BYTES:
        raise FormatError(f"journal: {len(data)} bytes is larger than any real journal")
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    complete = lines[:-1]
    entries: list[JournalEntry] = []
    prev = GENESIS
    closed: set[str] = set()  # segments whose final line has been read
    for number, line in enumerate(complete, start=1):
        raw = line + b"\n"
        what = f"journal line {number}"
        record = canonical.loads(line, what)
        if not isinstance(record, dict) or set(record) != set(JournalEntry.__dataclass_fields__) | {"sig"}:
            raise FormatError(f"{what}: unexpected fields")
        sig = unb64(record.pop("sig"), what)
        try:
            entry = JournalEntry(**record)
        except TypeError:
            raise FormatError(f"{what}: malformed entry") from None
        public_key.verify(JOURNAL_CONTEXT, entry.body(), sig, what)
        if entry.prev != prev:
            raise IntegrityError(f"{what}: does not follow line {number - 1} (lines removed or reordered)", where=what)
        if entry.clip != clip_id:
            raise IntegrityError(f"{what}: belongs to clip {entry.clip}, not {clip_id}", where=what)
        if entry.segment in closed:
            # Only the camera's key can sign it, and the camera never writes past a final line:
            # bytes "added" to a sealed segment would otherwise read as a crash-cut tail.
            raise IntegrityError(f"{what}: names {entry.segment}, whose final line came earlier", where=what)
        if entry.final:
            closed.add(entry.segment)
        prev = line_hash(raw)
        entries.append(entry)
    return Journal(entries, torn, prev)


@dataclass(frozen=True)
class SegmentCheck:
    status: str  # WHOLE, CUT or TAMPERED
    committed: int  # C: ciphertext bytes the journal commits
    present: int  # P: bytes in the file
    plaintext_bytes: int
    plaintext_sha256: str
    detail: str


class Readable(Protocol):
    """What ``check_segment`` reads from: a file, or the dock's tee of the bytes it copies."""

    def read(self, size: int = -1, /) -> bytes: ...


def check_segment(src: Readable, name: str, entries: Iterable[JournalEntry]) -> SegmentCheck:
    """Compare a segment file with its journal entries.

    Returns WHOLE when the last entry is final and the file is exactly its committed bytes,
    CUT when C bytes are committed, P >= C present and the first C match (a crash: everything
    after C is unattested), and TAMPERED in every other case, naming the first entry that fails.
    """
    mine = [e for e in entries if e.segment == name]
    if not mine:
        # A crash in the segment's first second, before its first commitment: C = 0, and any
        # P >= 0 bytes "match". Salvage decides what of them is readable.
        present = 0
        while block := src.read(1 << 20):
            present += len(block)
        return SegmentCheck(CUT, 0, present, 0, hashlib.sha256().hexdigest(),
                            f"{name}: cut after a crash (0 bytes committed, {present} present)")
    digest = hashlib.sha256()
    position = 0
    for entry in mine:
        if entry.bytes < position:
            return SegmentCheck(TAMPERED, entry.bytes, position, 0, "", f"{name}: journal goes backwards")
        while position < entry.bytes:
            block = src.read(min(1 << 20, entry.bytes - position))
            if not block:
                return SegmentCheck(
                    TAMPERED, entry.bytes, position, entry.plaintext_bytes, entry.plaintext_sha256,
                    f"{name}: {position} bytes present but {entry.bytes} were committed",
                )
            digest.update(block)
            position += len(block)
        if digest.hexdigest() != entry.sha256:
            return SegmentCheck(
                TAMPERED, entry.bytes, position, entry.plaintext_bytes, entry.plaintext_sha256,
                f"{name}: the first {entry.bytes} bytes differ from what the camera signed",
            )
    last = mine[-1]
    extra = 0
    while block := src.read(1 << 20):
        extra += len(block)
    present = last.bytes + extra
    if last.final and extra:
        return SegmentCheck(TAMPERED, last.bytes, present, last.plaintext_bytes, last.plaintext_sha256,
                            f"{name}: {extra} bytes after the end the camera sealed")
    status = WHOLE if last.final else CUT
    detail = f"{name}: whole" if last.final else f"{name}: cut after a crash ({last.bytes} bytes committed, {present} present)"
    return SegmentCheck(status, last.bytes, present, last.plaintext_bytes, last.plaintext_sha256, detail)
