"""The Store: one folder with objects, one SQLite database (index + event log), keys, identity.

Layout::

    store.json       format marker, log origin, retention policy
    evidence.db      index and event log (db.py)
    objects/ab/<sha256>   ciphertext segments, signed manifests and journals (objects.py)
    log.key          the log's note signer key (0640): signs checkpoints, enrollments, receipts
    log.vkey         its verifier key (publish it out of band)
    recipients       the age recipient(s) cameras encrypt to
    log.checkpoint   the latest signed checkpoint, outside the database (never moves back)
    identity.age     the age identity, encrypted to a passphrase (age -p); may be moved elsewhere
    tmp/             temporary files of object writes (same file system: rename is atomic)

Permissions (the documented deployment): an admin creates the folder with
``install -d -o root -g bodycam-store -m 2770`` and runs ``init``; the dock, the expiry service and
the officers run as different users who are members of ``bodycam-store``. Every one of them
appends events and signs checkpoints, so ``log.key`` is group-readable (0640) and the database
group-writable (0660, and so its -wal/-shm); folders are 2770 (group inherited), objects 0440.
Other users get nothing: the group is the boundary. ``recipients``, ``log.vkey`` and ``store.json``
are the administrator's alone (owned by the folder's owner, writable by nobody else; checked at
use) and their hashes are logged (``config`` events): a group member must not be able to redirect
the cameras' encryption or the retention policy. The identity is encrypted to a passphrase, so
0640 gives the group ciphertext only (and it may live elsewhere, see ``--identity``).

The dock calls enroll/assign/revoke/record_docking/put_object/ingest/quarantine/sign_receipt/clock_note and
expire(late_only=True) (dock/ingest.py shows the order); the officers' CLI calls the rest. Every method that changes state runs
in one ``BEGIN IMMEDIATE`` transaction that appends its events and signs a new checkpoint before it
commits, so the index, the log and the checkpoint never disagree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pwd
import socket
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Iterator

from evidence_store import checkpoint as cpmod
from evidence_store import db, logstate, merkle, retention
from evidence_store import events as ev
from evidence_store.clip.age import Identity, Passphrase, decrypt_identity, encrypt_identity
from evidence_store.clip.clock import Clock, SystemClock
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.fsutil import atomic_write, fsync_dir
from evidence_store.clip.ids import check_device_id, format_time, parse_time
from evidence_store.clip.manifest import EMERGENCY, Manifest, manifest_hash, parse_manifest
from evidence_store.clip.note import NoteSigner, NoteVerifier, generate_signer
from evidence_store.clip.outbox import NRW, ClockStamp, Enrollment, Profile, Receipt
from evidence_store.errors import EvidenceError, IntegrityError, UsageError
from evidence_store.index import DATABASE_KEY, check_database, open_index
from evidence_store.log import Appended, EventLog
from evidence_store.objects import HEX64, SHARED_DIR_MODE, LocalObjects, ObjectRef, make_shared_dir
from evidence_store.vocabulary import ClipState, HoldKind, Justification, choices

log = logging.getLogger(__name__)

__all__ = ["Store", "ObjectRef", "DeviceInfo", "IngestResult", "ClipInfo", "ExpiryResult", "NotAStore"]

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


class Store:
    """An evidence store. Create with ``Store.init``, open with ``Store.open``.

    ``clock`` (a ``evidence_store.clip.clock.Clock``: its ``now()`` is aware UTC) and ``actor``
    are seams for tests; the CLI uses the system clock and the effective user.
    """

    def __init__(self, root: Path, config: dict, conn: sqlite3.Connection, *,
                 clock: Clock | None = None, actor: str | None = None):
        self.root = root
        self.config = config
        self.conn = conn
        self.clock = clock or SystemClock()
        self.actor = actor or current_actor()
        self.objects = LocalObjects(root)
        self.origin: str = config["origin"]
        self.policy = retention.Policy(
            retention=timedelta(days=config.get("retention_days", 14)),
            run_interval=timedelta(minutes=config.get("run_interval_minutes", 60)),
        )
        self._signer: NoteSigner | None = None
        self.verifier = NoteVerifier.from_vkey(self.verifier_key)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike, *, clock: Clock | None = None,
             actor: str | None = None) -> "Store":
        """Open an existing store. Raises NotAStore (one line, with a hint) and changes nothing
        if ``root`` is not one."""
        root = Path(root)
        hint = f"hint: create one with 'bodycam-evidence --store {root} init', or check --store / BODYCAM_STORE"
        try:
            config = json.loads((root / STORE_FILE).read_text())
        except FileNotFoundError:
            raise NotAStore(f"{root} is not an evidence store (no {STORE_FILE})", hint) from None
        except (OSError, ValueError) as exc:
            raise NotAStore(f"{root}: cannot read {STORE_FILE} ({exc})", hint) from None
        if not isinstance(config, dict) or config.get("format") != STORE_FORMAT:
            raise NotAStore(f"{root} is not an evidence store ({STORE_FILE} has another format)", hint)
        try:
            conn = open_index(root, config)
        except (db.DatabaseBusy, db.DatabaseReadOnly):
            raise  # a store, but not usable by this user right now: its own message and hint
        except db.DatabaseError as exc:
            if config.get(DATABASE_KEY):
                raise  # a store whose central database cannot be used: that error's own line and hint
            raise NotAStore(f"{root}: {exc}", hint) from None
        return cls(root, config, conn, clock=clock, actor=actor)

    @classmethod
    def init(cls, root: str | os.PathLike, passphrase: bytes, *, scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
             origin: str | None = None, clock: Clock | None = None,
             actor: str | None = None, retention_days: int = 14, database: str | None = None) -> "Store":
        """Create a store in ``root`` (missing or empty): identity (age scrypt file), log key,
        database with a signed checkpoint over its config event. Returns the open store. Raises UsageError if
        ``root`` holds anything, or the passphrase is empty.

        ``database``: a PostgreSQL URL (no password: libpq's password file, service file or
        environment supply it) of an empty database that takes the index and log instead of a
        local SQLite file. It is connected to (and its schema created) before any file is
        written, so a wrong URL or credentials leave nothing behind."""
        root = Path(root)
        if not passphrase:
            raise UsageError("the passphrase is empty")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UsageError(f"{root} exists and is not empty; a store is created in a new or empty folder")
        retention.Policy(retention=timedelta(days=retention_days))  # refuses more than 14 days
        if database is not None:
            check_database(database)
        origin = origin or f"bodycam-evidence.{socket.gethostname().split('.')[0] or 'store'}/{os.urandom(4).hex()}"
        signer = generate_signer(origin)
        identity = Identity.generate()
        central = None
        if database is not None:
            central = open_index(root, {DATABASE_KEY: database, "origin": origin}, create=True)
        with _store_umask():
            if not root.exists():
                root.mkdir(parents=True, mode=SHARED_DIR_MODE)
                os.chmod(root, SHARED_DIR_MODE)
            # An existing (empty) folder keeps its owner, group and mode: the admin's install -d.
            make_shared_dir(root / "objects")
            make_shared_dir(root / "tmp")
            atomic_write(root / LOG_KEY_FILE, (signer.skey() + "\n").encode(), mode=KEY_MODE)
            atomic_write(root / VKEY_FILE, (signer.verifier_key() + "\n").encode(), mode=0o644)
            atomic_write(root / RECIPIENTS_FILE, f"{identity.recipient}\n".encode(), mode=0o644)
            atomic_write(root / IDENTITY_FILE, encrypt_identity(identity, Passphrase(passphrase, scrypt_log_n)),
                         mode=KEY_MODE)
            now = (clock or SystemClock()).now()
            config = {"format": STORE_FORMAT, "origin": origin, "created_at": format_time(now),
                      "retention_days": retention_days, "run_interval_minutes": 60}
            if central is not None:
                config[DATABASE_KEY] = database
            config_bytes = json.dumps(config, indent=2).encode() + b"\n"
            conn = central or open_index(root, config, create=True)
            store = cls(root, config, conn, clock=clock, actor=actor)
            files = {STORE_FILE: _sha(config_bytes), VKEY_FILE: _sha((root / VKEY_FILE).read_bytes()),
                     RECIPIENTS_FILE: _sha((root / RECIPIENTS_FILE).read_bytes())}
            with store._command() as tx:
                tx.append(ev.Event(ev.CONFIG, tx.time, "store", personal={"actor": store.actor},
                                   data={"files": files}))
            # store.json last: its presence says "this is a complete store".
            atomic_write(root / STORE_FILE, config_bytes, mode=0o644)
            fsync_dir(root)
        log.info("created evidence store %s (log %s)", root, origin)
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- keys --------------------------------------------------------------------------------

    @property
    def verifier_key(self) -> str:
        """The C2SP note verifier key of the store key."""
        return (self.root / VKEY_FILE).read_text().strip()

    @property
    def signer(self) -> NoteSigner:
        if self._signer is None:
            try:
                text = (self.root / LOG_KEY_FILE).read_text()
            except PermissionError:
                raise EvidenceError(f"{self.root / LOG_KEY_FILE}: permission denied",
                                    "hint: commands that write run as a member of the store's group "
                                    "(bodycam-store), and log.key must be group-readable (0640)") from None
            self._signer = NoteSigner.from_skey(text.strip())
        return self._signer

    @property
    def recipients(self) -> list[str]:
        return [line.strip() for line in (self.root / RECIPIENTS_FILE).read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def identities(self, passphrase: bytes, identity_file: str | os.PathLike | None = None) -> list[Identity]:
        """Open the passphrase-protected identity (``identity_file`` or the store's). Raises
        DecryptError ("wrong passphrase") or EvidenceError if the file is missing."""
        path = Path(identity_file) if identity_file else self.root / IDENTITY_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise EvidenceError(f"{path}: no identity file",
                                "hint: give it with --identity FILE or BODYCAM_IDENTITY") from None
        return decrypt_identity(data, Passphrase(passphrase))

    def now(self) -> datetime:
        return self.clock.now()

    def _log(self, writable: bool = False) -> EventLog:
        return EventLog(self.conn, self.origin, self.signer if writable else None, self.verifier)

    @property
    def log(self) -> EventLog:
        """The event log for reading (proofs, checkpoints)."""
        return self._log()

    # -- the transaction of one command ------------------------------------------------------

    @contextmanager
    def _command(self) -> Iterator["_Tx"]:
        with db.transaction(self.conn):
            tx = _Tx(self, self._log(writable=True), self.now())
            yield tx
            note = tx.log.sign_checkpoint(format_time(tx.now)) if tx.appended else None
        if note is not None:
            self._publish_checkpoint(note)

    # -- the checkpoint file -----------------------------------------------------------------

    def checkpoint_file(self) -> bytes | None:
        """The signed note in CHECKPOINT_FILE, or None if there is none (a store from before it)."""
        try:
            with open(self.root / CHECKPOINT_FILE, "rb") as f:
                return f.read(CHECKPOINT_MAX_BYTES + 1)[:CHECKPOINT_MAX_BYTES + 1]
        except FileNotFoundError:
            return None

    def _publish_checkpoint(self, note: bytes) -> None:
        """Replace CHECKPOINT_FILE with ``note`` (just committed) unless it holds a checkpoint as
        large or larger: two commands finishing in the other order must not move it back. The
        folder's lock orders the read-compare-rename of concurrent writers. A failure is logged,
        not raised: the command itself has committed, and verify compares what the file holds."""
        new = cpmod.open_checkpoint(note, self.verifier, self.origin)
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                old = self.checkpoint_file()
                if old is not None:
                    try:
                        if cpmod.open_checkpoint(old, self.verifier, self.origin).size >= new.size:
                            return
                    except EvidenceError:
                        log.warning("%s does not verify; replacing it with the checkpoint of size %d",
                                    CHECKPOINT_FILE, new.size)
                with _store_umask():
                    atomic_write(self.root / CHECKPOINT_FILE, note, mode=0o640)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.root / CHECKPOINT_FILE, exc)

    # -- the administrator's files -----------------------------------------------------------

    def _check_admin_file(self, name: str) -> bytes:
        """The bytes of config file ``name`` after checking that only the store's administrator
        can have written it: a regular file owned by the folder's owner (or root), writable by
        nobody else. A group member can replace a file in the group-writable folder, but not with
        one owned by the folder's owner."""
        path = self.root / name
        try:
            st = os.lstat(path)
            admin = os.stat(self.root).st_uid
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError(f"{path} is not a regular file", HINT_CONFIG, where=name)
            if st.st_uid not in (0, admin):
                raise IntegrityError(f"{path} is owned by uid {st.st_uid}, not by the store's administrator "
                                     f"(uid {admin}, the folder's owner)", HINT_CONFIG, where=name)
            if st.st_mode & 0o022:
                raise IntegrityError(f"{path} is writable by others than the store's administrator "
                                     f"(mode {stat.S_IMODE(st.st_mode):04o})", HINT_CONFIG, where=name)
            return path.read_bytes()
        except OSError as exc:
            raise IntegrityError(f"cannot read {path}: {exc.strerror}", HINT_CONFIG, where=name) from None

    def config_hashes(self) -> dict[str, str]:
        """SHA-256 of each config file, after _check_admin_file. Raises IntegrityError."""
        return {name: _sha(self._check_admin_file(name)) for name in CONFIG_FILES}

    def logged_config(self) -> tuple[int, dict[str, str]] | None:
        """(log index, files) of the latest config event, or None."""
        row = self.conn.execute("SELECT idx, leaf FROM events WHERE kind = ? ORDER BY idx DESC LIMIT 1",
                                (ev.CONFIG,)).fetchone()
        if row is None:
            return None
        state = logstate.derive([(row[0], json.loads(bytes(row[1])))], lambda i: "")
        return None if state.config is None else (row[0], state.config)

    def check_config(self, state: logstate.LogState | None = None) -> None:
        """Refuse (IntegrityError, one line) config files that differ from the ones the log recorded,
        or that others than the administrator could have written."""
        logged = (None if state.config is None else (state.config_index, state.config)) if state \
            else self.logged_config()
        current = self.config_hashes()
        if logged is None:
            raise IntegrityError("the log records no hashes of recipients, log.vkey and store.json "
                                 "(a store from before config events)", HINT_CONFIG, where="config")
        index, files = logged
        for name in CONFIG_FILES:
            if current[name] != files.get(name):
                raise IntegrityError(f"{name} differs from the copy recorded in the log (log index {index}); "
                                     "refusing to use it", HINT_CONFIG, where=name)

    def record_config(self) -> bool:
        """The administrator's command after changing recipients, log.vkey or store.json: log
        their hashes (config event). Returns False if the log already has exactly these."""
        admin = os.stat(self.root).st_uid
        if os.geteuid() not in (0, admin):
            raise UsageError("only the store's administrator (the folder's owner) may record its configuration")
        current = self.config_hashes()
        with self._command() as tx:
            logged = self.logged_config()
            if logged is not None and logged[1] == current:
                return False
            tx.append(ev.Event(ev.CONFIG, tx.time, "store", personal={"actor": self.actor},
                               data={"files": current}))
        return True

    # -- devices (the dock) ------------------------------------------------------------------

    def devices(self) -> list[DeviceInfo]:
        rows = self.conn.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        return [self._device_info(r) for r in rows]

    def device(self, device_id: str) -> DeviceInfo | None:
        row = self.conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else self._device_info(row)

    def _device_info(self, row) -> DeviceInfo:
        (device_id, public_key, profile, officer, revoked, revoked_reason, enrolled_at,
         last_docking, last_sequence, last_manifest) = row
        try:
            return DeviceInfo(device_id, public_key, officer, bool(revoked), revoked_reason,
                              parse_time(enrolled_at), parse_time(last_docking) if last_docking else None,
                              last_sequence, last_manifest, Profile(**json.loads(profile)))
        except (TypeError, ValueError):
            raise IntegrityError(f"device {device_id}: its index row is damaged (profile or times)",
                                 "hint: run 'bodycam-evidence verify'", where=f"device {device_id}") from None

    def enroll(self, device_id: str, public_key: str, *, profile: Profile = NRW) -> bytes:
        """Register a camera's key (enroll event) and return its signed enrollment note.

        Enrolling the same key again only returns a fresh note. Raises UsageError if the id is
        enrolled with another key (a replaced camera gets a new id; the old one is revoked).
        """
        check_device_id(device_id)
        DevicePublicKey.parse(public_key)
        with self._command() as tx:
            row = self.conn.execute("SELECT public_key FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if row is not None and row[0] != public_key:
                raise UsageError(f"device {device_id} is enrolled with another key",
                                 "hint: revoke it and enroll the new camera under a new device id")
            if row is None:
                self.conn.execute(
                    "INSERT INTO devices (device_id, public_key, profile, enrolled_at) VALUES (?, ?, ?, ?)",
                    (device_id, public_key, json.dumps(asdict(profile)), tx.time))
                tx.append(ev.Event(ev.ENROLL, tx.time, f"device:{device_id}", device=device_id,
                                   personal={"actor": self.actor},
                                   data={"public_key": public_key, "profile": asdict(profile)}))
        return self.enrollment_note(device_id)

    def _require_device(self, device_id: str) -> DeviceInfo:
        info = self.device(device_id)
        if info is None:
            raise UsageError(f"unknown device {device_id}", "hint: enroll it with 'bodycam-dock enroll'")
        return info

    def assign(self, device_id: str, officer: str) -> None:
        """Assign the camera to an officer (assign event); reaches the camera at the next docking."""
        if not officer.strip():
            raise UsageError("the officer id is empty")
        with self._command() as tx:
            self._require_device(device_id)
            self.conn.execute("UPDATE devices SET officer = ? WHERE device_id = ?", (officer, device_id))
            tx.append(ev.Event(ev.ASSIGN, tx.time, f"device:{device_id}", device=device_id,
                               personal={"actor": self.actor, "officer": officer}))

    def revoke(self, device_id: str, reason: str) -> None:
        """Revoke a lost or retired camera (revoke event): its manifests are quarantined from now on."""
        _require_reason(reason)
        with self._command() as tx:
            self._require_device(device_id)
            self.conn.execute("UPDATE devices SET revoked = 1, revoked_reason = ? WHERE device_id = ?",
                              (reason, device_id))
            tx.append(ev.Event(ev.REVOKE, tx.time, f"device:{device_id}", device=device_id,
                               personal={"actor": self.actor, "reason": reason}))

    def enrollment_note(self, device_id: str) -> bytes:
        """The current signed enrollment (recipients, profile, officer, verifier key). Raises
        IntegrityError if recipients or the verifier key are not the ones the log recorded: a
        replaced recipients file would make the camera encrypt to an insider's key."""
        self.check_config()
        info = self._require_device(device_id)
        return Enrollment(device_id, info.public_key, self.recipients, info.profile, info.officer,
                          self.verifier_key, format_time(self.now())).sign(self.signer)

    def clock_note(self, device_id: str, at: datetime) -> bytes:
        """The dock's time ``at`` for camera ``device_id``, signed by the store key: the camera
        takes no time that the store did not sign (outbox.ClockStamp)."""
        self._require_device(device_id)
        return ClockStamp(device_id, format_time(at)).sign(self.signer)

    def record_docking(self, device_id: str, at: datetime) -> datetime | None:
        """Remember a docking time; returns the previous one (the dock flags older manifests)."""
        with db.transaction(self.conn):
            previous = self._require_device(device_id).last_docking
            self.conn.execute("UPDATE devices SET last_docking = ? WHERE device_id = ?",
                              (format_time(at), device_id))
        return previous

    # -- objects and ingest (the dock) -------------------------------------------------------

    def put_object(self, src: BinaryIO, max_bytes: int) -> ObjectRef:
        """Stream ``src`` into objects/ab/<sha256> (see objects.LocalObjects.put)."""
        return self.objects.put(src, max_bytes)

    def manifest_status(self, manifest_sha256: str) -> str | None:
        """"stored" (also after expiry: the clip was stored), "quarantined", or None."""
        if self.conn.execute("SELECT 1 FROM clips WHERE manifest_sha256 = ?", (manifest_sha256,)).fetchone():
            return STORED
        if self.conn.execute("SELECT 1 FROM quarantine WHERE manifest_sha256 = ?", (manifest_sha256,)).fetchone():
            return QUARANTINED
        return None

    def ingest(self, manifest_bytes: bytes, journal_bytes: bytes, manifest: Manifest,
               segments: dict[str, ObjectRef], *, segment_states: dict[str, str],
               flags: list[str]) -> IngestResult:
        """Index a verified clip whose segments are already objects: clip and segment rows, the
        signed manifest and journal as objects, gap events, the ingest event and a checkpoint,
        all in one transaction.

        Idempotent on the manifest hash (IngestResult(already=True)). Raises IntegrityError if the
        clip id is stored with another manifest, the device is unknown or revoked, the manifest
        signature or a segment reference does not match, or the device chain is broken (the dock
        then quarantines it).
        """
        mhash = manifest_hash(manifest_bytes)
        where = f"clip {manifest.clip_id}"
        # Objects first (outside the transaction: copying is slow; an object without an index row
        # is harmless and the rerun finds it).
        manifest_ref = self.objects.put_bytes(manifest_bytes)
        journal_ref = self.objects.put_bytes(journal_bytes)
        with self._command() as tx:
            row = self.conn.execute("SELECT manifest_sha256 FROM clips WHERE clip_id = ?", (manifest.clip_id,)).fetchone()
            if row is not None:
                if row[0] == mhash:
                    return IngestResult(manifest.clip_id, mhash, already=True)
                raise IntegrityError(f"clip {manifest.clip_id} is already stored with another manifest",
                                     "hint: the newcomer is quarantined; compare both with 'bodycam-evidence show'",
                                     where=where)
            device = self.device(manifest.device_id)
            if device is None or device.revoked:
                state = "revoked" if device else "not enrolled"
                raise IntegrityError(f"{where}: device {manifest.device_id} is {state}", where=where)
            self._check_device_row(device, where)
            parse_manifest(manifest_bytes, DevicePublicKey.parse(device.public_key))  # defence in depth
            names = [s.name for s in manifest.segments]
            if sorted(segments) != sorted(names):
                raise IntegrityError(f"{where}: segments {sorted(segments)} differ from the manifest's {names}",
                                     where=where)
            for seg in manifest.segments:
                ref = segments[seg.name]
                if (ref.sha256, ref.size) != (seg.sha256, seg.bytes) or not self.objects.exists(ref.sha256):
                    raise IntegrityError(f"{where}: segment {seg.name} is not the stored object the manifest names",
                                         where=f"{where} {seg.name}")
            gaps = self._check_chain(device, manifest, mhash, where)
            for missing in gaps:
                tx.append(ev.Event(ev.GAP, tx.time, f"device:{device.device_id}", device=device.device_id,
                                   personal={"actor": self.actor},
                                   data={"sequence": missing, "cause": "missing from the device chain"}))
            claimed = parse_time(manifest.started_at, "manifest started_at")
            # The deadline counts from the start, but never from later than now (retention.basis)
            # and never from a start the chain proves impossible (retention.earliest_start): the
            # corrected start is what the index and the leaf hold, the claim stays in the leaf.
            started = retention.earliest_start(claimed, device.last_docking, tx.now)
            late = tx.now > retention.deadline(retention.basis(started, tx.now), self.policy)
            all_flags = sorted(set(flags) | ({"late"} if late else set())
                               | ({retention.FLAG_START_CORRECTED} if started != claimed else set()))
            officer = manifest.officer or device.officer
            self.conn.execute(
                "INSERT INTO clips (clip_id, device_id, sequence, officer, trigger, started_at, ended_at, homes, "
                "manifest_sha256, journal_sha256, ingested_at, flags, state, justification, late) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (manifest.clip_id, manifest.device_id, manifest.sequence, officer, manifest.trigger,
                 format_time(started), manifest.ended_at, int(manifest.homes), mhash, journal_ref.sha256,
                 tx.time, json.dumps(all_flags), STORED,
                 JUSTIFICATION_PENDING if manifest.trigger == EMERGENCY else None, int(late)))
            self.conn.executemany(
                "INSERT INTO segments (clip_id, name, bytes, sha256, plaintext_bytes, plaintext_sha256, "
                "duration_ms, cut, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(manifest.clip_id, s.name, s.bytes, s.sha256, s.plaintext_bytes, s.plaintext_sha256,
                  s.duration_ms, int(s.cut), segment_states.get(s.name, "cut" if s.cut else "whole"))
                 for s in manifest.segments])
            tx.index_object(manifest_ref, "manifest")
            tx.index_object(journal_ref, "journal")
            for seg in manifest.segments:
                tx.index_object(segments[seg.name], "segment")
            self.conn.execute(
                "UPDATE devices SET last_sequence = ?, last_manifest_sha256 = ? WHERE device_id = ? "
                "AND (last_sequence IS NULL OR last_sequence < ?)",
                (manifest.sequence, mhash, device.device_id, manifest.sequence))
            personal = {"actor": self.actor}
            if officer:
                personal["officer"] = officer
            appended = tx.append(ev.Event(
                ev.INGEST, tx.time, manifest.clip_id, clip=manifest.clip_id, device=device.device_id,
                personal=personal,
                data={"sequence": manifest.sequence, "manifest": mhash, "journal": journal_ref.sha256,
                      "trigger": manifest.trigger, "started_at": format_time(started),
                      **({"claimed_started_at": format_time(claimed)} if started != claimed else {}),
                      "objects": [{"name": s.name, "sha256": s.sha256, "bytes": s.bytes,
                                   "state": segment_states.get(s.name, "cut" if s.cut else "whole")}
                                  for s in manifest.segments],
                      "flags": all_flags}))
        if started != claimed:
            log.warning("clip %s (device %s, sequence %d) claims to start at %s, before the camera's previous "
                        "docking at %s: its deadline counts from the docking", manifest.clip_id, manifest.device_id,
                        manifest.sequence, format_time(claimed), format_time(started))
        log.info("ingested clip %s (device %s, sequence %d)%s", manifest.clip_id, manifest.device_id,
                 manifest.sequence, " late" if late else "")
        return IngestResult(manifest.clip_id, mhash, already=False, event_index=appended.index, gaps=gaps, late=late)

    def _check_device_row(self, device: DeviceInfo, where: str) -> None:
        """The device row's key, revocation and chain position, against its events in the log:
        an edited row must not let a revoked camera, another key or a replayed sequence in."""
        bodies = [(idx, json.loads(bytes(leaf))) for idx, leaf in self.conn.execute(
            "SELECT idx, leaf FROM events WHERE subject = ? ORDER BY idx", (f"device:{device.device_id}",))]
        row = self.conn.execute(
            "SELECT e.idx, e.leaf FROM events e JOIN clips c ON c.clip_id = e.clip_id WHERE c.device_id = ? "
            "AND e.kind = ? ORDER BY c.sequence DESC LIMIT 1", (device.device_id, ev.INGEST)).fetchone()
        if row is not None:
            bodies.append((row[0], json.loads(bytes(row[1]))))
        facts = logstate.derive(sorted(bodies, key=lambda b: b[0]), lambda i: "").devices.get(device.device_id)
        if facts is None or (facts.public_key, facts.revoked, facts.last_sequence, facts.last_manifest) != (
                device.public_key, device.revoked, device.last_sequence, device.last_manifest_sha256):
            raise IntegrityError(f"{where}: the index row of device {device.device_id} differs from its events "
                                 "in the log", "hint: run 'bodycam-evidence verify'", where=where)

    def _check_chain(self, device: DeviceInfo, manifest: Manifest, mhash: str, where: str) -> list[int]:
        """The per-device chain rule of the contract; returns the missing sequence numbers."""
        last = device.last_sequence
        seq = manifest.sequence
        if last is None:
            if seq == 0 and manifest.previous_manifest is not None:
                raise IntegrityError(f"{where}: sequence 0 names a previous manifest", where=where)
            return list(range(0, seq))
        if seq <= last:
            raise IntegrityError(f"{where}: out-of-order or replayed sequence {seq} (last stored {last})",
                                 where=where)
        if seq == last + 1 and manifest.previous_manifest != device.last_manifest_sha256:
            raise IntegrityError(f"{where}: previous_manifest does not name the device's last stored manifest",
                                 where=where)
        return list(range(last + 1, seq))

    def quarantine(self, *, reason: str, device_id: str | None, clip_id: str | None,
                   manifest_bytes: bytes | None, journal_bytes: bytes | None,
                   objects: dict[str, ObjectRef]) -> str:
        """Keep rejected material under its content hashes with the reason (quarantine event).
        Returns the quarantine id; idempotent on (manifest hash, reason, objects)."""
        mref = self.objects.put_bytes(manifest_bytes) if manifest_bytes is not None else None
        jref = self.objects.put_bytes(journal_bytes) if journal_bytes is not None else None
        # The clip id and camera belong to the key: the same bytes found in two folders are two
        # findings, and each folder's holdings (see holdings) must name them.
        key = "\n".join([clip_id or "", device_id or "", mref.sha256 if mref else "", reason,
                         *sorted(f"{n}={r.sha256}" for n, r in objects.items())])
        qid = "q-" + _sha(key.encode())[:24]
        started_at = None
        if manifest_bytes is not None:
            try:
                started_at = parse_time(parse_manifest(manifest_bytes, None).started_at)
            except (EvidenceError, ValueError):
                started_at = None
        with self._command() as tx:
            if self.conn.execute("SELECT 1 FROM quarantine WHERE qid = ?", (qid,)).fetchone():
                return qid
            # Untrusted material: its claimed start may be a lie, so never later than its arrival.
            start = min(started_at, tx.now) if started_at else tx.now
            late = tx.now > retention.deadline(start, self.policy)
            self.conn.execute(
                "INSERT INTO quarantine (qid, clip_id, device_id, manifest_sha256, journal_sha256, reason, at, "
                "started_at, state, late) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (qid, clip_id, device_id, mref.sha256 if mref else None, jref.sha256 if jref else None,
                 reason, tx.time, format_time(start), QUARANTINED, int(late)))
            self.conn.executemany("INSERT INTO quarantine_objects (qid, name, sha256, size) VALUES (?, ?, ?, ?)",
                                  [(qid, n, r.sha256, r.size) for n, r in sorted(objects.items())])
            for ref, kind in ([(mref, "manifest")] if mref else []) + ([(jref, "journal")] if jref else []):
                tx.index_object(ref, kind)
            for ref in objects.values():
                tx.index_object(ref, "quarantine")
            tx.append(ev.Event(
                ev.QUARANTINE, tx.time, qid, device=device_id, personal={"actor": self.actor},
                data={"quarantine": qid, "claimed_clip": clip_id, "cause": reason, "started_at": format_time(start),
                      "manifest": mref.sha256 if mref else None, "journal": jref.sha256 if jref else None,
                      "objects": [{"name": n, "sha256": r.sha256, "bytes": r.size} for n, r in sorted(objects.items())]}))
        log.warning("quarantined %s (clip %s, device %s): %s", qid, clip_id, device_id, reason)
        return qid

    def holdings(self, clip_id: str, device_id: str) -> Holdings:
        """Every object recorded for clip ``clip_id`` of camera ``device_id``: the stored clip's
        manifest, journal and segments, and each quarantine recorded under that clip id from that
        camera (its manifest, journal and kept files). A copy of another clip's files in this
        folder matches nothing here, so it is never taken for stored."""
        hashes: set[str] = set()
        row = self.conn.execute("SELECT manifest_sha256, journal_sha256, sequence FROM clips "
                                "WHERE clip_id = ? AND device_id = ?", (clip_id, device_id)).fetchone()
        manifest_sha = sequence = None
        if row is not None:
            manifest_sha, journal_sha, sequence = row
            hashes.update((manifest_sha, journal_sha))
            hashes.update(r[0] for r in self.conn.execute("SELECT sha256 FROM segments WHERE clip_id = ?", (clip_id,)))
        for qid, mq, jq in self.conn.execute("SELECT qid, manifest_sha256, journal_sha256 FROM quarantine "
                                             "WHERE clip_id = ? AND device_id = ?", (clip_id, device_id)).fetchall():
            hashes.update(h for h in (mq, jq) if h)
            hashes.update(r[0] for r in self.conn.execute("SELECT sha256 FROM quarantine_objects WHERE qid = ?", (qid,)))
        return Holdings(manifest_sha, sequence, frozenset(hashes))

    def sign_receipt(self, receipt: Receipt) -> bytes:
        """The receipt note signed by the store key."""
        return receipt.sign(self.signer)

    # -- clips (the officers) ----------------------------------------------------------------

    def clip(self, clip_id: str) -> ClipInfo:
        """The clip (or quarantined item) ``clip_id``. Raises UsageError if there is none."""
        row = self.conn.execute(_CLIP_SELECT + " WHERE clip_id = ?", (clip_id,)).fetchone()
        if row is not None:
            return self._clip_info(row, self._holds({clip_id}))
        # By its quarantine id; by the id it claims only when no real clip has that id (then the
        # officer may look for it under the id the camera used).
        row = (self.conn.execute(_QUARANTINE_SELECT + " WHERE qid = ?", (clip_id,)).fetchone()
               or self.conn.execute(_QUARANTINE_SELECT + " WHERE clip_id = ? ORDER BY at, qid", (clip_id,)).fetchone())
        if row is not None:
            return self._quarantine_info(row, self._holds({row[0]}))
        raise UsageError(f"unknown clip {clip_id}", "hint: 'bodycam-evidence list --all' shows every clip")

    def clips(self, *, include_expired: bool = False) -> list[ClipInfo]:
        """All clips and quarantined items, oldest recording first."""
        holds = self._holds(None)
        out = [self._clip_info(r, holds) for r in self.conn.execute(_CLIP_SELECT + " ORDER BY started_at, clip_id")]
        out += [self._quarantine_info(r, holds) for r in self.conn.execute(_QUARANTINE_SELECT + " ORDER BY started_at")]
        if not include_expired:
            out = [c for c in out if c.state != EXPIRED]
        out.sort(key=lambda c: (c.recorded_at, c.clip_id))
        return out

    def _holds(self, clip_ids: set[str] | None) -> dict[str, list[dict]]:
        sql = ("SELECT h.clip_id, h.kind, c.text, h.created_at, h.hold_id FROM holds h "
               "JOIN texts c ON c.text_id = h.case_text WHERE h.released_at IS NULL")
        out: dict[str, list[dict]] = {}
        for clip_id, kind, case, created, hold_id in self.conn.execute(sql + " ORDER BY h.hold_id"):
            if clip_ids is None or clip_id in clip_ids:
                out.setdefault(clip_id, []).append({"kind": kind, "case": case, "since": created})
        return out

    def _clip_info(self, row, holds: dict[str, list[dict]]) -> ClipInfo:
        (clip_id, device_id, sequence, officer, trigger, started_at, manifest_sha, journal_sha, ingested_at,
         flags, state, justification, late, expired_at) = row
        mine = holds.get(clip_id, []) if state != EXPIRED else []
        shown = EXPIRED if state == EXPIRED else (HELD if mine else STORED)
        deadline = retention.deadline(retention.basis(parse_time(started_at), parse_time(ingested_at)), self.policy)
        return ClipInfo(clip_id, device_id, officer, started_at, trigger, justification, mine,
                        format_time(deadline), shown, sequence, manifest_sha, journal_sha, ingested_at,
                        json.loads(flags), bool(late), expired_at)

    def _quarantine_info(self, row, holds: dict[str, list[dict]] | None = None) -> ClipInfo:
        qid, clip_id, device_id, manifest_sha, journal_sha, reason, at, started_at, state, late, expired_at = row
        deadline = retention.deadline(parse_time(started_at), self.policy)
        mine = (holds or {}).get(qid, []) if state != EXPIRED else []
        # Listed under its own id: under the claimed one, a forged copy of a real clip would look
        # like a duplicate of it, and show would mix the real clip's segments and events in.
        return ClipInfo(qid, device_id, None, started_at, None, None, mine, format_time(deadline),
                        EXPIRED if state == EXPIRED else QUARANTINED, None, manifest_sha, journal_sha, at,
                        [], bool(late), expired_at, quarantine_reason=reason, claimed_clip_id=clip_id)

    def segments(self, clip_id: str) -> list[dict]:
        """Segments of a clip: name, bytes, sha256 (ciphertext), plaintext bytes/sha256, state.
        For a quarantine id: its kept objects (name, bytes, sha256, state "quarantined")."""
        rows = self.conn.execute(
            "SELECT name, bytes, sha256, plaintext_bytes, plaintext_sha256, duration_ms, cut, status "
            "FROM segments WHERE clip_id = ? ORDER BY name", (clip_id,)).fetchall()
        if not rows:
            return [{"name": n, "bytes": b, "sha256": s, "state": QUARANTINED} for n, b, s in self.conn.execute(
                "SELECT name, size, sha256 FROM quarantine_objects WHERE qid = ? ORDER BY name", (clip_id,))]
        return [{"name": n, "bytes": b, "sha256": s, "plaintext_bytes": pb, "plaintext_sha256": ps,
                 "duration_ms": d, "cut": bool(c), "state": st} for n, b, s, pb, ps, d, c, st in rows]

    def events(self, *, clip_id: str | None = None) -> list[dict]:
        """Events (all, or those about ``clip_id``) with their texts where not erased."""
        if clip_id is None:
            rows = self.conn.execute("SELECT idx, kind, time, clip_id, device_id, leaf FROM events ORDER BY idx")
        else:
            rows = self.conn.execute("SELECT idx, kind, time, clip_id, device_id, leaf FROM events "
                                     "WHERE subject = ? ORDER BY idx", (clip_id,))
        texts: dict[int, dict[str, str | None]] = {}
        # Joined by event index: texts.clip_id is empty for quarantine events (their subject is the
        # quarantine id), which showed their actor as erased.
        for idx, fieldname, text in self.conn.execute(
                "SELECT et.idx, et.field, t.text FROM event_texts et JOIN texts t USING (text_id)"
                + ("" if clip_id is None else " WHERE et.idx IN (SELECT idx FROM events WHERE subject = ?)"),
                () if clip_id is None else (clip_id,)):
            texts.setdefault(idx, {})[fieldname] = text
        out = []
        for idx, kind, time, clip, device, leaf in rows.fetchall():
            body = ev.parse_leaf(bytes(leaf), f"log entry {idx}")
            extra = {k: v for k, v in body.items() if k not in ev.BASE_FIELDS and k not in ev.PERSONAL_FIELDS}
            personal = {f: (texts.get(idx, {}).get(f, None) if f in body else None) for f in ev.PERSONAL_FIELDS}
            item = {"index": idx, "kind": kind, "time": time, "clip": clip, "device": device}
            item.update({f: ("[erased]" if t is None and f in body else t) for f, t in personal.items() if f in body})
            item.update(extra)
            item["leaf_sha256"] = ev.leaf_hash_hex(bytes(leaf))
            out.append(item)
        return out

    def _live_item(self, clip_id: str) -> ClipInfo:
        """A clip or a quarantined item that has not expired. Hold, release, view and export take
        both: a genuine recording quarantined by mistake (a planted file, a damaged journal) must
        be reviewable and keepable, never forced to expire unreviewed. Its ``clip_id`` is the id
        the item is known by (the quarantine id for quarantined material)."""
        check = self.clip(clip_id)
        if check.state == EXPIRED:
            raise UsageError(f"{clip_id} has expired; its objects are deleted")
        return check

    def _live_clip(self, clip_id: str) -> ClipInfo:
        check = self.clip(clip_id)
        if check.state == EXPIRED:
            raise UsageError(f"clip {clip_id} has expired; its objects are deleted")
        if check.state == QUARANTINED:
            raise UsageError(f"{clip_id} is quarantined material, not a stored clip")
        return check

    def hold(self, clip_id: str, *, case: str, reason: str, kind: str = HoldKind.EVIDENCE) -> int:
        """Hold a clip or a quarantined item (hold event). Returns the hold id. UsageError for an
        unknown or expired clip, an unknown kind, or a missing reason or case reference."""
        if kind not in HOLD_KINDS:
            raise UsageError(f"hold kind must be one of {', '.join(HOLD_KINDS)}")
        _require_reason(reason)
        if not case.strip():
            raise UsageError("a hold needs a case reference (--case REF)")
        with self._command() as tx:
            clip_id = self._live_item(clip_id).clip_id
            viewed = self.conn.execute("SELECT 1 FROM events WHERE subject = ? AND kind = ?",
                                       (clip_id, ev.VIEW)).fetchone() is not None
            appended = tx.append(ev.Event(ev.HOLD, tx.time, clip_id, clip=clip_id,
                                          personal={"actor": self.actor, "case": case, "reason": reason},
                                          data={"hold_kind": kind, "after_view": viewed}))
            text_ids = dict(self.conn.execute("SELECT field, text_id FROM event_texts WHERE idx = ?", (appended.index,)))
            cur = self.conn.execute(
                "INSERT INTO holds (clip_id, kind, case_text, reason_text, actor_text, created_at, event_index, "
                "after_view) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (clip_id, kind, text_ids["case"], text_ids["reason"], text_ids["actor"], tx.time,
                 appended.index, int(viewed)))
            return cur.lastrowid

    def release(self, clip_id: str, *, case: str, reason: str) -> None:
        """Release the active hold with case reference ``case`` (release event). After the last
        release the deadline applies again. UsageError if there is no such hold."""
        _require_reason(reason)
        if not (case or "").strip():
            raise UsageError("a release names the case reference of the hold it ends (--case REF)",
                             "hint: 'bodycam-evidence show CLIP' lists its holds")
        with self._command() as tx:
            clip_id = self._live_item(clip_id).clip_id
            row = self.conn.execute(
                "SELECT h.hold_id, h.event_index FROM holds h JOIN texts t ON t.text_id = h.case_text "
                "WHERE h.clip_id = ? AND h.released_at IS NULL AND t.text = ? ORDER BY h.hold_id LIMIT 1",
                (clip_id, case)).fetchone()
            if row is None:
                raise UsageError(f"clip {clip_id} has no active hold with case {case!r}",
                                 f"hint: 'bodycam-evidence show {clip_id}' lists its holds")
            appended = tx.append(ev.Event(ev.RELEASE, tx.time, clip_id, clip=clip_id,
                                          personal={"actor": self.actor, "case": case, "reason": reason},
                                          data={"hold_event": row[1]}))
            self.conn.execute("UPDATE holds SET released_at = ?, release_event = ? WHERE hold_id = ?",
                              (tx.time, appended.index, row[0]))

    def justify(self, clip_id: str, *, reason: str) -> None:
        """Record why an emergency clip was not announced (justify event)."""
        _require_reason(reason)
        with self._command() as tx:
            info = self._live_clip(clip_id)
            if info.trigger != EMERGENCY:
                raise UsageError(f"clip {clip_id} was announced; only emergency clips need a justification")
            self.conn.execute("UPDATE clips SET justification = ? WHERE clip_id = ?", (JUSTIFIED, clip_id))
            tx.append(ev.Event(ev.JUSTIFY, tx.time, clip_id, clip=clip_id,
                               personal={"actor": self.actor, "reason": reason}))

    def log_access(self, kind: str, clip_id: str, *, reason: str, data: dict | None = None) -> Appended:
        """Commit a view or export event *before* any plaintext exists (the law: every access is
        logged; a crash after decrypting must not leave an unlogged access). Returns the event."""
        if kind not in ev.ACCESS_KINDS:
            raise ValueError(f"{kind} is not an access")
        _require_reason(reason)
        with self._command() as tx:
            clip_id = self._live_item(clip_id).clip_id
            objects = [s["sha256"] for s in self.segments(clip_id)]
            return tx.append(ev.Event(kind, tx.time, clip_id, clip=clip_id,
                                      personal={"actor": self.actor, "reason": reason},
                                      data={"objects": objects} | (data or {})))

    def append_event(self, kind: str, clip_id: str, *, data: dict) -> Appended:
        """Append a non-personal follow-up event about a clip (export: the sealed file list)."""
        with self._command() as tx:
            return tx.append(ev.Event(kind, tx.time, clip_id, clip=clip_id,
                                      personal={"actor": self.actor}, data=data))

    # -- expiry ------------------------------------------------------------------------------

    def expire(self, *, now: datetime | None = None, dry_run: bool = False, late_only: bool = False) -> ExpiryResult:
        """Delete what retention says is due (expire event each, tombstone rows kept), erase
        personal texts whose retention ended, sign a checkpoint; then remove the objects.

        ``late_only`` deletes only what arrived after its deadline: the dock runs it right after
        a docking, so that a late arrival is deleted at once while clips still within their two
        weeks wait for the hourly run, and an officer's review, as usual.

        ``now`` only with ``dry_run`` (a preview): deleting by a made-up clock is refused with
        UsageError, because it would delete evidence early or keep it too long.
        """
        if now is not None and not dry_run:
            raise UsageError("--now only previews: use it with --dry-run",
                             "hint: expire deletes by the system clock")
        if dry_run:
            with db.snapshot(self.conn):
                when = now or self.now()
                state = self._proven_state()
                faults = self._index_faults(state)
                result = ExpiryResult(when, [_refused(d) if d.action == retention.DELETE and d.item_id in faults
                                             else d for d in self._decide_from(state, when)], dry_run=True)
                result.faults = [f"{'quarantine' if item in state.quarantine else 'clip'} {item}: {text}"
                                 for item, texts in sorted(faults.items()) for text in texts]
                return result
        with self._command() as tx:
            state = self._proven_state()
            self.check_config(state)
            decisions = self._decide_from(state, tx.now)
            faults = self._index_faults(state)
            if late_only:
                decisions = [d for d in decisions if d.late or d.action != retention.DELETE]
            # An item whose index rows disagree with the log is never deleted: the rows may have
            # been edited to make it look due, or the log may be what was damaged. Both need a human.
            refused = [d for d in decisions if d.action == retention.DELETE and d.item_id in faults]
            due = [d for d in decisions if d.action == retention.DELETE and d.item_id not in faults]
            decisions = [_refused(d) if d in refused else d for d in decisions]
            objects_of = {d.item_id: (state.quarantine[d.item_id] if d.quarantined else state.clips[d.item_id])
                          .object_hashes() for d in due}
            doomed: set[str] = set().union(*objects_of.values())
            self.conn.executemany("UPDATE quarantine SET state = ?, expired_at = ? WHERE qid = ?",
                                  [(EXPIRED, tx.time, d.item_id) for d in due if d.quarantined])
            self.conn.executemany("UPDATE clips SET state = ?, expired_at = ? WHERE clip_id = ?",
                                  [(EXPIRED, tx.time, d.item_id) for d in due if not d.quarantined])
            tx.append_many([ev.Event(ev.EXPIRE, tx.time, d.item_id, clip=None if d.quarantined else d.item_id,
                                     personal={"actor": self.actor},
                                     data={"cause": d.reason, "deadline": format_time(d.deadline),
                                           "late": d.late, "objects": sorted(objects_of[d.item_id])}
                                     | ({"quarantine": d.item_id} if d.quarantined else {}))
                            for d in due])
            # Only objects no live clip or quarantine item still names (the same bytes may be both a
            # clip's segment and a quarantined copy's), by the log and by the index alike.
            due_ids = {d.item_id for d in due}
            live_by_log = set().union(*(f.object_hashes() for f in [*state.clips.values(), *state.quarantine.values()]
                                        if f.expired_index is None and (f.clip_id if isinstance(f, logstate.ClipFacts)
                                                                        else f.qid) not in due_ids))
            live = self._live_objects(doomed) | live_by_log
            gone = sorted(doomed - live)
            self.conn.executemany("UPDATE objects SET deleted_at = ? WHERE sha256 = ?", [(tx.time, h) for h in gone])
            held = {r[0] for r in self.conn.execute("SELECT DISTINCT clip_id FROM holds WHERE released_at IS NULL")}
            erased = tx.log.erase_texts(tx.time, sorted(held | set(state.active_holds())))
            # The officer's name on an expired clip's row is a personal text like those in the log:
            # it goes when they go (two years after the ingest), not never.
            self.conn.execute("UPDATE clips SET officer = NULL WHERE state = ? AND officer IS NOT NULL "
                              "AND ingested_at <= ?", (EXPIRED, format_time(tx.now - TEXT_RETENTION)))
            result = ExpiryResult(tx.now, decisions, erased_texts=erased)
            result.faults = [f"{'quarantine' if item in state.quarantine else 'clip'} {item}: {text}"
                             for item, texts in sorted(faults.items()) for text in texts]
        may_delete = (set(state.expired_objects) | set(gone)) - live_by_log
        if not late_only:  # the hourly run; the dock's quick post-docking run skips the folder scans
            result.orphans = self._expire_orphans(protect=live_by_log)
            may_delete |= set(result.orphans)
            result.removed_tmp = self._remove_stale_tmp()
        # After the commit: a crash here leaves files of expired clips, which sweep() removes on the
        # next run; the other order could leave a stored clip without its objects.
        result.deleted_objects = self.sweep(may_delete, result.faults)
        return result

    def orphans(self, now: datetime | None = None) -> list[tuple[str, float]]:
        """(name, age in seconds) of object files that no index row names: ciphertext copied by a
        dock that died before its ingest committed (and whose camera never came back)."""
        known = {h for (h,) in self.conn.execute("SELECT sha256 FROM objects")}
        stamp = (now or self.now()).timestamp()
        return [(name, self.objects.age_seconds(name, stamp)) for name in self.objects.names()
                if name not in known]

    def _expire_orphans(self, protect: set[str]) -> list[str]:
        """Delete unreferenced objects older than the retention: a recording that never reached the
        index still may not be kept past two weeks. Each gets an expire event (every deletion is
        logged) and a tombstone row in ``objects``, so that sweep() finishes a crashed run."""
        with self._command() as tx:
            limit = self.policy.retention.total_seconds()
            # Never one the log names for a live clip: its objects row may have been deleted.
            doomed = sorted(name for name, age in self.orphans(tx.now)
                            if age > limit and HEX64.match(name) and name not in protect)
            for sha in doomed:
                size = self.objects.path(sha).stat().st_size
                self.conn.execute("INSERT INTO objects (sha256, size, kind, created_at, deleted_at) "
                                  "VALUES (?, ?, ?, ?, ?)", (sha, size, ORPHAN, tx.time, tx.time))
            tx.append_many([ev.Event(ev.EXPIRE, tx.time, f"object:{sha}", personal={"actor": self.actor},
                                     data={"cause": "unreferenced object (an ingest that never committed) "
                                                    "older than the retention", "objects": [sha]})
                            for sha in doomed])
        if doomed:
            log.warning("deleted %d unreferenced object(s) older than the retention", len(doomed))
        return doomed

    def _remove_stale_tmp(self) -> int:
        """Remove temp files of object writes older than TMP_MAX_AGE (a crashed copy; its camera
        still holds the clip, or the rerun made a new copy). Not evidence: never indexed or named."""
        cutoff = (self.now() - TMP_MAX_AGE).timestamp()
        count = 0
        for path, mtime in self.objects.tmp_files():
            if mtime < cutoff and path.is_file():
                path.unlink(missing_ok=True)
                count += 1
        if count:
            fsync_dir(self.objects.tmp)
        return count

    def sweep(self, may_delete: set[str] | None = None, faults: list[str] | None = None) -> int:
        """Remove object files whose index row says deleted (finishing an interrupted expiry), but
        only those an expire event in the log names and no live clip or quarantined item does
        (``may_delete``; derived from the proven log if not given): an edited ``deleted_at`` alone
        deletes nothing. Refusals are added to ``faults``."""
        if may_delete is None:
            state = self._proven_state()
            may_delete = set(state.expired_objects) - state.live_objects()
        rows = [sha for (sha,) in self.conn.execute("SELECT sha256 FROM objects WHERE deleted_at IS NOT NULL")
                if isinstance(sha, str) and HEX64.match(sha)]
        refused = [sha for sha in rows if sha not in may_delete and self.objects.exists(sha)]
        if faults is not None:
            faults.extend(f"object {sha}: not deleted: the index marks it deleted but the log does not "
                          "expire it, or a live clip names it" for sha in refused)
        return self.objects.delete_many(sha for sha in rows if sha in may_delete)

    # -- what the log proves ------------------------------------------------------------------

    def _proven_state(self) -> logstate.LogState:
        """The state the signed log says the store is in: every leaf re-hashed, the tree recomputed
        and compared with the latest signed checkpoint of the database and of the checkpoint file.

        Raises IntegrityError (one line naming the fault) if an entry is missing, unparsable or
        not covered by a signed checkpoint, or the entries do not match a signed root: then
        nothing the log says can be acted on.
        """
        leaf_hashes: list[bytes] = []
        bodies: list[tuple[int, dict]] = []
        hint = "hint: run 'bodycam-evidence verify' for the whole extent of the damage"
        for idx, leaf in self.conn.execute("SELECT idx, leaf FROM events ORDER BY idx"):
            if idx != len(leaf_hashes):
                raise IntegrityError(f"the log is damaged: entry {len(leaf_hashes)} is missing", hint,
                                     where=f"log index {len(leaf_hashes)}")
            leaf = bytes(leaf)
            leaf_hashes.append(merkle.leaf_hash(leaf))
            try:
                body = json.loads(leaf)
            except ValueError:
                body = None
            if not isinstance(body, dict) or body.get("index") != idx:
                raise IntegrityError(f"the log is damaged: entry {idx} is not a valid event", hint,
                                     where=f"log index {idx}")
            if body.get("kind") in logstate.STATE_KINDS or body.get("clip") is None:
                bodies.append((idx, body))
        size = len(leaf_hashes)
        _, recomputed = merkle.stored_hashes_for_appends(0, leaf_hashes)
        read = lambda indexes: [recomputed[i] for i in indexes]  # noqa: E731 - from the leaves, not the stored copies
        signed = 0
        for what, note in (("the database's latest checkpoint", self.log.latest_checkpoint()),
                           (f"{CHECKPOINT_FILE}", self.checkpoint_file())):
            if note is None:
                continue
            try:
                cp = cpmod.open_checkpoint(note, self.verifier, self.origin)
            except EvidenceError as exc:
                raise IntegrityError(f"{what} does not verify: {exc}", hint, where=what) from None
            if cp.size > size:
                raise IntegrityError(f"the log has {size} entries but {what} was signed over {cp.size}: "
                                     "entries or checkpoints were removed", hint, where=what)
            if merkle.tree_hash(cp.size, read) != cp.root:
                raise IntegrityError(f"the log's entries do not match {what} (size {cp.size}): the log was "
                                     "rewritten", hint, where=what)
            signed = max(signed, cp.size)
        if signed < size:
            raise IntegrityError(f"log entries {signed}..{size - 1} are not covered by a signed checkpoint", hint,
                                 where=f"log index {signed}")
        return logstate.derive(bodies, lambda i: leaf_hashes[i].hex(), size)

    def _quarantine_start(self, facts: logstate.QuarantineFacts) -> datetime:
        """When a quarantined item's retention clock starts: logged in its event; for events written
        before that, the start its manifest object claims (content-addressed, so derivable), never
        later than its arrival; else its arrival."""
        at = parse_time(facts.at or "")
        if facts.started_at:
            return min(parse_time(facts.started_at), at)
        if facts.manifest and HEX64.match(facts.manifest) and self.objects.exists(facts.manifest):
            try:
                return min(parse_time(parse_manifest(self.objects.read(facts.manifest), None).started_at), at)
            except (EvidenceError, ValueError):
                pass
        return at

    def _decide_from(self, state: logstate.LogState, now: datetime) -> list[retention.Decision]:
        """Retention decisions from the log alone: starts, arrivals and holds as the events say."""
        items = []
        for facts in state.clips.values():
            if facts.expired_index is None:
                try:
                    items.append(retention.Item(facts.clip_id, parse_time(facts.started_at or ""),
                                                parse_time(facts.ingested_at or "")))
                except ValueError:
                    continue  # not an event this store wrote: _index_faults cannot agree with it either
        for facts in state.quarantine.values():
            if facts.expired_index is None:
                try:
                    items.append(retention.Item(facts.qid, self._quarantine_start(facts),
                                                parse_time(facts.at or ""), quarantined=True))
                except ValueError:
                    continue
        items.sort(key=lambda i: (i.started_at, i.item_id))
        holds = [retention.Hold(clip, kind) for clip, kinds in state.active_holds().items() for kind in kinds]
        return retention.decide(items, holds, self.policy, now, self.policy.next_run(now))

    def _index_faults(self, state: logstate.LogState) -> dict[str, list[str]]:
        """Where the index rows that expiry reads disagree with the log: item id -> differences."""
        faults: dict[str, list[str]] = {}

        def differ(item: str, names: list[str]) -> None:
            if names:
                faults.setdefault(item, []).append(f"the index's {', '.join(names)} differ(s) from the log")

        segments: dict[str, set[str]] = {}
        for clip_id, sha in self.conn.execute("SELECT clip_id, sha256 FROM segments"):
            segments.setdefault(clip_id, set()).add(sha)
        rows = {r[0]: r for r in self.conn.execute(
            "SELECT clip_id, device_id, sequence, started_at, ingested_at, manifest_sha256, journal_sha256, state "
            "FROM clips")}
        for clip_id, facts in state.clips.items():
            row = rows.get(clip_id)
            if row is None:
                faults.setdefault(clip_id, []).append("the log ingested it but its index row is gone")
                continue
            want = (clip_id, facts.device, facts.sequence, facts.started_at, facts.ingested_at, facts.manifest,
                    facts.journal, EXPIRED if facts.expired_index is not None else STORED)
            names = [n for n, a, b in zip(_CLIP_CHECKED, row, want) if a != b]
            if facts.expired_index is None and segments.get(clip_id, set()) != {
                    o.get("sha256") for o in facts.objects if isinstance(o, dict)}:
                names.append("segments")
            differ(clip_id, names)
        for clip_id in rows.keys() - state.clips.keys():
            faults.setdefault(clip_id, []).append("has an index row but no ingest event in the log")
        kept: dict[str, set[str]] = {}
        for qid, sha in self.conn.execute("SELECT qid, sha256 FROM quarantine_objects"):
            kept.setdefault(qid, set()).add(sha)
        rows = {r[0]: r for r in self.conn.execute(
            "SELECT qid, clip_id, device_id, manifest_sha256, journal_sha256, at, started_at, state FROM quarantine")}
        for qid, facts in state.quarantine.items():
            row = rows.get(qid)
            if row is None:
                faults.setdefault(qid, []).append("the log quarantined it but its index row is gone")
                continue
            try:
                start = format_time(self._quarantine_start(facts))
            except ValueError:
                start = None
            want = (qid, facts.claimed_clip, facts.device, facts.manifest, facts.journal, facts.at, start,
                    EXPIRED if facts.expired_index is not None else QUARANTINED)
            names = [n for n, a, b in zip(_QUARANTINE_CHECKED, row, want) if a != b]
            if facts.expired_index is None and kept.get(qid, set()) != {
                    o.get("sha256") for o in facts.objects if isinstance(o, dict)}:
                names.append("objects")
            differ(qid, names)
        for qid in rows.keys() - state.quarantine.keys():
            faults.setdefault(qid, []).append("has an index row but no quarantine event in the log")
        table = {r[0]: r for r in self.conn.execute(
            "SELECT event_index, clip_id, kind, released_at, release_event FROM holds")}
        for idx, hold in state.holds.items():
            row = table.get(idx)
            want = (idx, hold.clip_id, hold.kind, hold.release_time, hold.release_index)
            if row is None:
                faults.setdefault(hold.clip_id or "?", []).append(
                    f"the log holds it (log index {idx}) but the holds table has no row for that hold")
            elif tuple(row) != want:
                faults.setdefault(hold.clip_id or "?", []).append(
                    f"its hold row of log index {idx} differs from the hold and release events")
        for idx in table.keys() - state.holds.keys():
            faults.setdefault(table[idx][1], []).append(f"a hold row names log index {idx}, which is no hold event")
        # Objects of live items must have rows that keep them: a missing row makes a file look like
        # an interrupted ingest's leftover, a deleted_at makes sweep() a candidate.
        kept_rows = {sha for (sha,) in self.conn.execute("SELECT sha256 FROM objects WHERE deleted_at IS NULL")}
        for facts in [*state.clips.values(), *state.quarantine.values()]:
            if facts.expired_index is None and not facts.object_hashes() <= kept_rows:
                item = facts.clip_id if isinstance(facts, logstate.ClipFacts) else facts.qid
                faults.setdefault(item, []).append("an object it names has no objects row or one marked deleted")
        return faults

    def _live_objects(self, candidates: set[str]) -> set[str]:
        """Which of ``candidates`` a stored clip or a quarantined item still names. One set-based
        query over a temporary table: a query per object (150,000 of them for 50,000 clips) made
        the expiry run slower than its hourly timer could afford."""
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS expiry_candidates (sha256 TEXT PRIMARY KEY)")
        self.conn.execute("DELETE FROM expiry_candidates")
        self.conn.executemany("INSERT OR IGNORE INTO expiry_candidates VALUES (?)", ((h,) for h in candidates))
        live = {h for (h,) in self.conn.execute(_LIVE_SQL, [state for _, state in _LIVE_QUERIES])}
        self.conn.execute("DELETE FROM expiry_candidates")
        return live


