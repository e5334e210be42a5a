"""The store's index and event log in PostgreSQL (psycopg 3): the central backend.

A municipal data centre runs one store that several docks, the expiry timer and the officers write
at once, from different machines; SQLite cannot be shared that way, PostgreSQL can. The store
folder still holds the keys and ``store.json``; ``store.json`` names the database by a libpq URL
*without* a password. Credentials come the way every libpq program takes them (a password file,
``PGPASSFILE``, a service file, ``PGSERVICE``, the environment), never from a command line, and
are never written into the store folder.

Every PostgreSQL statement of the store is in this module: the schema (with its version table),
the locking, and the one place where the store's portable statements are put into PostgreSQL's
form (``_pg_sql``).

Concurrency: every writing command starts its transaction by locking the log head row
(``SELECT ... FOR UPDATE``). That serializes appends across all machines, exactly like SQLite's
``BEGIN IMMEDIATE`` on one machine: the log size is read *after* the lock, so two writers can
never both compute leaf N, and the checkpoint signed before COMMIT covers precisely the leaves
that commit with it. Transactions are READ COMMITTED, so each statement after the lock sees what
the previous holder committed. Readers (verify, export, report) take a REPEATABLE READ snapshot
and never wait for writers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from evidence_store.errors import EvidenceError, UsageError

log = logging.getLogger(__name__)

#: What ``--database`` accepts (libpq's URL forms).
URL_SCHEMES = ("postgresql://", "postgres://")
BACKEND = "postgresql"
#: A writer waits this long for the log head (another dock's ingest, an expiry run) before it
#: gives up with DatabaseBusy; the same budget as SQLite's busy timeout.
LOCK_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 10
SHOWN_URL_CHARS = 200  # of a --database URL in an error line
#: Rows fetched per round trip by a reader's server-side cursor (verify streams a million leaves
#: without holding them all in memory).
FETCH_ROWS = 20_000
#: From this many rows on, an INSERT of many rows streams through COPY.
COPY_MIN_ROWS = 64

# Each entry migrates the schema from version i to i + 1 (the ``bodycam_schema`` table). Never
# edit a released entry: add a new one. The tables and columns are those of the SQLite index
# (db.py) in the same order, so ``SELECT *`` reads the same tuples on both backends.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE bodycam_schema (version INTEGER NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE log_head (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
    INSERT INTO log_head (id, size) VALUES (1, 0);
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        profile TEXT NOT NULL,
        officer TEXT,
        revoked INTEGER NOT NULL DEFAULT 0,
        revoked_reason TEXT,
        enrolled_at TEXT NOT NULL,
        last_docking TEXT,
        last_sequence BIGINT,
        last_manifest_sha256 TEXT
    );
    CREATE TABLE objects (
        sha256 TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE TABLE clips (
        clip_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
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
        bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        plaintext_bytes BIGINT NOT NULL,
        plaintext_sha256 TEXT NOT NULL,
        duration_ms BIGINT NOT NULL,
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
    CREATE INDEX quarantine_journal ON quarantine (journal_sha256);
    CREATE TABLE quarantine_objects (
        qid TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        PRIMARY KEY (qid, name)
    );
    CREATE INDEX quarantine_objects_sha256 ON quarantine_objects (sha256);
    CREATE TABLE holds (
        hold_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        clip_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        case_text BIGINT NOT NULL,
        reason_text BIGINT NOT NULL,
        actor_text BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        event_index BIGINT NOT NULL,
        after_view INTEGER NOT NULL,
        released_at TEXT,
        release_event BIGINT
    );
    CREATE INDEX holds_clip ON holds (clip_id);
    CREATE TABLE texts (
        text_id BIGINT PRIMARY KEY,
        field TEXT NOT NULL,
        salt BYTEA,
        text TEXT,
        digest TEXT NOT NULL,
        clip_id TEXT,
        retain_until TEXT NOT NULL,
        erased_at TEXT
    );
    CREATE INDEX texts_retention ON texts (erased_at, retain_until);
    CREATE TABLE events (
        idx BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        clip_id TEXT,
        device_id TEXT,
        time TEXT NOT NULL,
        leaf BYTEA NOT NULL
    );
    CREATE INDEX events_subject ON events (subject, idx);
    CREATE INDEX events_clip ON events (clip_id, idx);
    CREATE INDEX events_kind_time ON events (kind, time);
    CREATE TABLE event_texts (
        idx BIGINT NOT NULL,
        field TEXT NOT NULL,
        text_id BIGINT NOT NULL,
        PRIMARY KEY (idx, field)
    );
    CREATE TABLE hashes (id BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
    CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note BYTEA NOT NULL, created_at TEXT NOT NULL);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_SCHEMA_EXISTS = "SELECT to_regclass('bodycam_schema') IS NOT NULL"
_SCHEMA_VERSION = "SELECT max(version) FROM bodycam_schema"
_SET_VERSION = "DELETE FROM bodycam_schema; INSERT INTO bodycam_schema (version) VALUES ({version})"
_ORIGIN = "SELECT value FROM meta WHERE key = 'origin'"
_SET_ORIGIN = "INSERT INTO meta (key, value) VALUES ('origin', %s)"
#: Two ``init``s or migrations against one database at once: the second waits, then sees the first's.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(7270917)"
#: Readers stream every row through server-side cursors (verify, export); PostgreSQL plans those
#: for the first tenth of the rows by default, which picked nested loops that took minutes over a
#: million-event log. Plan for all rows, as for any other query.
_READER_PLANS = "SET cursor_tuple_fraction = 1.0"
#: A verify worker reads its range of the log in log order through the primary keys (events,
#: event_texts, hashes). For the texts, a nested loop over two index scans returns the rows
#: already in that order; the planner's choice, a hash join over the whole texts table and a
#: sort, spilled both to disk at a million entries (24 s of the server's time instead of 4).
#: A JIT compile costs more than these plain scans save.
_SCAN_PLANS = ("SET enable_hashjoin = off", "SET enable_mergejoin = off", "SET jit = off")
_LOCK_HEAD = "SELECT size FROM log_head WHERE id = 1 FOR UPDATE"
_UPDATE_HEAD = "UPDATE log_head SET size = (SELECT COALESCE(MAX(idx) + 1, 0) FROM events) WHERE id = 1"
#: Tables whose key the database assigns: an INSERT returns it (sqlite3's ``lastrowid``).
_GENERATED_KEYS = {"holds": "hold_id"}

HINT_CREDENTIALS = ("hint: give the password the libpq way: a password file (~/.pgpass or PGPASSFILE), "
                    "a service file (PGSERVICEFILE) or PGPASSWORD; never in the URL or on the command line")
HINT_SERVER = "hint: check that the database server runs and that the URL's host and port reach it"
HINT_BUSY = "hint: another dock or command holds the log; try again"
HINT_HEAD = ("hint: run 'bodycam-evidence verify'; then the database's administrator restores the row: "
             "INSERT INTO log_head (id, size) VALUES (1, 0) (its size is recomputed at every write)")


def _database_error():
    from evidence_store.db import DatabaseBusy, DatabaseError, DatabaseReadOnly

    return DatabaseError, DatabaseBusy, DatabaseReadOnly


def is_url(text: str) -> bool:
    return text.startswith(URL_SCHEMES)


def check_url(url: str) -> str:
    """Return ``url`` if it is a libpq URL without a password. UsageError (one line with a hint)
    otherwise: a password in the URL would end up in ``store.json`` and in shell histories."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    if not is_url(url):
        raise UsageError(f"not a PostgreSQL URL: '{redacted(url)}'", "hint: --database postgresql://USER@HOST/DBNAME")
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"cannot parse the database URL ({_first_line(exc)})") from None
    # urlparse-style "user:secret@host" or "?password=": both are a password in clear.
    if params.get("password") is not None or re.match(r"^[a-z]+://[^/@]*:[^/@]*@", url):
        raise UsageError("the database URL contains a password; it would be written into store.json in clear",
                         HINT_CREDENTIALS)
    return url


