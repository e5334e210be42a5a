"""The tamper suite: every column of every table of the store's database edited in turn, rows
deleted and inserted; ``verify`` must name each edit that matters, and ``expire`` must never
delete a held or not-yet-due clip (or quarantined item) after any of them.

It runs on both backends: the local SQLite file (``evidence.db``) and the central PostgreSQL
database named in ``store.json``. An ``Insider`` per backend is someone with the database's rights
editing it directly, around the store: tables and columns are read from the database itself
(sqlite_master and PRAGMA table_info; information_schema), rows are addressed by SQLite's rowid or
PostgreSQL's ctid, so a column added later is tampered with too, and fails here until it is
checked or listed in NOT_CHECKED with the reason it cannot change what the store does. Both
backends have the same tables and columns (a test checks it) and share one NOT_CHECKED.

Every edit is made on a fresh copy of one template store: its folder copied, and on PostgreSQL the
rows of its database put back from a copy kept in a side schema, under the database name that
store.json names (store.json's hash is in the log: a copy naming another database would be a
config fault, so only one copy of a central template is live at a time).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from evidence_store import verify as v
from evidence_store.cli import main
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.db import DB_FILE
from evidence_store.errors import EvidenceError
from evidence_store.index import DATABASE_KEY
from evidence_store.objects import open_objects
from evidence_store.store import CHECKPOINT_FILE, RECIPIENTS_FILE, Store
from evidence_store.verify import verify_store
from tests.clipfactory import DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, T0, TEST_LOG_N, FakeClock, put_and_ingest

#: Columns an edit of which changes nothing the store decides, shows as evidence or proves; each
#: with the reason. Everything else must be named by verify when edited. One list for both backends.
NOT_CHECKED = {
    ("objects", "size"): "never read: object sizes come from the manifest and the ingest event",
    ("objects", "kind"): "never read: a label for people looking at the table by hand",
    ("objects", "created_at"): "never read: an orphan's age is its file's time, a clip's its ingest event",
    ("checkpoints", "created_at"): "never read: the signed note carries everything that is checked",
    ("devices", "last_docking"): "checked against the docking events where the camera has any (ingest "
                                 "refuses a differing row, verify names it); a camera with none has no "
                                 "bound, and the row is only what 'status' shows",
    ("holds", "hold_id"): "a row key only: holds are matched to the log by event_index",
    ("texts", "text_id"): "a row key only: the link from event_texts is checked through the salted digest",
    ("texts", "erased_at"): "checked only as 'erased before two years'; moving it on a kept text changes nothing",
    ("event_texts", "text_id"): "the linked text must hash to the leaf's salted digest: a wrong link is named, "
                                "unless both texts are erased, when nothing is left to show",
    ("clips", "ended_at"): "never read (written at ingest only); the signed manifest holds the value",
    ("clips", "homes"): "never read (written at ingest only); the signed manifest holds the value",
    ("segments", "plaintext_bytes"): "checked against the signed manifest when its clip is live; display only",
    ("segments", "plaintext_sha256"): "checked against the signed manifest when its clip is live",
    ("segments", "duration_ms"): "display only (show); the signed manifest has the true value",
    ("segments", "cut"): "display only (show); the status column, checked against the log, is what counts",
}
#: Row deletions and insertions that change nothing (with the reason).
ROWS_NOT_CHECKED = {
    "checkpoints": "an older checkpoint row: the latest one and the checkpoint file are what the log is "
                   "checked against (deleting the latest is named)",
    "meta": "no row is read but PostgreSQL's 'origin' (checked at open: the database of another store is "
            "refused); a row added beside it changes nothing",
}
#: Each engine's own bookkeeping, not the store's data, so not in the common suite (tested below):
#: PostgreSQL's schema version row (SQLite's is PRAGMA user_version) and its log head row, the
#: lock that serializes appends across machines (SQLite's is BEGIN IMMEDIATE on the file).
ENGINE_TABLES = {"sqlite": (), "postgresql": ("bodycam_schema", "log_head")}


def central_only(function):
    """Mark a test about the central backend's own tables: it runs with PostgreSQL only."""
    function.backends = ("postgresql",)
    return function


# -- the insider: direct access to the database, around the store ---------------------------------


