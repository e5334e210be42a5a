"""The tamper suite: every column of every table of the store's database edited in turn, rows
deleted and inserted; ``verify`` must name each edit that matters, and ``expire`` must never
delete a held or not-yet-due clip (or quarantined item) after any of them.

Tables and columns are read from the database itself (sqlite_master, PRAGMA table_info), so a
column added later is tampered with too, and fails here until it is checked or listed in
NOT_CHECKED with the reason it cannot change what the store does.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from evidence_store import verify as v
from evidence_store.cli import main
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.errors import EvidenceError
from evidence_store.store import CHECKPOINT_FILE, RECIPIENTS_FILE, Store
from evidence_store.verify import verify_store
from tests.clipfactory import DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, T0, TEST_LOG_N, FakeClock, put_and_ingest

#: Columns an edit of which changes nothing the store decides, shows as evidence or proves; each
#: with the reason. Everything else must be named by verify when edited.
NOT_CHECKED = {
    ("objects", "size"): "never read: object sizes come from the manifest and the ingest event",
    ("objects", "kind"): "never read: a label for people looking at the table by hand",
    ("objects", "created_at"): "never read: an orphan's age is its file's time, a clip's its ingest event",
    ("checkpoints", "created_at"): "never read: the signed note carries everything that is checked",
    ("devices", "last_docking"): "not in the log (record_docking appends no event); only flags manifests "
                                 "older than the last docking, never decides a deletion",
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
    "meta": "unused table",
}


# -- the store every test tampers with a copy of ---------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store with every kind of row: two cameras (one revoked), an assigned officer, an expired
    clip, a held emergency clip (viewed, justified), a released clip, a due clip, a quarantined
    item due and one not due, and a clip recorded an hour ago."""
    base = tmp_path_factory.mktemp("tamper")
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
    return base / "store", clock.now(), items, objects


def _objects(store, item: str) -> set[str]:
    info = store.clip(item)
    return {s["sha256"] for s in store.segments(item)} | {h for h in (info.manifest_sha256, info.journal_sha256) if h}


PROTECTED = ("held", "recent", "q_recent")


@pytest.fixture
def copy(template, tmp_path):
    """A fresh copy of the template store: (folder, now, items, objects)."""
    root, now, items, objects = template
    target = tmp_path / "store"
    shutil.copytree(root, target, symlinks=True)
    return target, now, items, objects


def _open(root: Path, now: datetime) -> Store:
    return Store.open(root, clock=FakeClock(now), actor="expiry")


def _check_after(root: Path, now: datetime, objects: dict) -> tuple[list, list[str]]:
    """verify's faults, then run expire and check that nothing protected was deleted. Returns
    (faults, expire's faults or its error)."""
    with _open(root, now) as store:
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


# -- enumerating the database -----------------------------------------------------------------------