def redacted(url: str) -> str:
    """The URL as messages show it. It never holds a password (check_url refused those), but it
    is typed text: a line break or a page of characters in it must not break the one-line error."""
    cut = url[:SHOWN_URL_CHARS]
    text = cut if cut.isprintable() else cut.encode("unicode_escape").decode("ascii")
    return text + ("..." if len(url) > SHOWN_URL_CHARS else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # libpq's messages are multi-line ('connection to server ... failed: FATAL: ...\n...').
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else text


def translate(exc: BaseException, doing: str, url: str) -> EvidenceError:
    """The one-line EvidenceError for a psycopg error (the CLI never shows a traceback)."""
    import psycopg
    from psycopg import errors as pgerrors

    DatabaseError, DatabaseBusy, DatabaseReadOnly = _database_error()
    text = _first_line(exc)
    low = text.lower()
    if isinstance(exc, (pgerrors.LockNotAvailable, pgerrors.QueryCanceled)):
        return DatabaseBusy(f"the evidence database is busy ({text})", HINT_BUSY)
    if isinstance(exc, (pgerrors.InsufficientPrivilege, pgerrors.ReadOnlySqlTransaction)):
        return DatabaseReadOnly(f"cannot {doing} the evidence database {redacted(url)}: {text}",
                                "hint: the store's database role needs the rights its init gave")
    if isinstance(exc, pgerrors.DiskFull):
        return DatabaseError(f"cannot {doing} the evidence database: the server's disk is full",
                             "hint: free space on the database server, then run the command again")
    if isinstance(exc, psycopg.OperationalError):
        if "password authentication failed" in low or "no password supplied" in low:
            return DatabaseError(f"cannot connect to {redacted(url)}: the server refused the credentials",
                                 HINT_CREDENTIALS)
        if "does not exist" in low and "database" in low:
            return DatabaseError(f"cannot connect to {redacted(url)}: no such database",
                                 "hint: the administrator creates it (createdb) before 'init --database'")
        if "connection" in low and ("refused" in low or "no such file" in low or "timeout" in low
                                    or "could not" in low or "failed" in low):
            return DatabaseError(f"cannot reach the database server of {redacted(url)} ({text})", HINT_SERVER)
        return DatabaseError(f"cannot {doing} the evidence database {redacted(url)} ({text})")
    return DatabaseError(f"cannot {doing} the evidence database ({text})")


class _Cursor:
    """What the store's code reads from an ``execute``: iteration, fetchone, fetchall, lastrowid
    (the sqlite3 cursor's surface, so the store's statements run unchanged on either backend)."""

    def __init__(self, cursor, index: PgIndex, lastrowid: int | None = None):
        self._cursor = cursor
        self._index = index
        self.lastrowid = lastrowid
        self.rowcount = cursor.rowcount

    def _guard(self, fetch):
        import psycopg

        try:
            return fetch()
        except psycopg.Error as exc:
            raise translate(exc, "read", self._index.url) from exc

    def fetchone(self):
        return self._guard(self._cursor.fetchone)

    def fetchall(self):
        return self._guard(self._cursor.fetchall)

    def __iter__(self) -> Iterator:
        # Converted a batch at a time, not one fetchone per row: an expiry reads a million
        # leaves this way (and not all at once: libpq already holds them once).
        fetch = self._cursor.fetchmany
        while rows := self._guard(lambda: fetch(FETCH_ROWS)):
            yield from rows

    def __next__(self):
        row = self._guard(self._cursor.fetchone)
        if row is None:
            raise StopIteration
        return row


_PLACEHOLDER = re.compile(r"\?")
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO", re.IGNORECASE)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


def _pg_sql(sql: str) -> tuple[str, str | None]:
    """The store's portable statement in PostgreSQL's form, and the generated key it returns.

    The store writes SQL that both engines share but for three spellings: ``?`` placeholders
    (psycopg: ``%s``), SQLite's ``INSERT OR IGNORE`` (``ON CONFLICT DO NOTHING``) and the
    ``lastrowid`` of an insert into a table with a generated key (``RETURNING``)."""
    if sql.lstrip().upper().startswith("PRAGMA"):
        raise RuntimeError(f"a SQLite-only statement reached PostgreSQL: {sql}")
    out = _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))
    key = None
    if _OR_IGNORE.match(out):
        out = _OR_IGNORE.sub("INSERT INTO", out, count=1) + " ON CONFLICT DO NOTHING"
    match = _INSERT_INTO.match(out)
    if match and match.group(1) in _GENERATED_KEYS and "RETURNING" not in out.upper():
        key = _GENERATED_KEYS[match.group(1)]
        out += f" RETURNING {key}"
    return out, key


