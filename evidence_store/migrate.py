"""Moving a local store (SQLite and the objects folder) onto the central backends (PostgreSQL and
S3 with Object Lock) without changing a leaf of its log.

The log is the evidence, so it is copied as it is: every leaf, stored hash and signed checkpoint
row, and with it every index table that the SQLite schema holds (read from the schema itself, so
none is forgotten). Proofs and exports issued before the move keep verifying: the central log has
the same tree hashes, and its next checkpoint extends the last local one. Each live object (of a
clip or quarantined item that has not expired) goes to the bucket uploaded with its SHA-256,
locked until its item's deadline (GOVERNANCE) and under legal hold where the item is held, then
read back and hashed.

The order makes a crash harmless at any instant, and a rerun finishes the job:

1. Check everything before writing anything: the targets (reachable, credentials, bucket with
   versioning and Object Lock, a database and a prefix that hold no other store), the local store
   (``verify`` finds no fault), the table layouts. Then take the local write lock (SQLite's
   ``BEGIN IMMEDIATE``), held to the end: a dock that tries to ingest meanwhile gets "busy" and
   keeps its clips on the camera.
2. Objects: each one already in the bucket is checked (bytes re-hashed, lock as things are now);
   a missing one is uploaded. An upload is one PUT, whole or absent, so a rerun never adds a
   second version. A copy whose item expired locally since an interrupted run is deleted.
3. Rows: in one PostgreSQL transaction, every table is copied and compared (row count and an
   order-free digest per table) with the local one.
4. The local database is frozen (a trigger on every table refuses every write) and that commits:
   from now on no writer can change the local log behind the copy. ``migrate.json`` in the store
   folder names the targets, so a rerun cannot finish onto other ones.
5. Still in the transaction of step 3, the log gets a ``config`` event naming the new backends and
   the hash of the new ``store.json``, and a signed checkpoint of size N+1; then COMMIT.
6. ``store.json`` is replaced (atomically) by one naming the database and the bucket, and
   ``log.checkpoint`` moves forward. From now on the store is central.

A crash before 4 leaves the local store as it was (the database holds its empty schema, the
bucket locked copies that a rerun checks and reuses); between 4 and 5 the local store refuses
writes and a rerun copies the rows again; after 5 a rerun finds the finished log and only
switches ``store.json``.
The local ``evidence.db`` (frozen) and ``objects/`` stay until the administrator removes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from evidence_store import events as ev
from evidence_store.clip.fsutil import atomic_write, fsync_dir
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.db import DatabaseBusy
from evidence_store.errors import IntegrityError, UsageError
from evidence_store.index import DATABASE_KEY
from evidence_store.log import EventLog
from evidence_store.objects import OBJECTS_KEY, LocalObjects
from evidence_store.queries import Queries
from evidence_store.store.records import STORE_FILE, TEXT_RETENTION, _sha, _store_umask

log = logging.getLogger(__name__)

#: In the store folder while a migration is under way: the targets it is bound to.
MARKER_FILE = "migrate.json"
#: How long migrate waits for a writer (a dock's ingest) to finish before it gives up.
LOCK_WAIT_MS = 10_000
#: Rows per batch read from one database and written to the other.
BATCH_ROWS = 5_000
#: Objects copied at once (each waits on the network).
WORKERS = 4
#: What a writer to the frozen local database is told.
FROZEN_MESSAGE = ("this local database is frozen: the store moved (or is moving) to the data centre; "
                  "finish with 'bodycam-evidence migrate', then restart this program")
HINT_STOP_DOCKS = ("hint: migrate holds the store's write lock from start to end: stop the docks and the "
                   "expiry timer (systemctl stop bodycam-dock bodycam-expire.timer), then run it again")


@dataclass
class MigrationResult:
    """What a migration did: the local log size N, the central log's new checkpoint (N+1)."""

    database: str
    objects: str
    log_size: int = 0
    event_index: int | None = None
    checkpoint: bytes | None = None
    objects_uploaded: int = 0
    objects_present: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    already: bool = False


@dataclass(frozen=True)
class _Wanted:
    """How one object must be kept: until the latest deadline of the items naming it, under
    legal hold if any of them is held."""

    size: int | None
    deadline: datetime
    held: bool
    owner: str


