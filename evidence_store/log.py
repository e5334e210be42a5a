"""The event log in SQLite: append leaves, keep RFC 9162 stored hashes, sign checkpoints, prove.

Tables (db.py): ``events`` (one row per leaf: index, kind, subject, leaf bytes), ``hashes`` (the
stored complete-subtree hashes of merkle.py, by storage index), ``checkpoints`` (every signed
checkpoint the store ever issued, by tree size), ``texts``/``event_texts`` (the erasable personal
texts behind the salted digests in the leaves).

Every method that writes must run inside ``db.transaction`` (BEGIN IMMEDIATE), which is what makes
"read the size, append at that size" safe when two docks append at once.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store import merkle
from evidence_store.clip.note import NoteSigner, NoteVerifier
from evidence_store.errors import IntegrityError

if TYPE_CHECKING:
    from evidence_store.postgres import PgIndex

log = logging.getLogger(__name__)

#: Subjects whose heads one statement reads (``EventLog.heads``); well below both engines' limits
#: on parameters and expression depth.
HEADS_PER_QUERY = 200


@dataclass(frozen=True)
class Appended:
    """Where an event went: its log index and its leaf bytes."""

    index: int
    leaf: bytes


class EventLog:
    """The log over one SQLite connection. ``signer`` may be None for read-only use (verify)."""

    def __init__(self, conn: sqlite3.Connection | PgIndex, origin: str, signer: NoteSigner | None,
                 verifier: NoteVerifier):
        self.conn = conn
        self.origin = origin
        self.signer = signer
        self.verifier = verifier

    # -- reading -----------------------------------------------------------------------------

    def size(self) -> int:
        row = self.conn.execute("SELECT MAX(idx) FROM events").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def read_hash(self, indexes: list[int]) -> list[bytes]:
        """merkle.ReadHash over the ``hashes`` table; ProofError if one is missing."""
        unique = sorted(set(indexes))
        found: dict[int, bytes] = {}
        for start in range(0, len(unique), 500):  # SQLite's parameter limit
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(self.conn.execute(f"SELECT id, hash FROM hashes WHERE id IN ({marks})", part))
        try:
            return [found[i] for i in indexes]
        except KeyError as exc:
            raise merkle.ProofError(f"stored hash {exc.args[0]} is missing from the log",
                                    where=f"storage index {exc.args[0]}") from None

    def head(self, subject: str) -> str | None:
        """Leaf hash (hex) of the newest event about ``subject``, or None."""
        row = self.conn.execute(
            "SELECT leaf FROM events WHERE subject = ? ORDER BY idx DESC LIMIT 1", (subject,)
        ).fetchone()
        return None if row is None else ev.leaf_hash_hex(row[0])

    def heads(self, subjects: Iterable[str]) -> dict[str, str | None]:
        """``head`` of many subjects, in one statement per HEADS_PER_QUERY of them: an append of
        a thousand events about a hundred clips must not wait for a hundred round trips to a
        central database. Each subject is still one indexed lookup of its newest entry."""
        wanted = list(dict.fromkeys(subjects))
        out: dict[str, str | None] = dict.fromkeys(wanted)
        for start in range(0, len(wanted), HEADS_PER_QUERY):
            part = wanted[start:start + HEADS_PER_QUERY]
            values = ", ".join("(?)" for _ in part)
            for subject, leaf in self.conn.execute(
                    "SELECT v.column1, (SELECT e.leaf FROM events e WHERE e.subject = v.column1 "
                    f"ORDER BY e.idx DESC LIMIT 1) FROM (VALUES {values}) AS v", part):
                if leaf is not None:
                    out[subject] = ev.leaf_hash_hex(bytes(leaf))
        return out

    def leaf(self, index: int) -> bytes:
        row = self.conn.execute("SELECT leaf FROM events WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise merkle.ProofError(f"log entry {index} does not exist", where=f"log index {index}")
        return row[0]

    def root(self, size: int | None = None) -> bytes:
        return merkle.tree_hash(self.size() if size is None else size, self.read_hash)

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """Every kept checkpoint (size, signed note), oldest first."""
        return [(s, bytes(n)) for s, n in self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> bytes | None:
        row = self.conn.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else bytes(row[0])

    def checkpoint_at(self, size: int) -> bytes | None:
        """The signed checkpoint of tree size ``size``, if one was kept."""
        row = self.conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return None if row is None else bytes(row[0])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(index, size, self.read_hash)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(old_size, new_size, self.read_hash)

    def tlog_proof(self, index: int, checkpoint_note: bytes) -> str:
        """A C2SP tlog-proof of leaf ``index`` against the signed ``checkpoint_note``."""
        checkpoint = cpmod.open_checkpoint(checkpoint_note, self.verifier, self.origin)
        return cpmod.format_tlog_proof(index, self.inclusion_proof(index, checkpoint.size), checkpoint_note)

    # -- writing (inside db.transaction) -----------------------------------------------------

    def append(self, event: ev.Event, *, retain_until: str) -> Appended:
        """Append one event. See append_many."""
        return self.append_many([event], retain_until=retain_until)[0]

    def append_many(self, events: Iterable[ev.Event], *, retain_until: str) -> list[Appended]:
        """Append events in order: leaf rows, personal texts, stored hashes. Returns where each went.

        Reads the log size and the Merkle frontier once, so a batch of 100,000 costs one pass
        (the benchmark) and a single event a handful of indexed reads. ``retain_until`` is when
        the personal texts of these events may be erased (see Store).
        """
        conn = self.conn
        start = self.size()
        row = conn.execute("SELECT MAX(text_id) FROM texts").fetchone()
        text_id = 0 if row[0] is None else row[0]
        events = list(events)
        heads = self.heads(event.subject for event in events)
        event_rows, text_rows, link_rows, leaf_hashes, out = [], [], [], [], []
        index = start
        for event in events:
            digests = {}
            for name, text in event.personal.items():
                salt = ev.new_salt()
                digest = ev.salted_digest(salt, text)
                digests[name] = digest
                text_id += 1
                text_rows.append((text_id, name, salt, text, digest, event.clip, retain_until))
                link_rows.append((index, name, text_id))
            leaf = ev.leaf_bytes(event, index, heads[event.subject], digests)
            lh = merkle.leaf_hash(leaf)
            heads[event.subject] = lh.hex()
            leaf_hashes.append(lh)
            event_rows.append((index, event.kind, event.subject, event.clip, event.device, event.time, leaf))
            out.append(Appended(index, leaf))
            index += 1
        if not out:
            return out
        first, hashes = merkle.stored_hashes_for_appends(start, leaf_hashes, self.read_hash if start else None)
        conn.executemany("INSERT INTO events (idx, kind, subject, clip_id, device_id, time, leaf) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", event_rows)
        conn.executemany("INSERT INTO texts (text_id, field, salt, text, digest, clip_id, retain_until) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", text_rows)
        conn.executemany("INSERT INTO event_texts (idx, field, text_id) VALUES (?, ?, ?)", link_rows)
        conn.executemany("INSERT INTO hashes (id, hash) VALUES (?, ?)",
                         zip(range(first, first + len(hashes)), hashes))
        return out

    def sign_checkpoint(self, now: str) -> bytes:
        """Sign and keep a checkpoint of the current tree (inside the appending transaction, so
        the checkpoint and the leaves it covers commit together). Returns the note."""
        if self.signer is None:
            raise RuntimeError("this log was opened without its signing key")
        size = self.size()
        existing = self.conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        if existing is not None:
            return bytes(existing[0])
        note = cpmod.sign_checkpoint(self.origin, size, self.root(size), self.signer)
        self.conn.execute("INSERT INTO checkpoints (size, note, created_at) VALUES (?, ?, ?)", (size, note, now))
        return note

    # -- texts -------------------------------------------------------------------------------

    def texts_of(self, index: int) -> dict[str, str | None]:
        """Personal texts of event ``index`` by field, each proven by the salted digest in the
        leaf; None where erased. A text whose row an insider edited no longer matches its leaf,
        and a decision taken on it (the four-eyes check compares persons) must not trust it:
        IntegrityError names the event."""
        body = ev.parse_leaf(self.leaf(index), f"event {index}")
        out: dict[str, str | None] = {}
        for field, salt, text in self.conn.execute(
                "SELECT et.field, t.salt, t.text FROM event_texts et JOIN texts t USING (text_id) "
                "WHERE et.idx = ?", (index,)):
            # A salt of another length would let bytes move between salt and text (same digest).
            if text is not None and (salt is None or len(salt) != ev.SALT_SIZE or not isinstance(text, str)
                                     or body.get(field) != ev.salted_digest(bytes(salt), text)):
                raise IntegrityError(f"event {index}: the stored {field} does not match its log entry")
            out[field] = text
        return out

    def erase_texts(self, now: str, keep_clips: Sequence[str]) -> int:
        """Erase salt and text of every personal text whose retention ended, except those about a
        clip in ``keep_clips`` (held clips: their case references are needed). Returns the count."""
        keep = set(keep_clips)
        rows = self.conn.execute(
            "SELECT text_id, clip_id FROM texts WHERE erased_at IS NULL AND retain_until <= ?", (now,)
        ).fetchall()
        ids = [(now, tid) for tid, clip in rows if clip not in keep]
        self.conn.executemany("UPDATE texts SET salt = NULL, text = NULL, erased_at = ? WHERE text_id = ?", ids)
        return len(ids)