_PLAIN_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*(\([\w\s,]*\))?\s*VALUES\s*\(\s*%s(?:\s*,\s*%s)*\s*\)\s*$",
                           re.IGNORECASE)


def _copy_sql(pg_sql: str) -> str | None:
    """``COPY table (columns) FROM STDIN`` for a plain ``INSERT ... VALUES (%s, ...)`` (no
    conflict clause, no RETURNING, no expressions), else None."""
    match = _PLAIN_INSERT.match(pg_sql)
    if match is None:
        return None
    return f"COPY {match.group(1)} {match.group(2) or ''} FROM STDIN"


def _params(params: Iterable[Any]) -> tuple:
    # SQLite stores Python's bools as 0/1 in INTEGER columns; PostgreSQL types them as boolean.
    row = tuple(params)
    if bool not in map(type, row):  # the common case, at C speed: an append copies 100,000s of rows
        return row
    return tuple(int(p) if isinstance(p, bool) else p for p in row)


class PgIndex:
    """One connection to the store's PostgreSQL database, with the sqlite3 connection's surface
    (``execute``, ``executemany``) plus ``transaction()`` and ``snapshot()`` (see db.py, which
    dispatches to these).

    Open with ``connect``. The connection is in autocommit mode: writes go through
    ``transaction()``, consistent reads through ``snapshot()``.
    """

    backend = BACKEND

    def __init__(self, raw, url: str):
        self._raw = raw
        self.url = url
        self._translated: dict[str, tuple[str, str | None]] = {}
        self._reading = False  # inside snapshot(): SELECTs stream through server-side cursors
        self._server_cursors: list = []
        self._names = itertools.count()

    # -- the sqlite3-like surface ------------------------------------------------------------

    def _sql(self, sql: str) -> tuple[str, str | None]:
        found = self._translated.get(sql)
        if found is None:
            found = self._translated[sql] = _pg_sql(sql)
        return found

    def execute(self, sql: str, params: Iterable[Any] = ()) -> _Cursor:
        import psycopg

        text, key = self._sql(sql)
        try:
            if self._reading and text.lstrip()[:6].upper() == "SELECT":
                cursor = self._raw.cursor(name=f"bodycam_{next(self._names)}", binary=True)
                cursor.itersize = FETCH_ROWS
                self._server_cursors.append(cursor)
                cursor.execute(text, _params(params))
                return _ServerCursor(cursor, self)
            cursor = self._raw.execute(text, _params(params))
            lastrowid = None
            if key is not None:
                row = cursor.fetchone()
                lastrowid = row[0] if row else None
            return _Cursor(cursor, self, lastrowid)
        except psycopg.Error as exc:
            raise translate(exc, "use", self.url) from exc

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Many rows of one statement. A plain INSERT of many rows (an append of a thousand
        events: leaves, texts, stored hashes) goes through COPY, one stream instead of a round
        trip per row: the difference between 2,000 and 10,000 events/s."""
        import psycopg

        text, _ = self._sql(sql)
        batch = [_params(r) for r in rows]
        if not batch:
            return
        try:
            with self._raw.cursor() as cursor:
                copy = _copy_sql(text) if len(batch) >= COPY_MIN_ROWS else None
                if copy is None:
                    cursor.executemany(text, batch)
                    return
                with cursor.copy(copy) as stream:
                    for row in batch:
                        stream.write_row(row)
        except psycopg.Error as exc:
            raise translate(exc, "write", self.url) from exc

    def close(self) -> None:
        self._raw.close()

    # -- transactions ------------------------------------------------------------------------

    def _run(self, sql: str, doing: str) -> Any:
        import psycopg

        try:
            return self._raw.execute(sql)
        except psycopg.Error as exc:
            raise translate(exc, doing, self.url) from exc

    def _rollback(self) -> None:
        import psycopg

        try:
            self._raw.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection is gone: the server rolled back on its own
        # After the ROLLBACK, which closed them on the server: psycopg then sends no CLOSE (a
        # round trip per query of a verify, most of its time on a small store).
        self._close_server_cursors()

    def _close_server_cursors(self) -> None:
        import psycopg

        for cursor in self._server_cursors:
            try:
                cursor.close()
            except psycopg.Error:
                pass
        self._server_cursors.clear()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PgIndex]:
        """A writing transaction that holds the log head: BEGIN, lock the head row, body, update
        the head's size, COMMIT (ROLLBACK on any exception, which is re-raised)."""
        self._run("BEGIN ISOLATION LEVEL READ COMMITTED", "write")
        try:
            self._run(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}", "write")
            if self._run(_LOCK_HEAD, "write").fetchone() is None:
                # Without its row nothing serializes the appends of several machines: refuse.
                DatabaseError, _, _ = _database_error()
                raise DatabaseError(f"{redacted(self.url)}: the log head row is missing (log_head, the lock "
                                    "that serializes writers); the database was edited outside the store",
                                    HINT_HEAD)
            yield self
            self._run(_UPDATE_HEAD, "write")
        except BaseException:
            self._rollback()
            raise
        try:
            self._run("COMMIT", "write")
        except BaseException:
            self._rollback()
            raise

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[PgIndex]:
        """A read transaction: every query inside sees the same committed state; SELECTs stream."""
        self._run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "read")
        self._reading = True
        try:
            yield self
        finally:
            self._reading = False
            self._rollback()

    def export_snapshot(self) -> str:
        """Inside ``snapshot()``: an id with which other connections see exactly this snapshot
        (verify's worker processes, each scanning a range of the log)."""
        return self._run("SELECT pg_export_snapshot()", "read").fetchone()[0]

    # -- schema ------------------------------------------------------------------------------

    def _schema_version(self) -> int | None:
        if not self._run(_SCHEMA_EXISTS, "open").fetchone()[0]:
            return None
        return self._run(_SCHEMA_VERSION, "open").fetchone()[0] or 0

    def _create(self, origin: str) -> None:
        DatabaseError, _, _ = _database_error()
        self._run("BEGIN", "create")
        try:
            self._run(_SCHEMA_LOCK, "create")
            if self._schema_version() is not None:
                theirs = self._run(_ORIGIN, "open").fetchone()
                raise UsageError(f"{redacted(self.url)} already holds an evidence store"
                                 + (f" (log {theirs[0]})" if theirs else ""),
                                 "hint: each store gets its own, empty database")
            self._apply(0)
            self._raw.execute(_SET_ORIGIN, (origin,))
        except BaseException:
            self._rollback()
            raise
        self._run("COMMIT", "create")
        if self._schema_version() != SCHEMA_VERSION:
            raise DatabaseError(f"{redacted(self.url)}: the schema was not created")

    def _apply(self, version: int) -> None:
        for number in range(version, SCHEMA_VERSION):
            log.info("migrating the store database to schema version %d", number + 1)
            self._run(MIGRATIONS[number], "migrate")
        self._run(_SET_VERSION.format(version=int(SCHEMA_VERSION)), "migrate")

    def _open(self, origin: str) -> None:
        DatabaseError, _, _ = _database_error()
        version = self._schema_version()
        if version is None:
            raise DatabaseError(f"{redacted(self.url)} holds no evidence store",
                                "hint: is store.json's database the right one? 'init --database' creates one")
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"database schema version {version} is newer than this program ({SCHEMA_VERSION})",
                "hint: upgrade bodycam before using this store")
        theirs = self._run(_ORIGIN, "open").fetchone()
        if theirs is None or theirs[0] != origin:
            raise DatabaseError(
                f"{redacted(self.url)} holds another store's log ({theirs[0] if theirs else 'none'}), "
                f"not this one's ({origin})",
                "hint: check the database named in store.json; a store and its database belong together")
        if version < SCHEMA_VERSION:
            self._run("BEGIN", "migrate")
            try:
                self._run(_SCHEMA_LOCK, "migrate")
                self._apply(self._schema_version() or 0)
            except BaseException:
                self._rollback()
                raise
            self._run("COMMIT", "migrate")