def migrate(root: str | os.PathLike, database: str, objects_url: str, *, clock=None, actor: str | None = None,
            say: Callable[[str], None] | None = None) -> MigrationResult:
    """Move the local store in ``root`` onto ``database`` (libpq URL) and ``objects_url``
    (``s3://BUCKET/PREFIX``). Idempotent: rerun after a crash (or after success: it says so).
    Raises EvidenceError (one line) having changed nothing locally where the input is bad."""
    from evidence_store import postgres
    from evidence_store.objects_s3 import S3Objects, parse_s3_url
    from evidence_store.store import Store

    say = say or log.info
    root = Path(root)
    postgres.check_url(database)
    parse_s3_url(objects_url)
    target = {DATABASE_KEY: database, OBJECTS_KEY: objects_url}
    result = MigrationResult(database, objects_url)
    with Store.open(root, clock=clock, actor=actor) as store:
        current = {key: store.config.get(key) for key in target}
        if current == target:
            result.already = True
            return result
        if any(current.values()):
            raise UsageError(f"{root} already uses central backends ({', '.join(v for v in current.values() if v)})",
                             "hint: migrate moves a local store; this one has moved already")
        _require_admin(root)
        marker = _read_marker(root)
        if store.index.migrate_frozen() and marker != target:
            if not marker:
                raise UsageError(f"{root}: an earlier migrate froze the local database, and {MARKER_FILE}, which "
                                 "names where it was moving, is missing or unreadable",
                                 "hint: restore it from a backup, or look up the targets in that run's output")
            raise UsageError(f"{root} is being moved to {marker.get(DATABASE_KEY)} and {marker.get(OBJECTS_KEY)}; "
                             "finish that move first", "hint: run migrate again with those two targets")
        bucket = S3Objects(objects_url)  # reachable, credentials, versioning and Object Lock
        has_schema, origin = postgres.stored_origin(database)
        if has_schema and origin != store.origin:
            raise UsageError(f"{database} already holds another evidence store (log {origin})",
                             "hint: each store gets its own, empty database")
        _refuse_foreign_objects(store, bucket)
        _refuse_faults(store)
        try:
            store.index.migrate_lock(LOCK_WAIT_MS)
        except DatabaseBusy:
            raise DatabaseBusy(f"another writer (a dock, the expiry timer, an officer) holds the lock of {root} "
                               f"for more than {LOCK_WAIT_MS // 1000} s", HINT_STOP_DOCKS) from None
        try:
            central = _open_central(store, database, create=not has_schema)
            try:
                _migrate_locked(store, central, target, result, say)
            finally:
                central.close()
        finally:
            store.index.migrate_unlock()
    return result


def _open_central(store, database: str, *, create: bool):
    from evidence_store import postgres

    return postgres.connect(database, origin=store.origin, create=create)


def _migrate_locked(store, central, target: dict, result: MigrationResult, say) -> None:
    """Steps 2 to 6 (see the module docstring), under the local write lock."""
    from evidence_store.store import Store

    local_log = store.log
    size = local_log.size()
    result.log_size = size
    central_log = EventLog(central, store.origin, store.signer, store.verifier)
    tables = _layouts(store, central)
    new_config = _config_bytes(store.config, target)
    state = _central_state(store, central, central_log, size, target)
    if state == "empty":
        _write_marker(store.root, target)
        # The store as it will be: its objects are the bucket, and its lock mapping is used.
        locks = Store(store.root, json.loads(new_config), central, clock=store.clock, actor=store.actor)
        _copy_objects(store, locks, result, say)
        with central.transaction():
            _copy_rows(store, central, tables, result, say)
            store.index.migrate_freeze(sorted(tables), FROZEN_MESSAGE)
            say(f"local store frozen at {size} log entries")
            now = store.now()
            files = store.config_hashes() | {STORE_FILE: _sha(new_config)}
            appended = central_log.append_many([ev.Event(
                ev.CONFIG, format_time(now), "store", personal={"actor": store.actor},
                data={"files": files, "migrated": {"from": "local", "size": size, "root": local_log.root(size).hex(),
                                                   **target}})], retain_until=format_time(now + TEXT_RETENTION))
            note = central_log.sign_checkpoint(format_time(now))
        say(f"central log: migrate event {appended[0].index} and checkpoint of size {size + 1} committed")
        result.event_index = appended[0].index
    else:
        say(f"central log already holds the migrate event {size}; switching store.json")
        kept = central_log.checkpoint_at(size + 1)
        if kept is None:
            raise IntegrityError(f"the central log holds no checkpoint of size {size + 1}", where="checkpoints")
        note = kept
        result.event_index = size
        logged = json.loads(central_log.leaf(size)).get("files", {}).get(STORE_FILE)
        if logged != _sha(new_config):
            raise IntegrityError(f"store.json changed since the migrate event {size} was logged",
                                 "hint: restore the store.json the log recorded, then run migrate again",
                                 where=STORE_FILE)
    result.checkpoint = note
    with _store_umask():
        atomic_write(store.root / STORE_FILE, new_config, mode=0o644)
        fsync_dir(store.root)
    say("store.json now names the central database and the bucket")
    store._publish_checkpoint(note)
    (store.root / MARKER_FILE).unlink(missing_ok=True)
    fsync_dir(store.root)


# -- checks before anything is written -----------------------------------------------------------