class Insider:
    """Someone with the rights of the store's database editing it directly (not through the
    store): the SQLite file in the folder, or the PostgreSQL database that store.json names.
    Statements are written once, with ``?`` or ``:name`` placeholders, in SQL both engines accept.
    A row is addressed by an identity that survives copying the database (rowid, primary key)."""

    def __init__(self, root: Path):
        self.root = root
        self.backend = "sqlite"
        self.conn = sqlite3.connect(root / DB_FILE, isolation_level=None)
        self.integrity_error: type[Exception] | tuple[type[Exception], ...] = sqlite3.IntegrityError

    @staticmethod
    def of(root: Path) -> Insider:
        config = json.loads((root / "store.json").read_text())
        return CentralInsider(root, config[DATABASE_KEY]) if config.get(DATABASE_KEY) else Insider(root)

    def __enter__(self) -> Insider:
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def _sql(self, sql: str) -> str:
        return sql

    def execute(self, sql: str, params=()) -> list[tuple]:
        cursor = self.conn.execute(self._sql(sql), params)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows) -> None:
        self.conn.executemany(self._sql(sql), list(rows))

    # -- the schema, read from the database itself --

    def all_tables(self) -> list[str]:
        return [n for (n,) in self.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    def store_tables(self) -> list[str]:
        return [t for t in self.all_tables() if t not in ENGINE_TABLES[self.backend]]

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.execute(f"PRAGMA table_info({table})")]

    def not_null(self, table: str) -> set[str]:
        """Columns that cannot hold NULL (a primary key's included: SQLite lets a non-integer key
        be NULL, which no row of the store ever is)."""
        return {row[1] for row in self.execute(f"PRAGMA table_info({table})") if row[3] or row[5]}

    def key(self, table: str) -> list[str]:
        """The primary key's columns in key order (empty: the table has none)."""
        info = sorted((row[5], row[1]) for row in self.execute(f"PRAGMA table_info({table})") if row[5])
        return [name for _, name in info]

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def indexes(self) -> set[tuple[str, str]]:
        """(table, index) of the indexes the schema creates (not those behind keys)."""
        return set(self.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' "
                                "AND name NOT LIKE 'sqlite_autoindex_%'"))

    # -- rows --

    def identity(self, table: str) -> list[str]:
        """The columns that address one row: SQLite's rowid (copying the file keeps it)."""
        return ["rowid"]

    def _where(self, table: str) -> str:
        return " AND ".join(f"{c} = ?" for c in self.identity(table))

    def rows(self, table: str) -> list[tuple]:
        """(identity, *columns) of every row, in primary-key order: the same order on both
        backends. The identity is a tuple (see ``identity``)."""
        ident, columns = self.identity(table), self.columns(table)
        order = ", ".join(self.key(table)) or ", ".join(ident)
        n = len(ident)
        return [(tuple(r[:n]), *r[n:])
                for r in self.execute(f"SELECT {', '.join(ident + columns)} FROM {table} ORDER BY {order}")]

    def value(self, table: str, column: str, rid: tuple):
        (value,) = self.execute(f"SELECT {column} FROM {table} WHERE {self._where(table)}", rid)[0]
        return value

    def update(self, table: str, column: str, rid: tuple, new) -> bool:
        """Set one cell; False if the database's own constraints refuse the value."""
        try:
            self.execute(f"UPDATE {table} SET {column} = ? WHERE {self._where(table)}", (new, *rid))
            return True
        except self.integrity_error:
            return False

    def delete(self, table: str, rid: tuple) -> None:
        self.execute(f"DELETE FROM {table} WHERE {self._where(table)}", rid)

    def insert(self, table: str, columns: list[str], values: list) -> None:
        self.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)


