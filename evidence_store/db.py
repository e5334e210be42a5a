"""The store's SQLite database: schema, migrations, and the one way to open a write transaction.

One database holds the index (devices, clips, segments, holds, quarantine, personal texts) and the
event log (events, stored Merkle hashes, checkpoints), so an ingest is a single transaction: either
the clip, its index rows, its event and a new checkpoint all exist, or none does.

Concurrency (two docks, the hourly expiry timer and an officer at the same time):

* WAL journal: readers never block the writer and see a consistent snapshot.
* ``busy_timeout``: a second writer waits for the lock instead of failing at once.
* every command that writes runs inside ``transaction()``, which starts with ``BEGIN IMMEDIATE``:
  the write lock is taken *before* the log size is read, so two appenders can never both compute
  leaf N (a deferred transaction would read, then fail to upgrade, or worse, race).

Growth path: all SQL lives here and in log.py/store.py behind small functions; a PostgreSQL
backend would replace ``connect`` and keep the same statements (``SELECT ... FOR UPDATE`` on a
one-row log head instead of ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from evidence_store.errors import EvidenceError

if TYPE_CHECKING:
    from evidence_store.postgres import PgIndex

log = logging.getLogger(__name__)

DB_FILE = "evidence.db"
#: The database is written by several users of the store's group (the dock, the expiry service,
#: officers), so it is group-writable. SQLite gives its -wal and -shm files the database file's
#: mode (it fchmods them past the umask), so setting it once on creation is enough.
DB_MODE = 0o660
#: How long a writer waits for another writer's lock. An ingest of a long clip holds the lock only
#: for its index rows (objects are copied before the transaction), so seconds are plenty; a minute
#: covers an expiry run over a large store.
BUSY_TIMEOUT_MS = 60_000

# Each entry migrates the schema from version i to i + 1 (PRAGMA user_version). Never edit a
# released entry: add a new one, so an old store upgrades in place.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        profile TEXT NOT NULL,
        officer TEXT,
        revoked INTEGER NOT NULL DEFAULT 0,
        revoked_reason TEXT,
        enrolled_at TEXT NOT NULL,
        last_docking TEXT,
        last_sequence INTEGER,
        last_manifest_sha256 TEXT
    );
    CREATE TABLE objects (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE TABLE clips (
        clip_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        officer TEXT,
        trigger TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        homes INTEGER NOT NULL DEFAULT 0,
        manifest_sha256 TEXT NOT NULL UNIQUE,
        journal_sha256 TEXT NOT NULL,
        ingested_at TEXT NOT NULL,
        flags TEXT NOT NULL,
        state TEXT NOT NULL,
        justification TEXT,
        late INTEGER NOT NULL DEFAULT 0,
        expired_at TEXT
    );
    CREATE INDEX clips_state ON clips (state, started_at);
    CREATE INDEX clips_journal ON clips (journal_sha256);
    CREATE TABLE segments (
        clip_id TEXT NOT NULL,
        name TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        plaintext_bytes INTEGER NOT NULL,
        plaintext_sha256 TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        cut INTEGER NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (clip_id, name)
    );
    CREATE INDEX segments_sha256 ON segments (sha256);
    CREATE TABLE quarantine (
        qid TEXT PRIMARY KEY,
        clip_id TEXT,
        device_id TEXT,
        manifest_sha256 TEXT,
        journal_sha256 TEXT,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        started_at TEXT NOT NULL,
        state TEXT NOT NULL,
        late INTEGER NOT NULL DEFAULT 0,
        expired_at TEXT
    );
    CREATE INDEX quarantine_manifest ON quarantine (manifest_sha256);
    CREATE TABLE quarantine_objects (
        qid TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (qid, name)
    );
    CREATE INDEX quarantine_objects_sha256 ON quarantine_objects (sha256);
    CREATE TABLE holds (
        hold_id INTEGER PRIMARY KEY,
        clip_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        case_text INTEGER NOT NULL,
        reason_text INTEGER NOT NULL,
        actor_text INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        event_index INTEGER NOT NULL,
        after_view INTEGER NOT NULL,
        released_at TEXT,
        release_event INTEGER
    );
    CREATE INDEX holds_clip ON holds (clip_id);
    CREATE TABLE texts (
        text_id INTEGER PRIMARY KEY,
        field TEXT NOT NULL,
        salt BLOB,
        text TEXT,
        digest TEXT NOT NULL,
        clip_id TEXT,
        retain_until TEXT NOT NULL,
        erased_at TEXT
    );
    CREATE INDEX texts_retention ON texts (erased_at, retain_until);
    CREATE TABLE events (
        idx INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        clip_id TEXT,
        device_id TEXT,
        time TEXT NOT NULL,
        leaf BLOB NOT NULL
    );
    CREATE INDEX events_subject ON events (subject, idx);
    CREATE INDEX events_clip ON events (clip_id, idx);
    CREATE INDEX events_kind_time ON events (kind, time);
    CREATE TABLE event_texts (
        idx INTEGER NOT NULL,
        field TEXT NOT NULL,
        text_id INTEGER NOT NULL,
        PRIMARY KEY (idx, field)
    );
    CREATE TABLE hashes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL, created_at TEXT NOT NULL);
    """,
    # 2: expiry asks whether a quarantined journal is still needed; without this index each
    # question scanned the whole quarantine table.
    """
    CREATE INDEX quarantine_journal ON quarantine (journal_sha256);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class DatabaseError(EvidenceError):
    """The database cannot be opened or written, is locked too long, or is from a newer version."""


class DatabaseBusy(DatabaseError):
    """Another writer held the lock longer than BUSY_TIMEOUT_MS: trying again later helps."""


class DatabaseReadOnly(DatabaseError):
    """This user may not write the database (permissions, a read-only mount): trying again does not help."""


HINT_BUSY = "hint: another dock or command holds the lock; try again"
HINT_READONLY = ("hint: commands that write run as a member of the store's group (bodycam-store); "
                 "evidence.db and its folder must be group-writable (0660, 2770)")
HINT_LOST = ("hint: stop the dock and the expiry timer, put back this store's evidence.db (moved away, or "
             "its backup), then run 'bodycam-evidence verify'; see README, 'Backups and a lost index'")
HINT_FULL = "hint: free space on the store's file system, then run the command again (nothing was changed)"


def database_error(exc: sqlite3.Error, doing: str = "use") -> DatabaseError:
    """The typed, one-line EvidenceError for a SQLite error (the CLI never shows a traceback).

    Busy and read-only are told apart: one passes, the other needs an admin.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return DatabaseBusy(f"the evidence database is busy ({text})", HINT_BUSY)
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN")) or "readonly" in text:
        return DatabaseReadOnly(f"cannot {doing} the evidence database: {text}", HINT_READONLY)
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return DatabaseError(f"cannot {doing} the evidence database: the disk is full", HINT_FULL)
    return DatabaseError(f"cannot {doing} the evidence database ({text})")


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled back on its own already (disk full, I/O error): then ROLLBACK fails,
    # and that must not hide the error that caused it.
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def connect(path: str | Path, *, create: bool = False) -> sqlite3.Connection:
    """Open the store database (WAL, busy timeout, migrations applied).

    ``create`` allows making a new file; otherwise a missing file raises DatabaseError, so that a
    mistyped ``--store`` never leaves an empty database behind. Returns a connection in autocommit
    mode: writes go through ``transaction``.
    """
    path = Path(path)
    if not create and not path.is_file():
        # The store's folder is there (store.json was read): its index was removed or moved.
        # "init" would not help (it refuses a folder that is not empty) and must not be hinted.
        raise DatabaseError(f"{path}: the store's evidence database is missing", HINT_LOST)
    if create and not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DB_MODE)
        try:
            os.fchmod(fd, DB_MODE)  # past the umask
        finally:
            os.close(fd)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Before anything writes to the file (WAL mode writes its header): schema version 0 is a
        # file no init ever finished, emptied or swapped for another database. Building a fresh
        # schema in it would present an empty store (no clips, a new log) as if nothing had been
        # recorded.
        if not create and conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            raise DatabaseError(f"{path}: holds no evidence index (empty, or replaced by another database)",
                                HINT_LOST)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed ingest survives power loss before the dock writes the receipt.
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn)
    except DatabaseError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        error = database_error(exc, "open")
        if type(error) is DatabaseError:
            error = DatabaseError(f"{path}: cannot open the evidence database ({exc})", HINT_LOST)
        raise error from None
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"database schema version {version} is newer than this program ({SCHEMA_VERSION})",
            "hint: upgrade bodycam before using this store",
        )
    if version == SCHEMA_VERSION:
        return
    with transaction(conn):
        # Re-read under the lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, SCHEMA_VERSION):
            log.info("migrating the store database to schema version %d", number + 1)
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection | PgIndex) -> Iterator[sqlite3.Connection | PgIndex]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception, which is re-raised).

    A SQLite error anywhere (begin, body, commit) becomes DatabaseBusy, DatabaseReadOnly or
    DatabaseError (``database_error``), chained to the original for ``-v``. A central index
    (evidence_store.postgres) brings its own, which locks the log head instead.
    """
    if not isinstance(conn, sqlite3.Connection):
        with conn.transaction():
            yield conn
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise database_error(exc, "write") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        _rollback(conn)
        raise database_error(exc, "write") from exc
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise database_error(exc, "write") from exc


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection | PgIndex) -> Iterator[sqlite3.Connection | PgIndex]:
    """A read transaction: every query inside sees the same state (verify, export, report)."""
    if not isinstance(conn, sqlite3.Connection):
        with conn.snapshot():
            yield conn
        return
    try:
        conn.execute("BEGIN")
    except sqlite3.Error as exc:
        raise database_error(exc, "read") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise database_error(exc, "read") from exc
    finally:
        _rollback(conn)


@contextlib.contextmanager
def reader(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection of its own to the database file (a verify worker's)."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise database_error(exc, "read") from exc
    try:
        conn.execute("PRAGMA query_only = 1")
        yield conn
    except sqlite3.Error as exc:
        raise database_error(exc, "read") from exc
    finally:
        conn.close()