class _ServerCursor(_Cursor):
    """A reader's streaming cursor (inside ``snapshot()``): rows arrive FETCH_ROWS at a time."""

    def __init__(self, cursor, index: PgIndex):
        super().__init__(cursor, index)
        # A batch at a time, iterated as a list: psycopg's per-row iteration costs more than the
        # verify's own work per leaf.
        self._rows = itertools.chain.from_iterable(self._batches(cursor))

    @staticmethod
    def _batches(cursor) -> Iterator[list]:
        while True:
            batch = cursor.fetchmany(FETCH_ROWS)
            if batch:
                yield batch
            if len(batch) < FETCH_ROWS:  # the last one: no round trip to learn that nothing follows
                return

    def __iter__(self) -> Iterator:
        # A generator, not a __next__ method per row: three million rows are a verify's reading.
        import psycopg

        try:
            yield from self._rows
        except psycopg.Error as exc:
            raise translate(exc, "read", self._index.url) from exc

    def __next__(self):
        import psycopg

        try:
            return next(self._rows)
        except psycopg.Error as exc:
            raise translate(exc, "read", self._index.url) from exc


def _session(url: str, application: str) -> PgIndex:
    """An autocommit session on the database at ``url`` (checked first). Raises UsageError or
    DatabaseError, one line each."""
    try:
        import psycopg
    except ImportError:
        raise UsageError("this store's index is in PostgreSQL, and psycopg is not installed",
                         "hint: pip install 'bodycam[central]'") from None
    check_url(url)
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name=application)
    except psycopg.Error as exc:
        raise translate(exc, "connect to", url) from None
    return PgIndex(raw, url)