def _require_admin(root: Path) -> None:
    # migrate rewrites store.json, which only the administrator (the folder's owner) may write.
    if os.geteuid() not in (0, os.stat(root).st_uid):
        raise UsageError("only the store's administrator (the folder's owner) may migrate it")


def _refuse_faults(store) -> None:
    """Only a store that verifies is moved: a copy of a fault would be a fault that moved."""
    from evidence_store.verify import verify_store

    faults = verify_store(store)
    if faults:
        raise IntegrityError(f"the local store has {len(faults)} fault(s), first {faults[0].kind}: {faults[0].where}: "
                             f"{faults[0].message}", "hint: run 'bodycam-evidence verify' and resolve them first")


def _refuse_foreign_objects(store, bucket) -> None:
    """The prefix must hold nothing but objects of this store (a rerun finds its own there)."""
    known = store.index.migrate_known_objects()
    for name in bucket.names():
        if name not in known:
            raise UsageError(f"{bucket.url} already holds objects of another store (first {name})",
                             "hint: each store gets its own bucket or prefix")


def _layouts(store, central) -> dict[str, list[str]]:
    """Every local table with its columns; UsageError if the central schema lacks one."""
    from evidence_store import postgres

    tables = {}
    for table in store.index.migrate_tables():
        columns, _key = store.index.migrate_layout(table)
        missing = set(columns) - set(postgres.table_columns(central, table))
        if missing:
            raise UsageError(f"the central database has no {table}.{sorted(missing)[0]} for the local one",
                             "hint: the central schema is older than the local one: upgrade bodycam, run again")
        tables[table] = columns
    return tables


def _central_state(store, central, central_log: EventLog, size: int, target: dict) -> str:
    """"empty" (only the schema: nothing copied yet) or "done" (the copy and the migrate event
    committed). Anything else is another use of this store's database: refused."""
    queries = Queries(central)
    theirs = central_log.size()
    if theirs == 0:
        for table in store.index.migrate_tables():
            if table != "meta" and queries.migrate_has_rows(table):
                raise UsageError(f"{target[DATABASE_KEY]} holds {table} rows but no log: not a copy migrate made",
                                 "hint: give migrate an empty database")
        return "empty"
    if theirs == size + 1:
        body = json.loads(central_log.leaf(size))
        moved = body.get("migrated") if body.get("kind") == ev.CONFIG else None
        if (isinstance(moved, dict) and {k: moved.get(k) for k in target} == target
                and central_log.root(size) == store.log.root(size)):
            return "done"
    raise UsageError(f"{target[DATABASE_KEY]} holds this store's log with {theirs} entries, not a migration of its "
                     f"{size}", "hint: the central store is in use; compare store.json with the database")


# -- objects ---------------------------------------------------------------------------------------


def _wanted_objects(store) -> dict[str, _Wanted]:
    """Every object of a clip or quarantined item that has not expired, with how to lock it."""
    sizes = store.index.migrate_live_objects()
    wanted: dict[str, _Wanted] = {}
    for item in store.clips():
        hashes = [item.manifest_sha256, item.journal_sha256] + [s["sha256"] for s in store.segments(item.clip_id)]
        deadline, held = parse_time(item.deadline), bool(item.holds)
        for sha in hashes:
            if not sha:
                continue
            before = wanted.get(sha)
            if before is not None:
                deadline, held = max(deadline, before.deadline), held or before.held
            wanted[sha] = _Wanted(sizes.get(sha), deadline, held, f"{item.state} {item.clip_id}")
    return wanted


def lock_and_put(bucket, src, size: int, *, retain_until: datetime, legal_hold: bool):
    """Upload one object already locked as the store's lock mapping wants it (retention until
    the item's deadline, legal hold while it is held), so that it is never unlocked."""
    return bucket.put(src, size, retain_until=retain_until, legal_hold=legal_hold)


def _copy_objects(store, locks, result: MigrationResult, say) -> None:
    """``locks``: the store as it will be (its objects the bucket): its lock mapping
    (Store.lock_objects) re-locks what an interrupted run copied as things are now."""
    local = LocalObjects(store.root)
    bucket = locks.objects
    wanted = _wanted_objects(store)
    say(f"objects: {len(wanted)} to copy and lock")

    def one(item: tuple[str, _Wanted]) -> bool:
        return _copy_object(local, locks, item[0], item[1], say)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for uploaded in pool.map(one, sorted(wanted.items())):
            if uploaded:
                result.objects_uploaded += 1
            else:
                result.objects_present += 1
    # An interrupted run copied an object whose item expired locally before this run: the law
    # wants it gone, and verify would name it. Deleting it needs the deletion role's bypass right.
    stale = [name for name in bucket.names() if name not in wanted]
    for sha in stale:
        status = bucket.lock_status(sha)
        if status is not None and status.legal_hold:
            bucket.set_legal_hold(sha, False)
        bucket.delete(sha)
        say(f"object {sha} deleted from the bucket: its item expired since an interrupted run copied it")