def _tables(conn) -> list[str]:
    return [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def _columns(conn, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _rowids(conn, table: str, items: dict) -> list[int]:
    """Every row of small tables; of larger ones the first, the last and those naming a held or
    not-yet-due item (the rows an attacker would edit). Keeps the suite under a minute."""
    rows = conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()
    if len(rows) <= 4:
        return [r[0] for r in rows]
    ids = {items[name] for name in PROTECTED}
    naming = [r[0] for r in rows if ids & {c for c in r[1:] if isinstance(c, str)}]
    return sorted({rows[0][0], rows[-1][0], *naming[:3]})


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


def _cells(template) -> list[tuple[str, str, int]]:
    root, _, items, _ = template
    conn = sqlite3.connect(root / "evidence.db")
    try:
        return [(t, c, r) for t in _tables(conn) for c in _columns(conn, t) for r in _rowids(conn, t, items)]
    finally:
        conn.close()


def _edit(root: Path, table: str, column: str, rowid: int) -> bool:
    conn = sqlite3.connect(root / "evidence.db", isolation_level=None)
    try:
        (value,) = conn.execute(f"SELECT {column} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        others = [o for (o,) in conn.execute(f"SELECT DISTINCT {column} FROM {table} ORDER BY rowid")]
        for new in (_tweak(value, others), (value + "x") if isinstance(value, str) else None):
            if new is None or new == value:
                continue
            try:
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (new, rowid))
                return True
            except sqlite3.IntegrityError:
                continue
        return False
    finally:
        conn.close()


# -- the suite --------------------------------------------------------------------------------------


def test_tamper_every_column_named_by_verify_and_expire_keeps_protected(template, tmp_path):
    """One edit at a time (a fresh copy each): verify names it unless NOT_CHECKED says why it
    does not matter; expire deletes nothing held or not yet due."""
    root, now, items, objects = template
    silent: dict[tuple[str, str], list[int]] = {}
    crashed: list = []
    edited = set()
    for n, (table, column, rowid) in enumerate(_cells(template)):
        target = tmp_path / f"s{n}"
        shutil.copytree(root, target, symlinks=True)
        if not _edit(target, table, column, rowid):
            continue
        edited.add((table, column))
        try:
            faults, _ = _check_after(target, now, objects)
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
    root, now, items, objects = template
    conn = sqlite3.connect(root / "evidence.db")
    rows = [(t, r) for t in _tables(conn) for r in _rowids(conn, t, items)]
    conn.close()
    silent = []
    for n, (table, rowid) in enumerate(rows):
        target = tmp_path / f"d{n}"
        shutil.copytree(root, target, symlinks=True)
        with sqlite3.connect(target / "evidence.db", isolation_level=None) as c:
            c.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
        faults, _ = _check_after(target, now, objects)
        if not faults and table not in ROWS_NOT_CHECKED:
            silent.append((table, rowid))
        shutil.rmtree(target)
    assert silent == [], f"row deletions verify did not name: {silent}"


def test_tamper_row_inserted_named_by_verify_and_expire_keeps_protected(template, tmp_path):
    """A copy of a row under a new key (a forged clip, hold, event, object row ...)."""
    root, now, items, objects = template
    conn = sqlite3.connect(root / "evidence.db")
    tables = [t for t in _tables(conn) if conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]]
    conn.close()
    silent = []
    for n, table in enumerate(tables):
        target = tmp_path / f"i{n}"
        shutil.copytree(root, target, symlinks=True)
        with sqlite3.connect(target / "evidence.db", isolation_level=None) as c:
            cols = _columns(c, table)
            row = list(c.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone())
            # New keys: every text gets a suffix and every integer a large offset where that is unique.
            fresh = [(x + "-forged") if isinstance(x, str) and not x.endswith("Z") else
                     (x + 100_000) if isinstance(x, int) and x > 1 else x for x in row]
            c.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", fresh)
        faults, _ = _check_after(target, now, objects)
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
    with sqlite3.connect(root / "evidence.db", isolation_level=None) as c:
        c.execute(sql, items)
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
    with sqlite3.connect(root / "evidence.db", isolation_level=None) as c:
        c.execute("UPDATE devices SET revoked = 0 WHERE device_id = 'cam-09'")
    with _open(root, now) as store:
        assert any(f.kind == v.ROW_MISMATCH and "revoked" in f.message for f in verify_store(store))
        lost = DeviceFixture.new("cam-09")
        # the row says cam-09's key is whatever it was; a forged clip under that id is refused either way
        clip = make_clip(tmp_path / "o", lost, store.recipients, started_at=now - timedelta(minutes=5))
        with pytest.raises(EvidenceError):
            put_and_ingest(store, clip)


def test_tamper_last_sequence_row_lowered_ingest_refused(copy, tmp_path):
    root, now, items, _ = copy
    with sqlite3.connect(root / "evidence.db", isolation_level=None) as c:
        c.execute("UPDATE devices SET last_sequence = last_sequence - 1 WHERE device_id = 'cam-07'")
    with _open(root, now) as store:
        assert any("last_sequence" in f.message for f in verify_store(store))
        with pytest.raises(EvidenceError, match="differs from its events"):
            store._check_device_row(store.device("cam-07"), "clip x")


def test_tamper_all_checkpoints_deleted_named(copy):
    root, now, _, objects = copy
    with sqlite3.connect(root / "evidence.db", isolation_level=None) as c:
        c.execute("DELETE FROM checkpoints")
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
    with sqlite3.connect(root / "evidence.db", isolation_level=None) as c:
        idx, leaf = c.execute("SELECT idx, leaf FROM events WHERE kind = 'view'").fetchone()
        c.execute("UPDATE events SET leaf = ? WHERE idx = ?", (bytes(leaf).replace(b'"view"', b'"VIEW"'), idx))
        leaves = [bytes(x) for (x,) in c.execute("SELECT leaf FROM events ORDER BY idx")]
        _, hashes = merkle.stored_hashes_for_appends(0, [merkle.leaf_hash(x) for x in leaves])
        c.execute("DELETE FROM hashes")
        c.executemany("INSERT INTO hashes (id, hash) VALUES (?, ?)", enumerate(hashes))
        c.execute("DELETE FROM checkpoints WHERE size > ?", (idx,))
        c.execute("UPDATE events SET kind = 'VIEW' WHERE idx = ?", (idx,))
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


# -- SIGKILL at every write of an expiry run ----------------------------------------------------


def _expire_killed_at(root: Path, now: datetime, kill_at: int) -> int:
    """Run expire in a forked child that SIGKILLs itself at its ``kill_at``-th file-system write
    (fsync, rename or unlink: each durable step of the run). Returns the child's exit code."""
    import multiprocessing
    import os
    import signal

    def child():
        calls = [0]

        def hook(real):
            def wrapped(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return wrapped

        os.fsync, os.replace, os.unlink = hook(os.fsync), hook(os.replace), hook(os.unlink)
        with _open(root, now) as store:
            store.expire()
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(120)
    return proc.exitcode


def test_tamper_expire_sigkill_at_every_write_loses_nothing_doubles_nothing(template, tmp_path):
    root, now, items, objects = template
    kill_at, finished = 1, False
    while not finished:
        assert kill_at < 200, "the expiry run never finished"
        target = tmp_path / f"k{kill_at}"
        shutil.copytree(root, target, symlinks=True)
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