# Does any live row name the object? Each question uses its own index (an OR across columns
# made SQLite scan every clip); quarantine rows are alive while quarantined, clips while stored.
_LIVE_QUERIES = [
    ("SELECT 1 FROM segments s JOIN clips k USING (clip_id) WHERE s.sha256 = c.sha256 AND k.state = ?", STORED),
    ("SELECT 1 FROM clips k WHERE k.manifest_sha256 = c.sha256 AND k.state = ?", STORED),
    ("SELECT 1 FROM clips k WHERE k.journal_sha256 = c.sha256 AND k.state = ?", STORED),
    ("SELECT 1 FROM quarantine_objects o JOIN quarantine q USING (qid) WHERE o.sha256 = c.sha256 AND q.state = ?",
     QUARANTINED),
    ("SELECT 1 FROM quarantine q WHERE q.manifest_sha256 = c.sha256 AND q.state = ?", QUARANTINED),
    ("SELECT 1 FROM quarantine q WHERE q.journal_sha256 = c.sha256 AND q.state = ?", QUARANTINED),
]
_LIVE_SQL = "SELECT c.sha256 FROM expiry_candidates c WHERE " + " OR ".join(f"EXISTS ({q})" for q, _ in _LIVE_QUERIES)

#: Columns of clips and quarantine rows that expiry compares with the log (in SELECT order).
_CLIP_CHECKED = ("clip_id", "device_id", "sequence", "started_at", "ingested_at", "manifest_sha256",
                 "journal_sha256", "state")