def _copy_object(local: LocalObjects, locks, sha: str, want: _Wanted, say) -> bool:
    """Make the bucket hold ``sha`` verified and locked; True if it was uploaded now."""
    bucket = locks.objects
    status = bucket.lock_status(sha)
    uploaded = status is None
    if uploaded:
        digest, size = local.rehash(sha)  # IntegrityError if missing
        if digest != sha or (want.size is not None and size != want.size):
            raise IntegrityError(f"object {sha} of {want.owner} was altered in the local folder", where=sha)
        with local.open(sha) as src:
            ref = lock_and_put(bucket, src, size, retain_until=want.deadline, legal_hold=want.held)
        if ref.sha256 != sha:
            raise IntegrityError(f"object {sha} of {want.owner} changed while it was copied", where=sha)
    else:
        # Copied by an interrupted run: a hold may have been placed or released since. The
        # store's own lock mapping extends the retention first, then switches the legal hold.
        size = status.size
        locks.lock_objects([sha], want.deadline, held=want.held)
    faults = bucket.check(sha, want.size if want.size is not None else size, deadline=want.deadline, held=want.held)
    if faults:
        raise IntegrityError(f"{want.owner}: {faults[0]}", *([faults[0].hint] if faults[0].hint else []), where=sha)
    say(f"object {sha} {'uploaded' if uploaded else 'present'}, verified and locked until "
        f"{format_time(want.deadline)}{' under legal hold' if want.held else ''}")
    return uploaded


# -- rows ------------------------------------------------------------------------------------------


def _copy_rows(store, central, tables: dict, result: MigrationResult, say) -> None:
    """Copy every table, then compare: same number of rows, same digest, on both sides (the
    local digest is taken from the very rows that were copied)."""
    from evidence_store import postgres

    target = Queries(central)
    ours = {}
    for table, columns in sorted(tables.items()):
        digest = _Digest()
        for batch in _batches(store.index, table, columns):
            target.migrate_insert(table, columns, batch)
            digest.add(batch)
        ours[table] = digest.value()
        say(f"table {table}: {ours[table][0]} row(s) copied")
    postgres.restart_generated_keys(central)
    for table, columns in sorted(tables.items()):
        with postgres.streaming(central):
            theirs = table_digest(target, table, columns)
        if ours[table] != theirs:
            raise IntegrityError(f"table {table}: the copy differs ({theirs[0]} row(s) central, {ours[table][0]} "
                                 "local)", where=table)
        result.tables[table] = theirs[0]
    say(f"tables compared: {len(tables)} with the same rows on both sides")


def _batches(queries: Queries, table: str, columns: list[str]):
    """The rows of a table in lists of BATCH_ROWS, without the ``meta`` rows a central database
    writes itself."""
    from evidence_store import postgres

    meta_key = columns.index("key") if table == "meta" else None
    batch: list[tuple] = []
    for row in queries.migrate_rows(table, columns):
        if meta_key is not None and row[meta_key] in postgres.OWN_META_KEYS:
            continue
        batch.append(tuple(row))
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


class _Digest:
    """Row count and an order-independent digest of rows: the sum modulo 2^256 of the SHA-256 of
    each row's ``repr`` (each backend returns rows in its own order; both return int, str, bytes
    and None, whose reprs differ between types, so '1' and 1 never digest alike)."""

    def __init__(self):
        self.count = 0
        self.total = 0

    def add(self, rows: list[tuple]) -> None:
        sha = hashlib.sha256
        self.total += sum(int.from_bytes(sha(repr(row).encode("utf-8", "surrogatepass")).digest(), "big")
                          for row in rows)
        self.count += len(rows)

    def value(self) -> tuple[int, str]:
        return self.count, f"{self.total % (1 << 256):064x}"


def table_digest(queries: Queries, table: str, columns: list[str]) -> tuple[int, str]:
    """(row count, digest) of a table (``_Digest``), without the ``meta`` rows a central database
    writes itself."""
    digest = _Digest()
    for batch in _batches(queries, table, columns):
        digest.add(batch)
    return digest.value()


# -- store.json and the marker ---------------------------------------------------------------------


def _config_bytes(config: dict, target: dict) -> bytes:
    """The new store.json: the old one's fields, then the two backends (the same bytes on a rerun)."""
    return json.dumps(dict(config) | target, indent=2).encode() + b"\n"


def _read_marker(root: Path) -> dict | None:
    try:
        data = json.loads((root / MARKER_FILE).read_bytes()[:4096])
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(root: Path, target: dict) -> None:
    with _store_umask():
        atomic_write(root / MARKER_FILE, json.dumps(target, indent=2).encode() + b"\n", mode=0o644)
