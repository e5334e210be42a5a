"""Every SQL statement the store, verify, report and deletion run against the index, by job.

The statements are written once, in the dialect both backends accept: SQLite runs them as
written (db.py holds its schema and connection), PostgreSQL through postgres.PgIndex, which
translates the placeholders and the two SQLite idioms used here (``INSERT OR IGNORE``,
``lastrowid``) and holds its own schema. So a legal change (a new state, a new hold kind) is made
in evidence_store.vocabulary and, where the index must learn it, here: nowhere else touches a
connection (tests/test_sql_boundary.py checks both).

``Queries`` wraps one connection: the store's own, or a verify worker's snapshot reader. Methods
return plain tuples or lists of them; they never commit: the caller's transaction (db.transaction,
PgIndex.transaction) decides that.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from evidence_store import db
from evidence_store.index import CENTRAL, LOCAL, Cursor, Index
from evidence_store.vocabulary import ClipState

#: How a verify worker reaches the snapshot its parent reads: (backend, SQLite file or
#: PostgreSQL URL, exported snapshot id or None); see ``Queries.reader_source``.
ReaderSource = tuple[str, str, str | None]


class Queries:
    """The named statements over one index connection (sqlite3.Connection or postgres.PgIndex)."""

    def __init__(self, conn: Index | Any):
        self.conn = conn

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> Cursor:
        return self.conn.execute(sql, tuple(params))

    def _one(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        return self.conn.execute(sql, tuple(params)).fetchone()

    # -- objects (the index rows of content-addressed objects) ---------------------------------

    def index_object(self, sha256: str, size: int, kind: str, created_at: str) -> None:
        """Record an object; an object stored again after its deletion is live again."""
        self.conn.execute(
            "INSERT INTO objects (sha256, size, kind, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sha256) DO UPDATE SET deleted_at = NULL", (sha256, size, kind, created_at))

    # -- keys and store configuration (store/keys.py, store/facade.py) --------------------------

    def latest_event_of_kind(self, kind: str) -> tuple[int, bytes] | None:
        """(log index, leaf) of the newest event of ``kind`` (the latest config event)."""
        return self._one("SELECT idx, leaf FROM events WHERE kind = ? ORDER BY idx DESC LIMIT 1", (kind,))

    # -- devices and their chains (store/devices.py) --------------------------------------------

    def device_rows(self) -> list[tuple]:
        """Every devices row (all columns, in the table's order), by device id."""
        return self._rows("SELECT * FROM devices ORDER BY device_id").fetchall()

    def device_row(self, device_id: str) -> tuple | None:
        return self._one("SELECT * FROM devices WHERE device_id = ?", (device_id,))

    def device_key(self, device_id: str) -> str | None:
        """The public key a device is enrolled with, or None if it is not enrolled."""
        row = self._one("SELECT public_key FROM devices WHERE device_id = ?", (device_id,))
        return None if row is None else row[0]

    def add_device(self, device_id: str, public_key: str, profile: str, enrolled_at: str) -> None:
        self.conn.execute("INSERT INTO devices (device_id, public_key, profile, enrolled_at) VALUES (?, ?, ?, ?)",
                          (device_id, public_key, profile, enrolled_at))

    def assign_officer(self, device_id: str, officer: str) -> None:
        self.conn.execute("UPDATE devices SET officer = ? WHERE device_id = ?", (officer, device_id))

    def revoke_device(self, device_id: str, reason: str) -> None:
        self.conn.execute("UPDATE devices SET revoked = 1, revoked_reason = ? WHERE device_id = ?",
                          (reason, device_id))

    def set_last_docking(self, device_id: str, at: str) -> None:
        self.conn.execute("UPDATE devices SET last_docking = ? WHERE device_id = ?", (at, device_id))

    def event_leaves_about(self, subject: str) -> list[tuple[int, bytes]]:
        """(log index, leaf) of every event about ``subject`` (a device's enroll, assign, revoke), in order."""
        return self._rows("SELECT idx, leaf FROM events WHERE subject = ? ORDER BY idx", (subject,)).fetchall()

    def last_ingest_of_device(self, device_id: str, ingest_kind: str) -> tuple[int, bytes] | None:
        """(log index, leaf) of the ingest event of the device's highest stored sequence."""
        return self._one(
            "SELECT e.idx, e.leaf FROM events e JOIN clips c ON c.clip_id = e.clip_id WHERE c.device_id = ? "
            "AND e.kind = ? ORDER BY c.sequence DESC LIMIT 1", (device_id, ingest_kind))

    def advance_device_chain(self, device_id: str, sequence: int, manifest_sha256: str) -> None:
        """Move the device's chain position forward to ``sequence`` (never back)."""
        self.conn.execute(
            "UPDATE devices SET last_sequence = ?, last_manifest_sha256 = ? WHERE device_id = ? "
            "AND (last_sequence IS NULL OR last_sequence < ?)",
            (sequence, manifest_sha256, device_id, sequence))

    # -- ingest and quarantine (store/ingest.py) ------------------------------------------------

    def manifest_stored(self, manifest_sha256: str) -> bool:
        """Whether a clip (stored or expired) has this manifest."""
        return self._one("SELECT 1 FROM clips WHERE manifest_sha256 = ?", (manifest_sha256,)) is not None

    def manifest_quarantined(self, manifest_sha256: str) -> bool:
        return self._one("SELECT 1 FROM quarantine WHERE manifest_sha256 = ?", (manifest_sha256,)) is not None

    def clip_manifest(self, clip_id: str) -> tuple[str] | None:
        """(manifest hash,) the clip id is stored with, or None if there is no such clip."""
        return self._one("SELECT manifest_sha256 FROM clips WHERE clip_id = ?", (clip_id,))

    def add_clip(self, *, clip_id: str, device_id: str, sequence: int, officer: str | None, trigger: str,
                 started_at: str, ended_at: str, homes: int, manifest_sha256: str, journal_sha256: str,
                 ingested_at: str, flags: str, state: str, justification: str | None, late: int) -> None:
        self.conn.execute(
            "INSERT INTO clips (clip_id, device_id, sequence, officer, trigger, started_at, ended_at, homes, "
            "manifest_sha256, journal_sha256, ingested_at, flags, state, justification, late) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (clip_id, device_id, sequence, officer, trigger, started_at, ended_at, homes, manifest_sha256,
             journal_sha256, ingested_at, flags, state, justification, late))

    def add_segments(self, rows: Iterable[tuple]) -> None:
        """Segment rows: (clip_id, name, bytes, sha256, plaintext_bytes, plaintext_sha256,
        duration_ms, cut, status)."""
        self.conn.executemany(
            "INSERT INTO segments (clip_id, name, bytes, sha256, plaintext_bytes, plaintext_sha256, "
            "duration_ms, cut, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def quarantine_exists(self, qid: str) -> bool:
        return self._one("SELECT 1 FROM quarantine WHERE qid = ?", (qid,)) is not None

    def add_quarantine(self, *, qid: str, clip_id: str | None, device_id: str | None, manifest_sha256: str | None,
                       journal_sha256: str | None, reason: str, at: str, started_at: str, state: str,
                       late: int) -> None:
        self.conn.execute(
            "INSERT INTO quarantine (qid, clip_id, device_id, manifest_sha256, journal_sha256, reason, at, "
            "started_at, state, late) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (qid, clip_id, device_id, manifest_sha256, journal_sha256, reason, at, started_at, state, late))

    def add_quarantine_objects(self, rows: Iterable[tuple[str, str, str, int]]) -> None:
        """Kept files of a quarantined item: (qid, name, sha256, size)."""
        self.conn.executemany("INSERT INTO quarantine_objects (qid, name, sha256, size) VALUES (?, ?, ?, ?)", rows)

    def clip_of_device(self, clip_id: str, device_id: str) -> tuple[str, str, int] | None:
        """(manifest, journal, sequence) of the clip ``clip_id`` if camera ``device_id`` recorded it."""
        return self._one("SELECT manifest_sha256, journal_sha256, sequence FROM clips "
                         "WHERE clip_id = ? AND device_id = ?", (clip_id, device_id))

    def segment_hashes(self, clip_id: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT sha256 FROM segments WHERE clip_id = ?", (clip_id,))]

    def quarantines_of(self, clip_id: str, device_id: str) -> list[tuple[str, str | None, str | None]]:
        """(qid, manifest, journal) of each quarantine recorded under this clip id from this camera."""
        return self._rows("SELECT qid, manifest_sha256, journal_sha256 FROM quarantine "
                          "WHERE clip_id = ? AND device_id = ?", (clip_id, device_id)).fetchall()

    def quarantine_object_hashes(self, qid: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT sha256 FROM quarantine_objects WHERE qid = ?", (qid,))]

    # -- clips, holds, justification, access log (store/access.py, store/records.py) ------------

    #: The columns of a clip and of a quarantined item as store.access's ClipInfo reads them.
    _CLIP_SELECT = ("SELECT clip_id, device_id, sequence, officer, trigger, started_at, manifest_sha256, "
                    "journal_sha256, ingested_at, flags, state, justification, late, expired_at FROM clips")
    _QUARANTINE_SELECT = ("SELECT qid, clip_id, device_id, manifest_sha256, journal_sha256, reason, at, started_at, "
                          "state, late, expired_at FROM quarantine")

    def clip_row(self, clip_id: str) -> tuple | None:
        """The clip's row as ClipInfo reads it (_CLIP_SELECT)."""
        return self._one(self._CLIP_SELECT + " WHERE clip_id = ?", (clip_id,))

    def clip_rows(self) -> Cursor:
        """Every clip's row (_CLIP_SELECT), oldest recording first."""
        return self._rows(self._CLIP_SELECT + " ORDER BY started_at, clip_id")

    def quarantine_row(self, qid: str) -> tuple | None:
        """A quarantined item's row as ClipInfo reads it (_QUARANTINE_SELECT)."""
        return self._one(self._QUARANTINE_SELECT + " WHERE qid = ?", (qid,))

    def quarantine_row_claiming(self, clip_id: str) -> tuple | None:
        """The earliest quarantined item that claims the clip id ``clip_id``."""
        return self._one(self._QUARANTINE_SELECT + " WHERE clip_id = ? ORDER BY at, qid", (clip_id,))

    def quarantine_rows(self) -> Cursor:
        return self._rows(self._QUARANTINE_SELECT + " ORDER BY started_at")

    def active_holds(self) -> Cursor:
        """(clip id, kind, case, created_at, hold id) of every hold not released, in hold order."""
        return self._rows("SELECT h.clip_id, h.kind, c.text, h.created_at, h.hold_id FROM holds h "
                          "JOIN texts c ON c.text_id = h.case_text WHERE h.released_at IS NULL ORDER BY h.hold_id")

    def segment_rows(self, clip_id: str) -> list[tuple]:
        """(name, bytes, sha256, plaintext bytes, plaintext sha256, duration ms, cut, status) by name."""
        return self._rows(
            "SELECT name, bytes, sha256, plaintext_bytes, plaintext_sha256, duration_ms, cut, status "
            "FROM segments WHERE clip_id = ? ORDER BY name", (clip_id,)).fetchall()

    def quarantine_object_rows(self, qid: str) -> Cursor:
        """(name, size, sha256) of a quarantined item's kept files, by name."""
        return self._rows("SELECT name, size, sha256 FROM quarantine_objects WHERE qid = ? ORDER BY name", (qid,))

    def event_rows(self, subject: str | None = None) -> Cursor:
        """(index, kind, time, clip, device, leaf) of every event, or of those about ``subject``."""
        if subject is None:
            return self._rows("SELECT idx, kind, time, clip_id, device_id, leaf FROM events ORDER BY idx")
        return self._rows("SELECT idx, kind, time, clip_id, device_id, leaf FROM events "
                          "WHERE subject = ? ORDER BY idx", (subject,))

    def event_text_rows(self, subject: str | None = None) -> Cursor:
        """(event index, field, text) of the personal texts not erased, of every event or of those
        about ``subject``. Joined by event index: texts.clip_id is empty for quarantine events
        (their subject is the quarantine id), which showed their actor as erased."""
        return self._rows(
            "SELECT et.idx, et.field, t.text FROM event_texts et JOIN texts t USING (text_id)"
            + ("" if subject is None else " WHERE et.idx IN (SELECT idx FROM events WHERE subject = ?)"),
            () if subject is None else (subject,))

    def has_event(self, subject: str, kind: str) -> bool:
        """Whether the log has an event of ``kind`` about ``subject`` (a view before a hold)."""
        return self._one("SELECT 1 FROM events WHERE subject = ? AND kind = ?", (subject, kind)) is not None

    def event_text_ids(self, idx: int) -> dict[str, int]:
        """field -> text id of the personal texts of event ``idx``."""
        return dict(self._rows("SELECT field, text_id FROM event_texts WHERE idx = ?", (idx,)))

    def add_hold(self, *, clip_id: str, kind: str, case_text: int, reason_text: int, actor_text: int,
                 created_at: str, event_index: int, after_view: int) -> int:
        """Insert a hold row; returns its hold id."""
        cur = self.conn.execute(
            "INSERT INTO holds (clip_id, kind, case_text, reason_text, actor_text, created_at, event_index, "
            "after_view) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (clip_id, kind, case_text, reason_text, actor_text, created_at, event_index, after_view))
        hold_id = cur.lastrowid
        if hold_id is None:  # both backends return the generated key of this insert
            raise RuntimeError("the index returned no hold id")
        return hold_id

    def active_hold_with_case(self, clip_id: str, case: str) -> tuple[int, int] | None:
        """(hold id, hold event index) of the oldest active hold of the clip with case reference ``case``."""
        return self._one(
            "SELECT h.hold_id, h.event_index FROM holds h JOIN texts t ON t.text_id = h.case_text "
            "WHERE h.clip_id = ? AND h.released_at IS NULL AND t.text = ? ORDER BY h.hold_id LIMIT 1",
            (clip_id, case))

    def release_hold(self, hold_id: int, released_at: str, release_event: int) -> None:
        self.conn.execute("UPDATE holds SET released_at = ?, release_event = ? WHERE hold_id = ?",
                          (released_at, release_event, hold_id))

    def set_justification(self, clip_id: str, justification: str) -> None:
        self.conn.execute("UPDATE clips SET justification = ? WHERE clip_id = ?", (justification, clip_id))

    # -- expiry, orphans, sweep (store/expiry.py) -----------------------------------------------

    #: Columns of clips and quarantine rows that expiry compares with the log (in SELECT order
    #: of clip_rows_checked and quarantine_rows_checked).
    CLIP_CHECKED = ("clip_id", "device_id", "sequence", "started_at", "ingested_at", "manifest_sha256",
                    "journal_sha256", "state")
    QUARANTINE_CHECKED = ("qid", "clip_id", "device_id", "manifest_sha256", "journal_sha256", "at", "started_at",
                          "state")
    # Does any live row name the object? Each question uses its own index (an OR across columns
    # made SQLite scan every clip); quarantine rows are alive while quarantined, clips while stored.
    #: Every object a stored clip or a quarantined item names: (statement, the state it is live in).
    _LIVE_QUERIES = (
        ("SELECT s.sha256 FROM segments s JOIN clips k USING (clip_id) WHERE k.state = ?", ClipState.STORED),
        ("SELECT manifest_sha256 FROM clips WHERE state = ?", ClipState.STORED),
        ("SELECT journal_sha256 FROM clips WHERE state = ?", ClipState.STORED),
        ("SELECT o.sha256 FROM quarantine_objects o JOIN quarantine q USING (qid) WHERE q.state = ?",
         ClipState.QUARANTINED),
        ("SELECT manifest_sha256 FROM quarantine WHERE state = ?", ClipState.QUARANTINED),
        ("SELECT journal_sha256 FROM quarantine WHERE state = ?", ClipState.QUARANTINED),
    )
    _LIVE_SQL = " UNION ALL ".join(q for q, _ in _LIVE_QUERIES)

    def _keys_table(self, keys: Iterable[str]) -> str:
        """Fill the session's temporary table of keys (emptied first) and return the subquery
        that names them: an expiry marks 50,000 clips and 150,000 objects, which row by row (or
        in IN lists, which PostgreSQL's driver re-parses per statement) cost seconds, and as one
        bulk insert (PostgreSQL: COPY) and one statement each, a fraction of one."""
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS work_keys (key TEXT NOT NULL)")
        self.conn.execute("DELETE FROM work_keys")
        self.conn.executemany("INSERT INTO work_keys (key) VALUES (?)", [(k,) for k in set(keys)])
        return "SELECT key FROM work_keys"

    def expire_quarantined(self, qids: Iterable[str], at: str) -> None:
        """Mark quarantined items expired at ``at`` (their rows stay as tombstones)."""
        self.conn.execute(f"UPDATE quarantine SET state = ?, expired_at = ? WHERE qid IN ({self._keys_table(qids)})",
                          (ClipState.EXPIRED, at))

    def expire_clips(self, clip_ids: Iterable[str], at: str) -> None:
        """Mark clips expired at ``at`` (their rows stay as tombstones)."""
        self.conn.execute(f"UPDATE clips SET state = ?, expired_at = ? WHERE clip_id IN ({self._keys_table(clip_ids)})",
                          (ClipState.EXPIRED, at))

    def mark_objects_deleted(self, hashes: Iterable[str], at: str) -> None:
        self.conn.execute(f"UPDATE objects SET deleted_at = ? WHERE sha256 IN ({self._keys_table(hashes)})", (at,))

    def held_clip_ids(self) -> set[str]:
        """Ids of the clips and quarantined items under an active hold (by the index)."""
        return {r[0] for r in self._rows("SELECT DISTINCT clip_id FROM holds WHERE released_at IS NULL")}

    def erase_expired_officers(self, ingested_before: str) -> None:
        """Drop the officer's name from expired clips ingested at or before ``ingested_before``."""
        self.conn.execute("UPDATE clips SET officer = NULL WHERE state = ? AND officer IS NOT NULL "
                          "AND ingested_at <= ?", (ClipState.EXPIRED, ingested_before))

    def indexed_object_hashes(self) -> set[str]:
        """Every object the index has a row for, deleted or not."""
        return {h for (h,) in self._rows("SELECT sha256 FROM objects")}

    def index_deleted_object(self, sha256: str, size: int, kind: str, at: str) -> None:
        """A tombstone row for an object deleted at ``at`` that had none (an orphan)."""
        self.conn.execute("INSERT INTO objects (sha256, size, kind, created_at, deleted_at) "
                          "VALUES (?, ?, ?, ?, ?)", (sha256, size, kind, at, at))

    def deleted_object_hashes(self) -> Cursor:
        """(sha256,) of each object whose row says deleted."""
        return self._rows("SELECT sha256 FROM objects WHERE deleted_at IS NOT NULL")

    def undeleted_object_hashes(self) -> set[str]:
        return {sha for (sha,) in self._rows("SELECT sha256 FROM objects WHERE deleted_at IS NULL")}

    def event_leaves(self) -> Cursor:
        """(log index, leaf) of the whole log, in order (streamed)."""
        return self._rows("SELECT idx, leaf FROM events ORDER BY idx")

    def segment_hashes_by_clip(self) -> Cursor:
        """(clip id, sha256) of every segment."""
        return self._rows("SELECT clip_id, sha256 FROM segments")

    def clip_rows_checked(self) -> Cursor:
        """The clips' columns that expiry compares with the log (CLIP_CHECKED order)."""
        return self._rows(
            "SELECT clip_id, device_id, sequence, started_at, ingested_at, manifest_sha256, journal_sha256, state "
            "FROM clips")

    def quarantine_object_hashes_by_qid(self) -> Cursor:
        """(qid, sha256) of every kept file of quarantined items."""
        return self._rows("SELECT qid, sha256 FROM quarantine_objects")

    def quarantine_rows_checked(self) -> Cursor:
        """The quarantine columns that expiry compares with the log (QUARANTINE_CHECKED order)."""
        return self._rows(
            "SELECT qid, clip_id, device_id, manifest_sha256, journal_sha256, at, started_at, state FROM quarantine")

    def hold_rows_checked(self) -> Cursor:
        """(event index, clip id, kind, released_at, release event) of every hold row."""
        return self._rows("SELECT event_index, clip_id, kind, released_at, release_event FROM holds")

    def live_object_hashes(self, candidates: Iterable[str]) -> set[str]:
        """Which of ``candidates`` a stored clip or a quarantined item still names: every live
        object in one pass over the live items' rows (index scans by state), then a set
        intersection. Asking per candidate cost six lookups each: 150,000 candidates of an
        expiry over 50,000 clips took seconds; the live rows are what a store keeps anyway."""
        wanted = set(candidates)
        if not wanted:
            return set()
        return wanted.intersection(h for (h,) in self._rows(self._LIVE_SQL, [state for _, state in self._LIVE_QUERIES]))

    # -- deletion on four-eyes approval (deletion.py) -------------------------------------------

    def deletion_events(self, kind: str) -> list[tuple[int, str, str, bytes]]:
        """(index, clip, time, leaf) of every delete-request or delete-approve event, oldest first."""
        return self._rows("SELECT idx, clip_id, time, leaf FROM events WHERE kind = ? ORDER BY idx",
                          (kind,)).fetchall()

    def deletion_request_clip(self, index: int, kind: str) -> str | None:
        """The clip of deletion request ``index`` (an event of ``kind``), None if there is none."""
        row = self._one("SELECT clip_id FROM events WHERE idx = ? AND kind = ?", (index, kind))
        return None if row is None else row[0]

    def deletion_clip_state(self, clip_id: str) -> str | None:
        row = self._one("SELECT state FROM clips WHERE clip_id = ?", (clip_id,))
        return None if row is None else row[0]

    # -- verify (verify.py) ---------------------------------------------------------------------

    def snapshot(self) -> AbstractContextManager:
        """A read transaction: every statement inside sees one state (verify, report)."""
        if isinstance(self.conn, sqlite3.Connection):
            return db.snapshot(self.conn)
        return self.conn.snapshot()  # a central index brings its own (postgres.PgIndex.snapshot)

    def reader_source(self, local_file: Path) -> ReaderSource:
        """How another process reads the very state of this connection's snapshot (verify's
        workers): the SQLite file ``local_file`` (its WAL keeps the snapshot's pages), or the
        PostgreSQL URL and the id of the exported snapshot. Call inside ``snapshot()``."""
        from evidence_store.postgres import PgIndex

        if isinstance(self.conn, PgIndex):
            return (CENTRAL, self.conn.url, self.conn.export_snapshot())
        return (LOCAL, str(local_file), None)

    def log_end(self) -> int:
        """One past the highest log index (the size, if no entry is missing)."""
        row = self._one("SELECT max(idx) FROM events")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def stored_hash_extent(self) -> tuple[int, int | None]:
        """(count, highest id) of the stored Merkle hashes."""
        row = self._one("SELECT count(*), max(id) FROM hashes")
        return (0, None) if row is None else (int(row[0]), row[1])

    def stored_hash_bounds(self) -> tuple[int | None, int | None]:
        """(lowest id, highest id) of the stored Merkle hashes; (None, None) if there is none."""
        # Two subqueries: SQLite answers a lone min() or max() from the key, both at once by a scan.
        row = self._one("SELECT (SELECT min(id) FROM hashes), (SELECT max(id) FROM hashes)")
        return (None, None) if row is None else (row[0], row[1])

    def stored_hashes(self, lo: int = 0, hi: int | None = None) -> list[bytes]:
        """The stored hashes with ids in [lo, hi), in id order (all from ``lo`` if ``hi`` is None)."""
        if hi is None:
            rows = self._rows("SELECT hash FROM hashes WHERE id >= ? ORDER BY id", (lo,))
        else:
            rows = self._rows("SELECT hash FROM hashes WHERE id >= ? AND id < ? ORDER BY id", (lo, hi))
        return [bytes(h) for (h,) in rows]

    def stored_hashes_by_id(self, ids: list[int]) -> dict[int, bytes]:
        """The stored hashes of the given ids (a few: one per tree level) that exist."""
        marks = ",".join("?" * len(ids))
        return {i: bytes(h) for i, h in self._rows(f"SELECT id, hash FROM hashes WHERE id IN ({marks})", ids)}

    def stored_hashes_matching(self, first: int, expected: bytes) -> int:
        """How many stored hashes with ids first, first+1, ... equal their 32-byte slice of
        ``expected`` (the engine compares; nothing comes back but the count)."""
        row = self._one("SELECT count(*) FROM hashes WHERE id >= ? AND id < ? "
                        "AND hash = substr(?, CAST((id - ?) * 32 + 1 AS INTEGER), 32)",
                        (first, first + len(expected) // 32, expected, first))
        return 0 if row is None else int(row[0])

    def stored_hash_ids(self) -> Cursor:
        """(id, hash) of every stored hash in id order (to find a gap)."""
        return self._rows("SELECT id, hash FROM hashes ORDER BY id")

    def events_in_range(self, lo: int, hi: int) -> Cursor:
        """(idx, subject, leaf, kind, clip, device, time) of the log entries in [lo, hi), in order."""
        return self._rows("SELECT idx, subject, leaf, kind, clip_id, device_id, time FROM events "
                          "WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi))

    def text_count(self) -> int:
        row = self._one("SELECT count(*) FROM texts")
        return 0 if row is None else int(row[0])

    def event_texts_in_range(self, lo: int, hi: int) -> Cursor:
        """(idx, link field, salt, text, same field, digest, clip, retain_until, erased_at)
        of the personal texts linked to the entries in [lo, hi), ordered like the entries
        (event_texts' key). "same field": whether the text row names the link's field (1; 0 or
        None if not, or if the row is missing), compared by the engine: two million fewer strings
        for a verify to build."""
        return self._rows("SELECT et.idx, et.field, t.salt, t.text, t.field = et.field, t.digest, t.clip_id, "
                          "t.retain_until, t.erased_at FROM event_texts et LEFT JOIN texts t USING (text_id) "
                          "WHERE et.idx >= ? AND et.idx < ? ORDER BY et.idx, et.field", (lo, hi))

    def clip_objects_in_state(self, state: str) -> list[tuple[str, str, str]]:
        """(clip, manifest, journal) of the clips in ``state``."""
        return self._rows("SELECT clip_id, manifest_sha256, journal_sha256 FROM clips WHERE state = ?",
                          (state,)).fetchall()

    def segment_objects_in_state(self, state: str) -> list[tuple[str, str]]:
        """(clip, segment object) of the clips in ``state``."""
        return self._rows("SELECT s.clip_id, s.sha256 FROM segments s JOIN clips c USING (clip_id) WHERE c.state = ?",
                          (state,)).fetchall()

    def quarantine_in_state(self, state: str) -> list[tuple[str, str | None, str | None, str | None]]:
        """(qid, claimed clip, manifest, journal) of the quarantined items in ``state``."""
        return self._rows("SELECT qid, clip_id, manifest_sha256, journal_sha256 FROM quarantine WHERE state = ?",
                          (state,)).fetchall()

    def device_keys(self) -> dict[str, str]:
        return dict(self._rows("SELECT device_id, public_key FROM devices").fetchall())

    def ingest_leaves(self, kind: str) -> list[tuple[str, bytes]]:
        """(clip, leaf) of every event of ``kind`` (ingest)."""
        return [(c, bytes(leaf)) for c, leaf in self._rows("SELECT clip_id, leaf FROM events WHERE kind = ?", (kind,))]

    def clips_in_state(self, state: str) -> list[tuple[str, str, str, str]]:
        """(clip, device, manifest, journal) of the clips in ``state``, by clip id."""
        return self._rows("SELECT clip_id, device_id, manifest_sha256, journal_sha256 FROM clips WHERE state = ? "
                          "ORDER BY clip_id", (state,)).fetchall()

    def clip_ingest_columns(self) -> list[tuple]:
        """(clip, device, sequence, trigger, started_at, state, late) of every clip row, by clip id."""
        return self._rows("SELECT clip_id, device_id, sequence, trigger, started_at, state, late "
                          "FROM clips ORDER BY clip_id").fetchall()

    def quarantine_states(self) -> list[tuple[str, str]]:
        return self._rows("SELECT qid, state FROM quarantine ORDER BY qid").fetchall()

    def hold_release_rows(self) -> list[tuple]:
        """(hold id, clip, kind, event index, released_at, release event) of every hold row."""
        return self._rows("SELECT hold_id, clip_id, kind, event_index, released_at, release_event FROM holds").fetchall()

    def clip_state_rows(self) -> list[tuple]:
        """Every clip row's columns that 7d compares with the log."""
        return self._rows("SELECT clip_id, officer, manifest_sha256, journal_sha256, ingested_at, flags, "
                          "justification, late, expired_at, ended_at, homes FROM clips").fetchall()

    def segment_state_rows(self) -> list[tuple]:
        """(clip, name, bytes, sha256, status) of every segment row."""
        return self._rows("SELECT clip_id, name, bytes, sha256, status FROM segments").fetchall()

    def quarantine_object_state_rows(self) -> list[tuple]:
        """(qid, name, sha256, size) of every kept quarantined object."""
        return self._rows("SELECT qid, name, sha256, size FROM quarantine_objects").fetchall()

    def hold_text_rows(self) -> list[tuple]:
        """(hold id, event index, case, reason and actor text ids, created_at, after_view) of every hold."""
        return self._rows("SELECT hold_id, event_index, case_text, reason_text, actor_text, created_at, after_view "
                          "FROM holds").fetchall()

    def device_state_rows(self) -> list[tuple]:
        """Every device row's columns that 7d compares with the log."""
        return self._rows("SELECT device_id, public_key, profile, officer, revoked, revoked_reason, enrolled_at, "
                          "last_sequence, last_manifest_sha256, last_docking FROM devices").fetchall()

    def object_deletions(self) -> dict[str, str | None]:
        """sha256 -> deleted_at (None: kept) of every objects row."""
        return dict(self._rows("SELECT sha256, deleted_at FROM objects").fetchall())

    def text_links(self, idx: int) -> dict[str, int]:
        """field -> text id of the personal texts linked to log entry ``idx``."""
        return dict(self._rows("SELECT field, text_id FROM event_texts WHERE idx = ?", (idx,)).fetchall())

    def text_links_outside(self, size: int) -> list[int]:
        """Log indexes outside [0, size) that personal texts are linked to."""
        # Two ranges of the key, not one OR: SQLite scans the whole table for the OR.
        return [idx for (idx,) in self._rows("SELECT DISTINCT idx FROM event_texts WHERE idx < 0 UNION "
                                             "SELECT DISTINCT idx FROM event_texts WHERE idx >= ? ORDER BY 1",
                                             (size,))]

    def unlinked_texts(self) -> list[int]:
        """Ids of personal texts no log entry links to."""
        # An anti-join, not NOT IN: PostgreSQL runs NOT IN over a subquery larger than its
        # work_mem once per row (hours at a million events); both engines plan this one linearly.
        return [t for (t,) in self._rows("SELECT t.text_id FROM texts t LEFT JOIN event_texts et "
                                         "ON et.text_id = t.text_id WHERE et.text_id IS NULL")]

    def copied_texts(self, fields: tuple[str, ...], kinds: tuple[str, ...]) -> list[tuple[int, str, str | None]]:
        """(idx, field, text or None if erased) of the ``fields`` texts of the events of ``kinds``:
        the texts an index row copies (officer, reason of ingest, assign, revoke)."""
        marks_f, marks_k = ",".join("?" * len(fields)), ",".join("?" * len(kinds))
        return self._rows(f"SELECT et.idx, et.field, t.text FROM event_texts et JOIN texts t USING (text_id) "
                          f"WHERE et.field IN ({marks_f}) AND et.idx IN "
                          f"(SELECT idx FROM events WHERE kind IN ({marks_k}))", (*fields, *kinds)).fetchall()

    # -- report (report.py) ---------------------------------------------------------------------

    def _report_count(self, sql: str, params: Iterable[Any]) -> int:
        row = self._one(sql, params)
        return 0 if row is None else int(row[0])

    def report_clip_triggers(self, lo: str, hi: str) -> list[tuple[str, str | None]]:
        """(trigger, justification) of the clips recorded in [lo, hi)."""
        return self._rows("SELECT trigger, justification FROM clips WHERE started_at >= ? AND started_at < ?",
                          (lo, hi)).fetchall()

    def report_holds_by_kind(self, lo: str, hi: str) -> dict[str, int]:
        return dict(self._rows("SELECT kind, COUNT(*) FROM holds WHERE created_at >= ? AND created_at < ? "
                               "GROUP BY kind ORDER BY kind", (lo, hi)).fetchall())

    def report_holds_without_view(self, lo: str, hi: str) -> int:
        return self._report_count("SELECT COUNT(*) FROM holds WHERE created_at >= ? AND created_at < ? AND after_view = 0",
                           (lo, hi))

    def report_clips_expired(self, lo: str, hi: str) -> int:
        return self._report_count("SELECT COUNT(*) FROM clips WHERE expired_at >= ? AND expired_at < ?", (lo, hi))

    def report_quarantine_expired(self, lo: str, hi: str) -> int:
        return self._report_count("SELECT COUNT(*) FROM quarantine WHERE expired_at >= ? AND expired_at < ?", (lo, hi))

    def report_late_arrivals(self, lo: str, hi: str) -> int:
        return self._report_count("SELECT COUNT(*) FROM clips WHERE ingested_at >= ? AND ingested_at < ? AND late = 1",
                           (lo, hi))

    def report_event_count(self, kind: str, lo: str, hi: str) -> int:
        return self._report_count("SELECT COUNT(*) FROM events WHERE kind = ? AND time >= ? AND time < ?", (kind, lo, hi))

    def report_event_leaves(self, kind: str, lo: str, hi: str) -> list[bytes]:
        return [bytes(leaf) for (leaf,) in self._rows("SELECT leaf FROM events WHERE kind = ? AND time >= ? "
                                                      "AND time < ?", (kind, lo, hi))]

    def report_last_releases(self) -> dict[str, str]:
        """clip -> when its last released hold was released."""
        return dict(self._rows("SELECT clip_id, MAX(released_at) FROM holds WHERE released_at IS NOT NULL "
                               "GROUP BY clip_id").fetchall())

    def report_expired_on_time(self, lo: str, hi: str) -> list[tuple[str, str, str, str]]:
        """(clip, started, ingested, expired) of clips expired in [lo, hi) that did not arrive late."""
        return self._rows("SELECT clip_id, started_at, ingested_at, expired_at FROM clips "
                          "WHERE expired_at >= ? AND expired_at < ? AND late = 0", (lo, hi)).fetchall()

    def report_held_clips(self) -> set[str]:
        return {c for (c,) in self._rows("SELECT clip_id FROM holds WHERE released_at IS NULL")}

    def report_clips_on_time(self, state: str) -> list[tuple[str, str, str]]:
        """(clip, started, ingested) of the clips in ``state`` that did not arrive late."""
        return self._rows("SELECT clip_id, started_at, ingested_at FROM clips WHERE state = ? AND late = 0",
                          (state,)).fetchall()

    # -- migration (migrate.py) -----------------------------------------------------------------
    # A local store's tables are read whole and written into a central database of the same
    # layout. Table and column names come from the SQLite schema (so no table is forgotten) and
    # are checked before they become part of a statement. The migration is the one job that
    # holds the local write lock itself for its whole run (migrate_lock ... migrate_freeze).

    def migrate_tables(self) -> list[str]:
        """The local database's own tables (SQLite's schema), by name."""
        return [_identifier(name) for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name")]

    def migrate_layout(self, table: str) -> tuple[list[str], list[str]]:
        """(columns in order, primary-key columns in key order) of a local table."""
        rows = self.conn.execute(f'PRAGMA table_info("{_identifier(table)}")').fetchall()
        columns = [_identifier(r[1]) for r in rows]
        key = [_identifier(r[1]) for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
        return columns, key

    def migrate_rows(self, table: str, columns: list[str]) -> Cursor:
        """Every row of ``table`` (in no particular order), streamed."""
        names = ", ".join(f'"{_identifier(c)}"' for c in columns)
        return self.conn.execute(f'SELECT {names} FROM "{_identifier(table)}"')

    def migrate_has_rows(self, table: str) -> bool:
        return self.conn.execute(f'SELECT 1 FROM "{_identifier(table)}" LIMIT 1').fetchone() is not None

    def migrate_insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Insert rows as they are. Names unquoted (checked by _identifier, and written so in both
        schemas): PostgreSQL turns exactly this plain form into one COPY per batch."""
        names = ", ".join(_identifier(c) for c in columns)
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {_identifier(table)} ({names}) VALUES ({marks})", rows)

    def migrate_live_objects(self) -> dict[str, int]:
        """sha256 -> size of every object the index does not mark deleted."""
        return dict(self.conn.execute("SELECT sha256, size FROM objects WHERE deleted_at IS NULL"))

    def migrate_known_objects(self) -> set[str]:
        """Every object name the index ever recorded (live or deleted)."""
        return {sha for (sha,) in self.conn.execute("SELECT sha256 FROM objects")}

    def migrate_lock(self, wait_ms: int) -> None:
        """Take the local write lock (BEGIN IMMEDIATE), waiting at most ``wait_ms`` for a writer
        that holds it. The caller ends it with migrate_freeze or migrate_unlock."""
        from evidence_store.db import database_error

        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(exc, "lock") from exc

    def migrate_unlock(self) -> None:
        """Release the local write lock without changing anything (ROLLBACK)."""
        if getattr(self.conn, "in_transaction", False):
            self.conn.execute("ROLLBACK")

    def migrate_frozen(self) -> bool:
        """Whether migrate_freeze has frozen this database."""
        row = self.conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
                                (MIGRATE_TRIGGER + "%",)).fetchone()
        return row is not None and bool(row[0])

    def migrate_freeze(self, tables: list[str], message: str) -> None:
        """Make every later write to ``tables`` fail with ``message`` (a trigger per table and
        statement kind), then COMMIT, which releases the lock taken by migrate_lock."""
        text = message.replace("'", "''")
        for table in tables:
            for action in ("INSERT", "UPDATE", "DELETE"):
                name = f"{MIGRATE_TRIGGER}{_identifier(table)}_{action.lower()}"
                self.conn.execute(f'CREATE TRIGGER IF NOT EXISTS "{name}" BEFORE {action} ON "{_identifier(table)}" '
                                  f"BEGIN SELECT RAISE(ABORT, '{text}'); END")
        self.conn.execute("COMMIT")



#: Name prefix of the triggers with which migrate freezes a local database that moved.

    # -- one dock per camera (dock coordination) --------------------------------------------------
    # PostgreSQL only (store/coordination.py): session-level advisory locks, which the server
    # releases when the session ends, so a dock that dies never leaves a camera locked. A local
    # store locks a file instead.

    def name_session(self, name: str) -> None:
        """Name this session in pg_stat_activity, so a dock that waits can say whom it waits for."""
        self._one("SELECT set_config('application_name', ?, false)", (name,))

    def probe_session(self, idle_s: int, interval_s: int, count: int) -> None:
        """Have the server probe this session's TCP connection, so that a dock machine that
        vanishes (power cut: no FIN ever comes) frees its cameras' locks in about
        idle + interval * count seconds, not after the operating system's two hours. A session
        on a Unix socket ignores these."""
        self._one("SELECT set_config('tcp_keepalives_idle', ?, false), set_config('tcp_keepalives_interval', ?, false), "
                  "set_config('tcp_keepalives_count', ?, false)", (str(idle_s), str(interval_s), str(count)))

    def try_lock_camera(self, space: int, key: int) -> bool:
        row = self._one("SELECT pg_try_advisory_lock(CAST(? AS integer), CAST(? AS integer))", (space, key))
        return bool(row and row[0])

    def lock_camera(self, space: int, key: int) -> None:
        self._one("SELECT pg_advisory_lock(CAST(? AS integer), CAST(? AS integer))", (space, key))

    def unlock_camera(self, space: int, key: int) -> None:
        self._one("SELECT pg_advisory_unlock(CAST(? AS integer), CAST(? AS integer))", (space, key))

    def camera_lock_holder(self, space: int, key: int) -> tuple | None:
        """(application name, client address or None, server pid) of the session holding the lock."""
        return self._one(
            "SELECT a.application_name, host(a.client_addr), a.pid FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = CAST(CAST(? AS integer) AS oid) AND l.objid = CAST(CAST(? AS integer) AS oid) "
            "AND l.objsubid = 2", (space, key))


MIGRATE_TRIGGER = "bodycam_moved_"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")


def _identifier(name: str) -> str:
    """A table or column name read from a schema, checked before it enters a statement."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        from evidence_store.errors import IntegrityError

        raise IntegrityError(f"the database schema names {str(name)[:40]!r}, which is not a table or column "
                             "name the store uses", where="schema")
    return name


def iterate(cursor: Cursor) -> Iterator[tuple]:
    """Rows of a cursor one by one (a PostgreSQL reader streams them from a server cursor)."""
    yield from cursor