def connect(url: str, *, origin: str, create: bool = False) -> PgIndex:
    """Connect to the store database at ``url`` (a libpq URL without password).

    ``create``: the database must hold no store; the schema is created and tagged with
    ``origin``. Otherwise the database must hold the store whose log is ``origin`` at a schema
    version this program knows (older ones are migrated). Raises UsageError or DatabaseError, one
    line each, having changed nothing.
    """
    index = _session(url, "bodycam-evidence")
    try:
        index._run(_READER_PLANS, "connect to")
        if create:
            index._create(origin)
        else:
            index._open(origin)
    except BaseException:
        index.close()
        raise
    return index


@contextlib.contextmanager
def snapshot_reader(url: str, snapshot_id: str) -> Iterator[PgIndex]:
    """A new connection that reads the snapshot ``snapshot_id`` (export_snapshot) of another
    one: the worker processes of a verify all see the one state the parent checks."""
    import psycopg

    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                              application_name="bodycam-evidence verify")
    except psycopg.Error as exc:
        raise translate(exc, "connect to", url) from None
    index = PgIndex(raw, url)
    try:
        for setting in (_READER_PLANS, *_SCAN_PLANS):
            index._run(setting, "read")
        index._run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "read")
        from psycopg import sql

        index._raw.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
        index._reading = True
        yield index
    finally:
        index._reading = False
        index._rollback()
        index.close()


