"""The store's files, limits and the records its commands return (devices, clips, ingests, expiry runs)."""

from __future__ import annotations

import hashlib
import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from evidence_store import retention
from evidence_store.clip.outbox import NRW, Profile
from evidence_store.errors import EvidenceError, UsageError
from evidence_store.vocabulary import ClipState, HoldKind, Justification, choices

STORE_FILE = "store.json"
STORE_FORMAT = "bodycam-store/v1"
LOG_KEY_FILE = "log.key"
VKEY_FILE = "log.vkey"
RECIPIENTS_FILE = "recipients"
IDENTITY_FILE = "identity.age"
#: The latest signed checkpoint, outside the database: deleting checkpoint rows or rewriting the
#: log and its stored hashes in evidence.db does not move this file back (only forward, atomically).
CHECKPOINT_FILE = "log.checkpoint"
CHECKPOINT_MAX_BYTES = 64 * 1024
#: Files that decide where video is encrypted to and what is trusted. Only the store's
#: administrator (the folder's owner, or root) may change them: checked at use, and each one's
#: SHA-256 is in the latest config event of the log.
CONFIG_FILES = (STORE_FILE, VKEY_FILE, RECIPIENTS_FILE)
HINT_CONFIG = ("hint: the store's administrator checks the file, then runs "
               "'bodycam-evidence record-config' to log it")
#: See the module docstring: group members write the store, nobody else reads it.
STORE_UMASK = 0o007
KEY_MODE = 0o640
#: Access logs (and the other personal texts of events) are kept two years, then erased.
TEXT_RETENTION = timedelta(days=730)
#: A temporary file this old belongs to no running write (a copy takes seconds): a crashed dock's.
TMP_MAX_AGE = timedelta(days=1)
ORPHAN = "orphan"
DEFAULT_SCRYPT_LOG_N = 18
HOLD_KINDS = choices(HoldKind)
# The words of evidence_store.vocabulary under the names this module has always used.
STORED, HELD, EXPIRED, QUARANTINED = ClipState.STORED, ClipState.HELD, ClipState.EXPIRED, ClipState.QUARANTINED
JUSTIFICATION_PENDING, JUSTIFIED = Justification.PENDING, Justification.JUSTIFIED


class NotAStore(EvidenceError):
    """The folder is not an evidence store (or not a readable one)."""


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    public_key: str
    officer: str | None
    revoked: bool
    revoked_reason: str | None
    enrolled_at: datetime
    last_docking: datetime | None
    last_sequence: int | None
    last_manifest_sha256: str | None
    profile: Profile = NRW


@dataclass(frozen=True)
class IngestResult:
    clip_id: str
    manifest_sha256: str
    already: bool
    event_index: int | None = None
    gaps: list[int] = field(default_factory=list)
    late: bool = False


@dataclass(frozen=True)
class Holdings:
    """What the store holds, or held before a lawful expiry, for exactly one clip id of one
    camera: the dock deletes a file on the camera only if its SHA-256 is in ``hashes``."""

    manifest_sha256: str | None  # of the stored clip with this id from this camera, if any
    sequence: int | None
    hashes: frozenset[str]


@dataclass
class ClipInfo:
    """A clip (or quarantined material) as list/show present it."""

    clip_id: str
    device_id: str | None
    officer: str | None
    recorded_at: str
    trigger: str | None
    justification: str | None
    holds: list[dict]
    deadline: str
    state: str
    sequence: int | None = None
    manifest_sha256: str | None = None
    journal_sha256: str | None = None
    ingested_at: str | None = None
    flags: list[str] = field(default_factory=list)
    late: bool = False
    expired_at: str | None = None
    quarantine_reason: str | None = None
    #: For quarantined material: the clip id it claims (untrusted: a forged copy may claim a real
    #: clip's id). Its own id, ``clip_id``, is the quarantine id.
    claimed_clip_id: str | None = None

    def summary(self) -> dict:
        """The fields of ``list --json`` (docs/ARCHITECTURE.md); quarantined material adds the clip id
        it claims."""
        body = {k: getattr(self, k) for k in (
            "clip_id", "device_id", "officer", "recorded_at", "trigger", "justification",
            "holds", "deadline", "state")}
        if self.quarantine_reason is not None:
            body["claimed_clip_id"] = self.claimed_clip_id
            body["quarantine_reason"] = self.quarantine_reason
        return body


@dataclass
class ExpiryResult:
    now: datetime
    decisions: list[retention.Decision]
    deleted_objects: int = 0
    erased_texts: int = 0
    dry_run: bool = False
    #: Unreferenced objects older than the retention (expire event each) and stale temp files.
    orphans: list[str] = field(default_factory=list)
    removed_tmp: int = 0
    #: Index rows that disagree with the log (each names the clip, quarantined item or object and
    #: the difference): what they concern was not deleted.
    faults: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> list[retention.Decision]:
        return [d for d in self.decisions if d.action == retention.DELETE]


def current_actor() -> str:
    """The effective user, plus SUDO_USER when someone used sudo (docs/ARCHITECTURE.md)."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = f"uid-{os.geteuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {user})" if sudo and sudo != user else user


@contextmanager
def _store_umask() -> Iterator[None]:
    """Create files with group access and none for others (restored afterwards). Explicit modes
    are set as well where it matters; this catches what a library creates on its own."""
    old = os.umask(STORE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _require_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise UsageError("a reason is required (--reason TEXT)",
                         "hint: the law requires every access, hold and release to be logged with a reason")
    return reason