class CentralInsider(Insider):
    """The insider of a central store: psycopg on the database that store.json names, with the
    password from PGPASSFILE like every other client (autocommit: each edit lands at once)."""

    def __init__(self, root: Path, url: str):
        import psycopg

        self.root = root
        self.backend = "postgresql"
        self.conn = psycopg.connect(url, autocommit=True)
        # A value of the wrong type is refused too (SQLite's columns take any type).
        self.integrity_error = (psycopg.IntegrityError, psycopg.DataError)

    def _sql(self, sql: str) -> str:
        sql = sql.replace("%", "%%")
        return re.sub(r"(?<!:):([a-z_]+)\b", r"%(\1)s", sql).replace("?", "%s")

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(self._sql(sql), list(rows))

    def all_tables(self) -> list[str]:
        return [n for (n,) in self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")]

    def columns(self, table: str) -> list[str]:
        return [n for (n,) in self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? ORDER BY ordinal_position", (table,))]

    def not_null(self, table: str) -> set[str]:
        return {n for (n,) in self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? AND is_nullable = 'NO'", (table,))}

    def key(self, table: str) -> list[str]:
        return [n for (n,) in self.execute(
            "SELECT k.column_name FROM information_schema.table_constraints c "
            "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
            "WHERE c.table_schema = current_schema() AND c.table_name = ? AND c.constraint_type = 'PRIMARY KEY' "
            "ORDER BY k.ordinal_position", (table,))]

    def set_schema_version(self, version: int) -> None:
        self.execute("UPDATE bodycam_schema SET version = ?", (version,))

    def indexes(self) -> set[tuple[str, str]]:
        return set(self.execute(
            "SELECT i.tablename, i.indexname FROM pg_indexes i WHERE i.schemaname = current_schema() "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"))

    def identity(self, table: str) -> list[str]:
        """The primary key (every table of the store has one; a ctid would change on restore)."""
        key = self.key(table)
        assert key, f"{table} has no primary key"
        return key


# -- the store every test tampers with a copy of ---------------------------------------------------


#: The side schema of a central template's database that keeps its rows for the copies.
SAVED = "tamper_template"


@dataclass
class Template:
    """A store with every kind of row (see ``_build``), kept unchanged; ``copy`` makes a fresh
    copy of it to tamper with. On PostgreSQL the copy's database has the template's name (only one
    copy is live at a time: each ``copy`` replaces the previous one's database)."""

    root: Path
    now: datetime
    items: dict[str, str]
    objects: dict[str, set[str]]
    server: object = None  # tests.servers.postgres.PostgresServer of a central store
    _restore: str = ""

    def _central(self):
        import psycopg

        return psycopg.connect(json.loads((self.root / "store.json").read_text())[DATABASE_KEY], autocommit=True)

    def save(self) -> None:
        """Keep the central database's rows (and sequence values) in a side schema of the same
        database, which neither the store (it names no schema) nor the Insider (current_schema()
        only) sees. Restoring from it costs one round trip; a CREATE DATABASE ... TEMPLATE per
        copy took half a second, minutes over the column suite."""
        if self.server is None:
            return
        with self._central() as conn, conn.transaction():
            tables = [t for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_type = 'BASE TABLE'")]
            sequences = conn.execute("SELECT sequencename, last_value FROM pg_sequences "
                                     "WHERE schemaname = current_schema()").fetchall()
            conn.execute(f"CREATE SCHEMA {SAVED}")
            for table in tables:
                conn.execute(f"CREATE TABLE {SAVED}.{table} AS SELECT * FROM {table}")
        # Every table emptied, then refilled; sequences set back (the next hold_id as in the template).
        self._restore = "BEGIN;" + "".join(f"DELETE FROM {t};" for t in tables) + "".join(
            f"INSERT INTO {t} SELECT * FROM {SAVED}.{t};" for t in tables) + "".join(
            f"SELECT setval('{name}', {value or 1}, {value is not None});" for name, value in sequences) + "COMMIT;"

    def copy(self, target: Path) -> Path:
        shutil.copytree(self.root, target, symlinks=True)
        if self.server is not None:
            self.restore_database(target)
        return target

    def restore_database(self, target: Path) -> None:
        """Put the template's database back under the copy in ``target``, as an insider restoring
        a backup would: the SQLite file copied over (its WAL removed), or the central database's
        rows replaced (what a data-only pg_dump fed to psql does, in one round trip)."""
        if self.server is None:
            for leftover in (target / f"{DB_FILE}-wal", target / f"{DB_FILE}-shm"):
                leftover.unlink(missing_ok=True)
            shutil.copyfile(self.root / DB_FILE, target / DB_FILE)
            return
        with self._central() as conn:
            conn.execute(self._restore)


def _build(base: Path, server) -> Template:
    """Two cameras (one revoked), an assigned officer, an expired clip, a held emergency clip
    (viewed, justified), a released clip, a due clip, a quarantined item due and one not due, and
    a clip recorded an hour ago."""
    clock = FakeClock(T0)
    store = Store.init(base / "store", PASSPHRASE, scrypt_log_n=TEST_LOG_N, clock=clock, actor="admin")
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    store.assign(cam.device_id, "PK-4711")
    lost = DeviceFixture.new("cam-09")
    store.enroll(lost.device_id, lost.public_key)
    store.revoke(lost.device_id, "lost on patrol")
    outbox = base / "outbox"

    def clip(**kw):
        c = make_clip(outbox, cam, store.recipients, started_at=clock.now() - timedelta(hours=1), **kw)
        put_and_ingest(store, c)
        return c

    def quarantine(reason):
        c = make_clip(base / "q", cam, store.recipients, started_at=clock.now() - timedelta(hours=1), advance=False)
        refs = {n: store.put_object(io.BytesIO(d), len(d)) for n, d in c.segments.items()}
        return store.quarantine(reason=reason, device_id=cam.device_id, clip_id=c.clip_id,
                                manifest_bytes=c.manifest_bytes, journal_bytes=c.journal_bytes, objects=refs)

    expired = clip()
    clock.advance(days=15)
    assert [d.item_id for d in store.expire().deleted] == [expired.clip_id]
    held = clip(trigger="emergency")
    store.log_access("view", held.clip_id, reason="review")
    store.hold(held.clip_id, case="AZ-1", reason="evidence")
    store.justify(held.clip_id, reason="attacked, no time to announce")
    released = clip()
    store.hold(released.clip_id, case="AZ-2", reason="complaint")
    store.release(released.clip_id, case="AZ-2", reason="complaint withdrawn")
    due = clip()
    q_due = quarantine("forged signature")
    clock.advance(days=14)
    recent = clip()
    q_recent = quarantine("unknown device")
    assert verify_store(store) == []
    items = {"held": held.clip_id, "recent": recent.clip_id, "q_recent": q_recent,
             "released": released.clip_id, "due": due.clip_id, "q_due": q_due, "expired": expired.clip_id}
    objects = {name: _objects(store, item) for name, item in items.items()}
    store.close()
    template = Template(base / "store", clock.now(), items, objects, server)
    template.save()
    return template


@pytest.fixture(scope="module")
def _templates():
    """One template per backend, built on first use (the backend fixture is per test)."""
    return {}


@pytest.fixture
def template(backend, _templates, tmp_path_factory, request) -> Template:
    if backend not in _templates:
        server = request.getfixturevalue("postgres_server") if backend == "postgresql" else None
        _templates[backend] = _build(tmp_path_factory.mktemp(f"tamper-{backend}"), server)
    return _templates[backend]


def _objects(store, item: str) -> set[str]:
    info = store.clip(item)
    return {s["sha256"] for s in store.segments(item)} | {h for h in (info.manifest_sha256, info.journal_sha256) if h}


PROTECTED = ("held", "recent", "q_recent")


@pytest.fixture
def copy(template, tmp_path):
    """A fresh copy of the template store: (folder, now, items, objects)."""
    target = template.copy(tmp_path / "store")
    return target, template.now, template.items, template.objects


def _open(root: Path, now: datetime) -> Store:
    return Store.open(root, clock=FakeClock(now), actor="expiry")


def _check_after(root: Path, now: datetime, objects: dict) -> tuple[list, list[str]]:
    """verify's faults, then run expire and check that nothing protected was deleted. Returns
    (faults, expire's faults or its error). A store that refuses to open the database (the
    central database's origin row edited: it belongs to another store) names that and acts on
    nothing."""
    try:
        store = _open(root, now)
    except EvidenceError as exc:
        store_objects = open_objects(root, json.loads((root / "store.json").read_text()))
        for name in PROTECTED:
            assert all(store_objects.exists(h) for h in objects[name]), name
        return [str(exc)], [str(exc)]
    with store:
        faults = verify_store(store)
        try:
            result = store.expire()
            expire_faults = result.faults
        except EvidenceError as exc:  # refusing to act on the log at all is safe
            expire_faults = [str(exc)]
        for name in PROTECTED:
            lost = [h for h in objects[name] if not store.objects.exists(h)]
            assert not lost, f"expire deleted objects of the {name} item"
    return faults, expire_faults


# -- choosing what to edit --------------------------------------------------------------------------


def _rowids(rows: list[tuple], items: dict) -> list:
    """Identities of every row of small tables; of larger ones the first, the last and those
    naming a held or not-yet-due item (the rows an attacker would edit). Keeps the suite under a
    minute."""
    if len(rows) <= 4:
        return [r[0] for r in rows]
    ids = {items[name] for name in PROTECTED}
    naming = [r[0] for r in rows if ids & {c for c in r[1:] if isinstance(c, str)}]
    return list(dict.fromkeys([rows[0][0], *naming[:3], rows[-1][0]]))


def _tweak(value, others: list):
    """A plausible different value: a time 30 days earlier (makes things look due), another
    row's value, a flipped flag, a changed byte."""
    if isinstance(value, str):
        try:
            return format_time(parse_time(value) - timedelta(days=30))
        except ValueError:
            pass
        other = next((o for o in others if o != value and isinstance(o, str)), None)
        return other if other is not None else value + "x"
    if isinstance(value, bool | int):
        return 1 - value if value in (0, 1) else value - 1
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:] if value else b"x"
    if value is None:
        other = next((o for o in others if o is not None), None)
        return other if other is not None else "x"
    return value


def _cells(template: Template, scratch: Path) -> list[tuple[str, str, object]]:
    with Insider.of(template.copy(scratch)) as db:
        cells = [(t, c, r) for t in db.store_tables() for c in db.columns(t)
                 for r in _rowids(db.rows(t), template.items)]
    shutil.rmtree(scratch)
    return cells


def _edit(root: Path, table: str, column: str, rowid) -> bool:
    with Insider.of(root) as db:
        value = db.value(table, column, rowid)
        others = list(dict.fromkeys(row[1 + db.columns(table).index(column)] for row in db.rows(table)))
        for new in (_tweak(value, others), (value + "x") if isinstance(value, str) else None):
            if new is None or new == value:
                continue
            if db.update(table, column, rowid, new):
                return True
        return False


@central_only
def test_tamper_schemas_of_both_backends_agree(template, tmp_path):
    """The same tables, columns (in the same order), keys, NOT NULLs and indexes on SQLite and
    PostgreSQL, so one NOT_CHECKED serves both and an edit one engine refuses the other refuses too."""
    from evidence_store import db as local_db

    local_db.connect(tmp_path / DB_FILE, create=True).close()

    def schema(insider):
        return ({t: (insider.columns(t), insider.key(t), insider.not_null(t)) for t in insider.store_tables()},
                insider.indexes())

    with Insider(tmp_path) as local, Insider.of(template.copy(tmp_path / "store")) as mine:
        assert schema(mine) == schema(local)
        assert set(mine.all_tables()) - set(mine.store_tables()) == set(ENGINE_TABLES[mine.backend])


# -- the suite --------------------------------------------------------------------------------------


def test_tamper_every_column_named_by_verify_and_expire_keeps_protected(template, tmp_path):
    """One edit at a time (a fresh copy each): verify names it unless NOT_CHECKED says why it
    does not matter; expire deletes nothing held or not yet due."""
    silent: dict[tuple[str, str], list] = {}
    crashed: list = []
    edited = set()
    for n, (table, column, rowid) in enumerate(_cells(template, tmp_path / "scratch")):
        target = template.copy(tmp_path / f"s{n}")
        if not _edit(target, table, column, rowid):
            shutil.rmtree(target)
            continue
        edited.add((table, column))
        try:
            faults, _ = _check_after(target, template.now, template.objects)
        except Exception as exc:  # noqa: BLE001 - collected: every cell is reported at once
            crashed.append((table, column, rowid, repr(exc)[:200]))
            continue
        if not faults:
            silent.setdefault((table, column), []).append(rowid)
        shutil.rmtree(target)
    unnamed = {k: rows for k, rows in silent.items() if k not in NOT_CHECKED}
    assert crashed == [] and unnamed == {}, f"crashed: {crashed}\nedits verify did not name: {unnamed}"
    assert len(edited) > 60  # every table's columns were reached


def test_tamper_row_deleted_named_by_verify_and_expire_keeps_protected(template, tmp_path):
    with Insider.of(template.copy(tmp_path / "scratch")) as db:
        rows = [(t, r) for t in db.store_tables() for r in _rowids(db.rows(t), template.items)]
    silent = []
    for n, (table, rowid) in enumerate(rows):
        target = template.copy(tmp_path / f"d{n}")
        with Insider.of(target) as db:
            db.delete(table, rowid)
        faults, _ = _check_after(target, template.now, template.objects)
        if not faults and table not in ROWS_NOT_CHECKED:
            silent.append((table, rowid))
        shutil.rmtree(target)
    assert silent == [], f"row deletions verify did not name: {silent}"


def test_tamper_row_inserted_named_by_verify_and_expire_keeps_protected(template, tmp_path):
    """A copy of a row under a new key (a forged clip, hold, event, object row ...)."""
    with Insider.of(template.copy(tmp_path / "scratch")) as db:
        tables = [t for t in db.store_tables() if db.rows(t)]
    silent = []
    for n, table in enumerate(tables):
        target = template.copy(tmp_path / f"i{n}")
        with Insider.of(target) as db:
            cols = db.columns(table)
            row = db.rows(table)[-1][1:]
            # New keys: every text gets a suffix and every integer a large offset where that is unique.
            fresh = [(x + "-forged") if isinstance(x, str) and not x.endswith("Z") else
                     (x + 100_000) if isinstance(x, int) and x > 1 else x for x in row]
            db.insert(table, cols, fresh)
        faults, _ = _check_after(target, template.now, template.objects)
        if not faults and table not in ROWS_NOT_CHECKED:
            silent.append(table)
        shutil.rmtree(target)
    assert silent == [], f"row insertions verify did not name: {silent}"


# -- the cases of issue 13, by name -----------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "UPDATE clips SET ingested_at = '2026-10-01T00:00:00.000Z', started_at = '2026-10-01T00:00:00.000Z' "
    "WHERE clip_id = :recent",
    "UPDATE objects SET deleted_at = '2026-11-01T00:00:00.000Z' WHERE sha256 IN "
    "(SELECT sha256 FROM segments WHERE clip_id = :held)",
    "DELETE FROM holds WHERE clip_id = :held",
    "UPDATE holds SET released_at = '2026-11-20T00:00:00.000Z', release_event = 1 WHERE clip_id = :held",
    "UPDATE quarantine SET started_at = '2026-10-01T00:00:00.000Z', at = '2026-10-01T00:00:00.000Z' "
    "WHERE qid = :q_recent",
    "DELETE FROM objects WHERE sha256 IN (SELECT sha256 FROM segments WHERE clip_id = :recent)",
], ids=["clip-dates", "deleted_at", "hold-row-deleted", "hold-row-released", "quarantine-dates", "object-row"])
def test_tamper_issue_cases_expire_names_fault_exits_3_keeps_item(copy, sql, capsys, monkeypatch):
    root, now, items, objects = copy
    with Insider.of(root) as db:
        db.execute(sql, items)
    monkeypatch.setattr("evidence_store.store.facade.SystemClock", lambda: FakeClock(now + timedelta(minutes=1)))
    code = main(["--store", str(root), "expire"])
    out = capsys.readouterr().out
    with _open(root, now) as store:
        for name in PROTECTED:
            assert all(store.objects.exists(h) for h in objects[name]), name
        # the consistent ones still expire
        assert not any(store.objects.exists(h) for h in objects["due"])
    assert code == 3 and "FAULT " in out
    assert any(i in out for i in items.values()) or "FAULT object " in out


def test_tamper_revoked_device_row_reset_ingest_refused(copy, tmp_path):
    root, now, items, _ = copy
    with Insider.of(root) as db:
        db.execute("UPDATE devices SET revoked = 0 WHERE device_id = 'cam-09'")
    with _open(root, now) as store:
        assert any(f.kind == v.ROW_MISMATCH and "revoked" in f.message for f in verify_store(store))
        lost = DeviceFixture.new("cam-09")
        # the row says cam-09's key is whatever it was; a forged clip under that id is refused either way
        clip = make_clip(tmp_path / "o", lost, store.recipients, started_at=now - timedelta(minutes=5))
        with pytest.raises(EvidenceError):
            put_and_ingest(store, clip)


def test_tamper_last_sequence_row_lowered_ingest_refused(copy, tmp_path):
    root, now, items, _ = copy
    with Insider.of(root) as db:
        db.execute("UPDATE devices SET last_sequence = last_sequence - 1 WHERE device_id = 'cam-07'")
    with _open(root, now) as store:
        assert any("last_sequence" in f.message for f in verify_store(store))
        with pytest.raises(EvidenceError, match="differs from its events"):
            store._check_device_row(store.device("cam-07"), "clip x")


def test_tamper_all_checkpoints_deleted_named(copy):
    root, now, _, objects = copy
    with Insider.of(root) as db:
        db.execute("DELETE FROM checkpoints")
    with _open(root, now) as store:
        assert {v.LOG_UNSIGNED, v.CHECKPOINT_MISSING} <= {f.kind for f in verify_store(store)}
    (root / CHECKPOINT_FILE).unlink()  # and the file: nothing signed covers the log any more
    with _open(root, now) as store, pytest.raises(EvidenceError, match="not covered by a signed checkpoint"):
        store.expire()


def test_tamper_access_event_rewritten_tree_recomputed_caught_by_checkpoint_file(copy):
    """Without the signing key: rewrite a view event, recompute every stored hash, and remove the
    checkpoint rows the new tree no longer matches. Only the file outside the database notices."""
    from evidence_store import merkle

    root, now, _, _ = copy
    with Insider.of(root) as db:
        ((idx, leaf),) = db.execute("SELECT idx, leaf FROM events WHERE kind = 'view'")
        db.execute("UPDATE events SET leaf = ? WHERE idx = ?", (bytes(leaf).replace(b'"view"', b'"VIEW"'), idx))
        leaves = [bytes(x) for (x,) in db.execute("SELECT leaf FROM events ORDER BY idx")]
        _, hashes = merkle.stored_hashes_for_appends(0, [merkle.leaf_hash(x) for x in leaves])
        db.execute("DELETE FROM hashes")
        db.executemany("INSERT INTO hashes (id, hash) VALUES (?, ?)", enumerate(hashes))
        db.execute("DELETE FROM checkpoints WHERE size > ?", (idx,))
        db.execute("UPDATE events SET kind = 'VIEW' WHERE idx = ?", (idx,))
    with _open(root, now) as store:
        faults = verify_store(store)
        assert any(f.kind == v.LOG_REWRITTEN and f.where == CHECKPOINT_FILE for f in faults)
        with pytest.raises(EvidenceError, match="rewritten|removed|not covered"):
            store.expire()


def test_tamper_checkpoint_file_never_moves_back(copy):
    root, now, _, _ = copy
    with _open(root, now) as store:
        newest = store.checkpoint_file()
        oldest = store.log.checkpoints()[0][1]
        store._publish_checkpoint(oldest)
        assert store.checkpoint_file() == newest


def test_tamper_recipients_replaced_refused_by_enrollment_and_verify(copy):
    root, now, _, _ = copy
    from evidence_store.clip.age import Identity

    path = root / RECIPIENTS_FILE
    path.chmod(0o644)
    path.write_text(f"{Identity.generate().recipient}\n")  # an insider's key
    with _open(root, now) as store:
        with pytest.raises(EvidenceError, match="recipients differs from the copy recorded in the log"):
            store.enrollment_note("cam-07")
        assert any(f.kind == v.CONFIG_MISMATCH for f in verify_store(store))
        with pytest.raises(EvidenceError, match="recipients differs"):
            store.expire()  # store.json decides the policy; every config file is checked together
        # the administrator checks the new file and records it: then it is in force, and logged
        assert store.record_config() is True
        assert store.enrollment_note("cam-07")
        assert not any(f.kind == v.CONFIG_MISMATCH for f in verify_store(store))


def test_tamper_recipients_group_writable_refused(copy):
    root, now, _, _ = copy
    (root / RECIPIENTS_FILE).chmod(0o664)
    with _open(root, now) as store, pytest.raises(EvidenceError, match="writable by others than the store's administrator"):
        store.enrollment_note("cam-07")


# -- a backup restored, the engines' own bookkeeping ---------------------------------------------


def test_tamper_older_database_restored_named_and_expire_deletes_nothing_held(template, tmp_path, capsys,
                                                                               monkeypatch):
    """The insider puts back a backup of the database from before a hold (SQLite: an older
    evidence.db; PostgreSQL: an older dump restored). The checkpoint file outside the database is
    ahead of that log: verify names it, and expire deletes nothing, the held clip least of all."""
    root, now, items = template.copy(tmp_path / "store"), template.now, template.items
    with _open(root, now) as store:
        store.hold(items["due"], case="AZ-3", reason="needed after all")
    template.restore_database(root)
    monkeypatch.setattr("evidence_store.store.facade.SystemClock", lambda: FakeClock(now + timedelta(minutes=1)))
    capsys.readouterr()
    code = main(["--store", str(root), "expire"])
    captured = capsys.readouterr()
    assert code == 3 and "Traceback" not in captured.err, captured
    with _open(root, now) as store:
        assert any(f.where == CHECKPOINT_FILE for f in verify_store(store))
        for name in (*PROTECTED, "due", "released", "q_due"):
            assert all(store.objects.exists(h) for h in template.objects[name]), name


@pytest.mark.parametrize("version", [99, 0], ids=["newer", "none"])
def test_tamper_schema_version_edited_refused_one_line_nothing_changed(copy, version, capsys):
    """SQLite's PRAGMA user_version, PostgreSQL's bodycam_schema row: a newer version is refused
    (upgrade first), an older one fails its migration; either way one line, exit 1, and nothing
    in the log or the objects changed."""
    root, now, items, objects = copy
    with Insider.of(root) as db:
        events = db.execute("SELECT count(*) FROM events")
        db.set_schema_version(version)
    for command in ("verify", "expire"):
        capsys.readouterr()
        assert main(["--store", str(root), command]) == 1
        err = capsys.readouterr().err
        assert err.startswith("bodycam-evidence: error: ") and "Traceback" not in err and err.count("\n") <= 2
        assert ("newer than this program" in err and "hint: upgrade bodycam" in err) == (version == 99), err
    with Insider.of(root) as db:
        assert db.execute("SELECT count(*) FROM events") == events
    assert all((root / "objects" / h[:2] / h).exists() for hashes in objects.values() for h in hashes
               if hashes is not objects["expired"])


@central_only
def test_tamper_log_head_row_deleted_writers_refuse_size_edited_harmless(copy, capsys):
    """PostgreSQL's log head: the row every writer locks first, so that docks on several machines
    append one after the other. Without it nothing would serialize them: every writing command
    refuses with one line (reading ones still work). Its size is recomputed at every commit and
    never read, so editing it changes nothing; a second row is refused by the database itself."""
    root, now, items, objects = copy
    with Insider.of(root) as db:
        db.execute("UPDATE log_head SET size = size + 7")
    with _open(root, now) as store:
        assert verify_store(store) == []
        store.hold(items["recent"], case="AZ-5", reason="complaint")
    with Insider.of(root) as db:
        ((size, events),) = db.execute("SELECT size, (SELECT count(*) FROM events) FROM log_head")
        assert size == events
        with pytest.raises(db.integrity_error):
            db.execute("INSERT INTO log_head (id, size) VALUES (2, 0)")
        db.execute("DELETE FROM log_head")
    capsys.readouterr()
    assert main(["--store", str(root), "hold", items["due"], "--case", "AZ-6", "--reason", "x"]) == 1
    err = capsys.readouterr().err
    assert "the log head row is missing" in err and err.count("\n") == 2
    with _open(root, now) as store:
        assert verify_store(store) == []
        with pytest.raises(EvidenceError, match="log head row is missing"):
            store.expire()
        assert store.clip(items["due"]).holds == []
        assert all(store.objects.exists(h) for h in objects["due"])


# -- SIGKILL at every write of an expiry run ----------------------------------------------------


def _expire_killed_at(root: Path, now: datetime, kill_at: int) -> int:
    """Run expire in a forked child that SIGKILLs itself at its ``kill_at``-th durable step: a
    file-system write (fsync, rename or unlink) or either side of a database commit (on
    PostgreSQL the commit is the only durable step of the index; the server rolls back what a
    killed client left open). Returns the child's exit code."""
    import contextlib
    import multiprocessing
    import os
    import signal

    from evidence_store import db

    def child():
        calls = [0]

        def step():
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def hook(real):
            def wrapped(*args, **kwargs):
                step()
                return real(*args, **kwargs)
            return wrapped

        real_transaction = db.transaction

        @contextlib.contextmanager
        def transaction(conn):
            with real_transaction(conn) as inside:
                yield inside
                step()  # the transaction's work done, not yet committed
            step()  # committed

        os.fsync, os.replace, os.unlink = hook(os.fsync), hook(os.replace), hook(os.unlink)
        db.transaction = transaction
        with _open(root, now) as store:
            store.expire()
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(120)
    return proc.exitcode


def test_tamper_expire_sigkill_at_every_write_loses_nothing_doubles_nothing(template, tmp_path):
    now, items, objects = template.now, template.items, template.objects
    kill_at, finished = 1, False
    while not finished:
        assert kill_at < 200, "the expiry run never finished"
        target = template.copy(tmp_path / f"k{kill_at}")
        finished = _expire_killed_at(target, now, kill_at) == 0
        with _open(target, now) as store:
            store.expire()  # the next hourly run finishes what the killed one began
            assert verify_store(store) == []
            for name in PROTECTED:
                assert all(store.objects.exists(h) for h in objects[name]), (kill_at, name)
            for name in ("released", "due", "q_due"):
                assert not any(store.objects.exists(h) for h in objects[name]), (kill_at, name)
                expires = [e for e in store.events(clip_id=items[name]) if e["kind"] == "expire"]
                assert len(expires) == 1, (kill_at, name, len(expires))
        shutil.rmtree(target)
        kill_at += 1
    assert kill_at > 8  # objects of three items, the checkpoint file: many writes were interrupted
