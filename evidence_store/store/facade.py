"""The Store, the facade the CLI and the dock call: one folder with objects, keys, identity, and
an index + event log (local: SQLite in the folder; central: PostgreSQL, see index.py).

Layout::

    store.json       format marker, log origin, retention policy
    evidence.db      index and event log (db.py), unless store.json names a "database" URL
    objects/ab/<sha256>   ciphertext segments, signed manifests and journals (objects.py), unless
                     store.json names an "objects" bucket (s3://BUCKET/PREFIX, objects_s3.py)
    log.key          the log's note signer key (0640): signs checkpoints, enrollments, receipts
    log.vkey         its verifier key (publish it out of band)
    recipients       the age recipient(s) cameras encrypt to
    log.checkpoint   the latest signed checkpoint, outside the database (never moves back)
    identity.age     the age identity, encrypted to a passphrase (age -p); may be moved elsewhere
    tmp/             temporary files of object writes (same file system: rename is atomic)

Where the objects are on S3 with Object Lock, locks.py maps retention and holds onto the lock.

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
in one writing transaction (``db.transaction``: SQLite's ``BEGIN IMMEDIATE``, or PostgreSQL's lock
on the log head row) that appends its events and signs a new checkpoint before it commits, so the
index, the log and the checkpoint never disagree."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from evidence_store import db, retention
from evidence_store import events as ev
from evidence_store.clip.age import Identity, Passphrase, encrypt_identity
from evidence_store.clip.clock import Clock, SystemClock
from evidence_store.clip.fsutil import atomic_write, fsync_dir
from evidence_store.clip.ids import format_time
from evidence_store.clip.note import NoteVerifier, generate_signer
from evidence_store.errors import UsageError
from evidence_store.index import DATABASE_KEY, check_database, open_index
from evidence_store.log import Appended, EventLog
from evidence_store.objects import OBJECTS_KEY, SHARED_DIR_MODE, ObjectRef, make_shared_dir, open_objects
from evidence_store.queries import Queries
from evidence_store.store.access import AccessMixin
from evidence_store.store.devices import DevicesMixin
from evidence_store.store.expiry import ExpiryMixin
from evidence_store.store.ingest import IngestMixin
from evidence_store.store.keys import KeysMixin
from evidence_store.store.locks import LocksMixin
from evidence_store.store.records import (
    DEFAULT_SCRYPT_LOG_N,
    IDENTITY_FILE,
    KEY_MODE,
    LOG_KEY_FILE,
    RECIPIENTS_FILE,
    STORE_FILE,
    STORE_FORMAT,
    TEXT_RETENTION,
    VKEY_FILE,
    NotAStore,
    _sha,
    _store_umask,
    current_actor,
)

if TYPE_CHECKING:
    from evidence_store.postgres import PgIndex

log = logging.getLogger(__name__)


class Store(KeysMixin, DevicesMixin, IngestMixin, AccessMixin, ExpiryMixin, LocksMixin):
    """An evidence store. Create with ``Store.init``, open with ``Store.open``.

    ``clock`` (a ``evidence_store.clip.clock.Clock``: its ``now()`` is aware UTC) and ``actor``
    are seams for tests; the CLI uses the system clock and the effective user.
    """

    def __init__(self, root: Path, config: dict, conn: sqlite3.Connection | PgIndex, *,
                 clock: Clock | None = None, actor: str | None = None):
        self.root = root
        self.config = config
        self.conn = conn
        self.index = Queries(conn)
        self.clock = clock or SystemClock()
        self.actor = actor or current_actor()
        self.objects = open_objects(root, config)
        self.origin: str = config["origin"]
        self.policy = retention.Policy(
            retention=timedelta(days=config.get("retention_days", 14)),
            run_interval=timedelta(minutes=config.get("run_interval_minutes", 60)),
        )
        self._signer = None
        self.verifier = NoteVerifier.from_vkey(self.verifier_key)

    @classmethod
    def open(cls, root: str | os.PathLike, *, clock: Clock | None = None,
             actor: str | None = None) -> Store:
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
            raise NotAStore(f"{root}: {exc}", *(exc.hints or [hint])) from None  # "upgrade bodycam" stays
        try:
            return cls(root, config, conn, clock=clock, actor=actor)
        except BaseException:
            conn.close()  # the object storage cannot be used (S3Error): its own line and hint
            raise

    @classmethod
    def init(cls, root: str | os.PathLike, passphrase: bytes, *, scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
             origin: str | None = None, clock: Clock | None = None,
             actor: str | None = None, retention_days: int = 14, database: str | None = None,
             objects: str | None = None) -> Store:
        """Create a store in ``root`` (missing or empty): identity (age scrypt file), log key,
        database with a signed checkpoint over its config event. Returns the open store. Raises UsageError if
        ``root`` holds anything, or the passphrase is empty.

        ``database``: a PostgreSQL URL (no password: libpq's password file, service file or
        environment supply it) of an empty database that takes the index and log instead of a
        local SQLite file. It is connected to (and its schema created) before any file is
        written, so a wrong URL or credentials leave nothing behind.

        ``objects``: ``s3://BUCKET/PREFIX``, a bucket with versioning and Object Lock that takes
        the objects instead of the folder (endpoint and credentials by boto3's conventions). The
        bucket is checked (reachable, credentials accepted, versioning and Object Lock on) before
        anything is written or created, the database included: S3Error (one line) otherwise."""
        root = Path(root)
        if not passphrase:
            raise UsageError("the passphrase is empty")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UsageError(f"{root} exists and is not empty; a store is created in a new or empty folder")
        retention.Policy(retention=timedelta(days=retention_days))  # refuses more than 14 days
        if database is not None:
            check_database(database)
        if objects is not None:
            open_objects(root, {OBJECTS_KEY: objects})  # checks the bucket; nothing written yet
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
            if objects is None:
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
            if objects is not None:
                config[OBJECTS_KEY] = objects
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def hold_camera(self, device_id: str, waiting=None):
        """The lock that lets one dock at a time dock camera ``device_id``, across every machine
        that writes this store (a context manager; blocking; see store/coordination.py).
        ``waiting(holder)`` is called once when another dock holds it."""
        from evidence_store.store.coordination import hold_camera

        return hold_camera(self, device_id, waiting)

    @contextmanager
    def _command(self) -> Iterator[_Tx]:
        with db.transaction(self.conn):
            tx = _Tx(self, self._log(writable=True), self.now())
            yield tx
            note = tx.log.sign_checkpoint(format_time(tx.now)) if tx.appended else None
        if note is not None:
            self._publish_checkpoint(note)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A writing transaction that appends no event. The facade alone holds the connection:
        the job modules run their statements through ``self.index`` and their transactions here."""
        with db.transaction(self.conn):
            yield

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction: every statement inside sees one state."""
        with db.snapshot(self.conn):
            yield

    def _log(self, writable: bool = False) -> EventLog:
        return EventLog(self.conn, self.origin, self.signer if writable else None, self.verifier)


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
        self.store.index.index_object(ref.sha256, ref.size, kind, self.time)