_QUARANTINE_CHECKED = ("qid", "clip_id", "device_id", "manifest_sha256", "journal_sha256", "at", "started_at",
                       "state")

_CLIP_SELECT = ("SELECT clip_id, device_id, sequence, officer, trigger, started_at, manifest_sha256, journal_sha256, "
                "ingested_at, flags, state, justification, late, expired_at FROM clips")
_QUARANTINE_SELECT = ("SELECT qid, clip_id, device_id, manifest_sha256, journal_sha256, reason, at, started_at, "
                      "state, late, expired_at FROM quarantine")


def _refused(decision: retention.Decision) -> retention.Decision:
    """A deletion expiry does not carry out: the item's index rows disagree with the log."""
    return retention.Decision(decision.item_id, retention.KEEP, "not deleted: its index rows disagree with the log",
                              decision.deadline, decision.late, decision.quarantined)


def _require_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise UsageError("a reason is required (--reason TEXT)",
                         "hint: the law requires every access, hold and release to be logged with a reason")
    return reason


class _Tx:
    """The state of one writing command: its time, and whether it appended (then a checkpoint)."""

    def __init__(self, store: Store, event_log: EventLog, now: datetime):
        self.store = store
        self.log = event_log
        self.now = now
        self.time = format_time(now)
        self.appended = False

    def _retain_until(self) -> str:
        return format_time(self.now + TEXT_RETENTION)

    def append(self, event: ev.Event) -> Appended:
        return self.append_many([event])[0]

    def append_many(self, batch: list[ev.Event]) -> list[Appended]:
        if not batch:
            return []
        self.appended = True
        return self.log.append_many(batch, retain_until=self._retain_until())

    def index_object(self, ref: ObjectRef, kind: str) -> None:
        self.store.conn.execute(
            "INSERT INTO objects (sha256, size, kind, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sha256) DO UPDATE SET deleted_at = NULL", (ref.sha256, ref.size, kind, self.time))