# -- migration of a local store (evidence_store.migrate) -----------------------------------------

#: ``meta`` rows this module writes itself at create (not copied from a local store).
OWN_META_KEYS = ("origin",)
_COLUMNS = ("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s ORDER BY ordinal_position")


def stored_origin(url: str) -> tuple[bool, str | None]:
    """(whether the database at ``url`` holds a store's schema, that store's log origin),
    looked at without changing anything. Raises DatabaseError or UsageError, one line each."""
    index = _session(url, "bodycam-evidence migrate")
    try:
        if index._schema_version() is None:
            return False, None
        row = index._run(_ORIGIN, "open").fetchone()
        return True, None if row is None else row[0]
    finally:
        index.close()


def table_columns(index: PgIndex, table: str) -> list[str]:
    """The columns of ``table`` in the store's database, in order ([] if there is no such table)."""
    import psycopg

    try:
        return [name for (name,) in index._raw.execute(_COLUMNS, (table,))]
    except psycopg.Error as exc:
        raise translate(exc, "read", index.url) from exc


@contextlib.contextmanager
def streaming(index: PgIndex) -> Iterator[PgIndex]:
    """Inside a writing transaction, let SELECTs stream through server-side cursors, as a
    reader's do (a migration reads back a million copied rows without holding them at once)."""
    index._reading = True
    try:
        yield index
    finally:
        index._reading = False
        index._close_server_cursors()


def restart_generated_keys(index: PgIndex) -> None:
    """After rows were copied in with their keys: let each generated key continue after the
    largest copied one (else the next hold would be given hold_id 1 again)."""
    import psycopg
    from psycopg import sql

    for table, column in _GENERATED_KEYS.items():
        statement = sql.SQL("SELECT setval(pg_get_serial_sequence({t}, {c}), "
                            "COALESCE((SELECT MAX({ci}) FROM {ti}), 0) + 1, false)").format(
            t=sql.Literal(table), c=sql.Literal(column), ci=sql.Identifier(column), ti=sql.Identifier(table))
        try:
            index._raw.execute(statement)
        except psycopg.Error as exc:
            raise translate(exc, "write", index.url) from exc
