"""``verify``: check everything and list every fault, each typed, named and with a repair hint.

Like restic's ``check``, this never stops at the first problem: an evidence officer must learn the
whole extent of a damage (one altered object, or a rewritten log?) before deciding what to do.

Steps (numbered as in the code):
 1. every log entry exists (indexes dense) and every stored Merkle hash exists;
 2. leaf hashes and all stored hashes are recomputed from the leaf bytes (each worker those its
    range's appends wrote, the parent those over two ranges); on a mismatch each bad entry is
    localised: a leaf whose bytes no longer match its stored hash, or a stored node that no
    longer matches its two children;
 3. every checkpoint the store ever signed: its signature, that the log still has its size
    (truncation), that the root recomputed from the leaves matches (rewriting), and consistency
    between consecutive checkpoints (RFC 9162 proofs);
 4. every event: valid leaf, its own index, ``prev`` = the previous event about the same subject;
    every personal text still held matches its salted digest in the leaf;
 5. every object a live clip or quarantine item names is present and re-hashes to its name;
    objects of expired clips are gone;
 6. every stored clip: manifest and journal signatures against the enrolled device key, segment rows
    against the manifest, the ingest event against the index;
 7. the index rows that decide retention and the report, against the log (the log is signed, the
    index is not): each event row's kind, clip, device and time columns against its leaf; each
    clip row's start, trigger, sequence and device against its ingest event; the active holds
    rebuilt from hold and release events against the holds table; an expire event for every
    expired row. An altered ``started_at`` or a deleted hold row would otherwise change what
    expiry deletes without a trace;
 7d. every other index column against the state derived from the leaves (logstate): clips, segments,
    quarantine, holds, devices, objects (deleted exactly when an expire event says), personal
    texts (retention date, links); 3b. the checkpoint file outside the database; 9. the config
    files against the latest config event;
 8. (notes, not faults) object files no index row names, and temp files: an interrupted ingest
    leaves them, which is no tampering (the camera keeps the clip until it has a receipt).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import multiprocessing
import operator
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store import logstate, merkle, retention
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.clip.journal import parse_journal
from evidence_store.clip.manifest import parse_manifest
from evidence_store.db import DB_FILE
from evidence_store.errors import EvidenceError
from evidence_store.index import open_reader
from evidence_store.logscan import (
    KEPT_KINDS,
    RangeScan,
    compare_stored_hashes,
    text_retention,
    where,
)
from evidence_store.objects import (  # noqa: F401 - the object fault kinds are verify's too (v.OBJECT_MISSING)
    OBJECT_ALTERED,
    OBJECT_MISSING,
    OBJECT_UNLOCKED,
    LockTarget,
)
from evidence_store.queries import Queries, ReaderSource
from evidence_store.vocabulary import ClipState, Justification

log = logging.getLogger(__name__)

HINT_OBJECT = ("restore objects/{p}/{sha} from a backup (any copy with this SHA-256 is the right one), "
               "then run 'bodycam-evidence verify' again")
HINT_LOG = ("the log database was altered: restore evidence.db from a backup and compare its "
            "'bodycam-evidence checkpoint' with the checkpoints published to the data-protection officer")
HINT_CHECKPOINT = ("a kept checkpoint was altered or the log was rewritten; compare with the published "
                   "checkpoints and restore evidence.db from a backup")
HINT_EXPIRE = "run 'bodycam-evidence expire' to finish the interrupted deletion"
HINT_CLIP = "the clip's signed files or index rows were altered: restore them from a backup, then verify again"

# Fault kinds (stable strings for scripts and tests).
LOG_ENTRY_MISSING = "log-entry-missing"
LEAF_ALTERED = "leaf-altered"
STORED_HASH_ALTERED = "stored-hash-altered"
STORED_HASH_MISSING = "stored-hash-missing"
CHECKPOINT_INVALID = "checkpoint-invalid"
LOG_TRUNCATED = "log-truncated"
LOG_REWRITTEN = "log-rewritten"
EVENT_INVALID = "event-invalid"
CHAIN_BROKEN = "chain-broken"
TEXT_ALTERED = "text-altered"
# object-missing, object-altered, object-unlocked: one definition, in objects.py (both backends).
OBJECT_NOT_DELETED = "object-not-deleted"
MANIFEST_INVALID = "manifest-invalid"
JOURNAL_INVALID = "journal-invalid"
INDEX_MISMATCH = "index-mismatch"
EVENT_ROW_MISMATCH = "event-row-mismatch"
HOLD_MISMATCH = "hold-mismatch"
EXPIRE_MISSING = "expire-event-missing"
TEXT_ERASED_EARLY = "text-erased-early"
LOG_UNSIGNED = "log-unsigned"
CHECKPOINT_MISSING = "checkpoint-missing"
CONFIG_MISMATCH = "config-mismatch"
ROW_MISMATCH = "row-mismatch"
# Notes (not faults): leftovers of interrupted writes.
ORPHAN_OBJECT = "orphan-object"
STRAY_FILE = "stray-file"
TMP_LEFTOVER = "tmp-leftover"
HINT_ORPHAN = ("ciphertext copied by a dock that stopped before its ingest committed: harmless; the "
               "camera keeps the clip until it has a receipt, and 'bodycam-evidence expire' deletes "
               "the copy once it is older than the retention")


@dataclass(frozen=True)
class Fault:
    """One problem: ``kind`` (constants above), ``where`` (clip, object, log index or checkpoint),
    a one-line ``message`` and a ``hint`` naming what repairs it."""

    kind: str
    where: str
    message: str
    hint: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class LogData:
    """What one streaming pass over the log keeps: never the million leaves themselves."""

    size: int  # entries present without a gap
    leaf_hashes: bytes  # RFC 9162 leaf hashes, in order, 32 bytes each
    #: Read the stored Merkle hashes by storage index (merkle.ReadHash), once every one of them
    #: was found equal to the hash recomputed from the leaves; None: some differ or are missing.
    read_stored: Callable[[list[int]], list[bytes]] | None = None
    #: Parsed ingest, hold, release and expire events by index: what step 7 compares the index with.
    bodies: dict[int, dict] = field(default_factory=dict)
    #: Subjects (clip ids, quarantine ids) that have an expire event.
    expired_subjects: set[str] = field(default_factory=set)
    #: Personal-text links of all entries, each to an existing text row (None: the scan stopped
    #: at a gap); step 7d compares it with the number of texts.
    links: int | None = None


def verify_store(store, clip_ids: Iterable[str] | None = None,
                 progress: Callable[[str], None] | None = None, notes: list[Fault] | None = None,
                 quick: bool = False) -> list[Fault]:
    """Every fault in ``store`` (the log always whole; objects and clips all or only ``clip_ids``).
    ``quick`` does not re-read the objects' bytes: it trusts the size and SHA-256 the storage
    recorded (S3: each version's metadata; a folder: only that the file is there).

    Raises UsageError (via store.clip) for an unknown clip id; returns [] for a sound store.
    ``notes``, if given, receives what is worth knowing but is no fault (step 8: leftovers of
    interrupted writes); they do not make verify fail.
    """
    say = progress or (lambda step: None)
    faults: list[Fault] = []
    # Before the snapshot: the file is written after its checkpoint commits, so the snapshot is
    # never older than the file (a later read could see a checkpoint the snapshot lacks).
    file_note = store.checkpoint_file()
    with store.index.snapshot(), _no_gc():
        wanted = None
        if clip_ids:
            wanted = {store.clip(c).clip_id for c in clip_ids}
        say("log")
        data = _scan_log(store, faults)
        read = data.read_stored or _check_hashes(store.index, data, faults)
        say("checkpoints")
        _check_checkpoints(store, data, read, faults)
        _check_checkpoint_file(store, file_note, data, read, faults)
        say("objects")
        _check_objects(store, wanted, faults, quick=quick)
        say("clips")
        _check_clips(store, wanted, faults)
        say("index")
        _check_index(store, data, wanted, faults)
        say("state")
        state = logstate.derive(sorted(data.bodies.items()), lambda i: data.leaf_hashes[32 * i:32 * i + 32].hex(),
                                data.size)
        _check_state(store, state, data, wanted, faults)
        if wanted is None:
            _check_config(store, state, faults)
        if notes is not None and wanted is None:
            say("leftovers")
            _note_leftovers(store, notes)
    return faults


@contextlib.contextmanager
def _no_gc():
    """Verify holds a million rows and parsed events at once and makes no reference cycles; the
    cyclic collector would rescan all of them again and again (a 1M-event verify took 20 s with
    it, most of it in the collector)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- 1. + 4. presence and events, in one streaming pass ------------------------------------------

# The personal-field count of the hot loop below spells out ev.PERSONAL_FIELDS (a generator per
# entry cost a second per 100,000): keep them in step.
assert ev.PERSONAL_FIELDS == ("actor", "officer", "reason", "case")
_COLUMN_NAMES = ("kind", "clip", "device", "time")
#: Below this many entries one process scans the log; above it, one worker per core, each over a
#: contiguous range (parsing a million JSON leaves is CPU-bound and the ranges are independent
#: but for the per-subject chain, which is stitched afterwards).
PARALLEL_MIN_ENTRIES = 200_000
#: Ranges per worker process, and the fewest entries worth a range of their own.
RANGES_PER_WORKER = 4
PARALLEL_MIN_RANGE = 50_000


def _scan_log(store, faults: list[Fault]) -> LogData:
    """Read every entry once: presence (no index missing), leaf hash, event format, index and
    per-subject chain, the index row's columns and texts against the leaf. Keeps only leaf
    hashes and the few bodies step 7 needs, so a million-entry log never sits in memory."""
    index = store.index
    end = index.log_end()
    workers = min(os.cpu_count() or 1, 8)
    # Workers are forked (spawn would re-run the caller's main module), so only from a process
    # with no other thread: forking a threaded process can copy a lock held by another thread.
    # Each worker opens its own connection; the parent's is never used across the fork.
    data = LogData(0, b"")
    if end < PARALLEL_MIN_ENTRIES or workers < 2 or threading.active_count() > 1:
        parts = [_scan_range(index, 0, end)]
    else:
        # A few ranges per worker, taken in turn: the workers then finish within a small range's
        # time of each other, where one range each left one idle while the other still ran.
        ranges = max(workers, min(workers * RANGES_PER_WORKER, end // PARALLEL_MIN_RANGE))
        bounds = [end * k // ranges for k in range(ranges + 1)]
        source = index.reader_source(store.root / DB_FILE)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            futures = [pool.submit(_scan_range_in_worker, source, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
            parts = [f.result() for f in futures]
        finally:
            # The results are in: the workers' exit need not hold up the rest of verify.
            pool.shutdown(wait=False, cancel_futures=True)
    heads: dict[str, str] = {}
    blobs = []
    for part in parts:
        # Each range checked its own chains; its first entry about a subject must follow the last
        # entry about it in the ranges before.
        for subject, (_idx, prev, place) in part.first_prev.items():
            if prev != heads.get(subject):
                part.faults.append(Fault(CHAIN_BROKEN, place, f"does not follow the previous event about {subject} "
                                                              "(events removed or reordered)", HINT_LOG))
        part.faults.sort(key=lambda f: _fault_index(f.where))
        faults.extend(part.faults)
        heads.update(part.last_head)
        blobs.append(part.leaf_hashes)
        data.bodies.update(part.bodies)
        data.expired_subjects |= part.expired_subjects
        if part.gap_at is not None:
            # A deleted row: everything after it shifts. Name the first gap and stop there, so
            # the later checks compare like with like.
            faults.append(Fault(LOG_ENTRY_MISSING, f"log index {part.gap_at}",
                                f"log entries from {part.gap_at} on are missing or out of place", HINT_LOG))
            break
    data.leaf_hashes = b"".join(blobs)
    data.size = len(data.leaf_hashes) // 32
    if len(blobs) == len(parts) and data.size == end:
        data.links = sum(part.links for part in parts)
    if len(blobs) == len(parts) and all(part.hashes_equal for part in parts):
        data.read_stored = _stored_reader(store, data.size, [j for part in parts for j in part.crossing])
    return data


def _stored_reader(store, size: int, crossing: list[int]) -> Callable[[list[int]], list[bytes]] | None:
    """The stored hashes as the checkpoints read them, if they are exactly the ones the leaves
    give: the workers compared every hash over their own entries; what is left are the hashes
    over entries of two ranges (``crossing``), each checked against its two stored children,
    lowest first (storage order puts children before parents), so by induction every stored
    hash equals its recomputed one. None if anything differs or is missing or extra: the caller
    then recomputes and localises every fault (_check_hashes)."""
    index = store.index
    # The workers found every id their ranges need (ids are the key: no duplicates), so no other
    # may exist: none below 0 or above the last (two lookups in the key, not a count of millions).
    count = merkle.stored_hash_count(size)
    if index.stored_hash_bounds() != ((0, count - 1) if count else (None, None)):
        return None
    if crossing:
        children = [c for j in crossing for c in _children(j)]
        known = dict(zip(crossing + children, store.log.read_hash(crossing + children)))
        for j in sorted(crossing):
            left, right = _children(j)
            if known[j] != merkle.node_hash(known[left], known[right]):
                return None
    checkpoints = len(store.log.checkpoints())
    if checkpoints * 64 < count:  # a few O(log n) reads each: cheaper than reading them all
        cache: dict[int, bytes] = {}

        def read(indexes: list[int]) -> list[bytes]:
            missing = [i for i in indexes if i not in cache]
            if missing:
                cache.update(zip(missing, store.log.read_hash(missing)))
            return [cache[i] for i in indexes]

        return read
    stored = index.stored_hashes()
    return lambda indexes: [stored[i] for i in indexes]


def _children(j: int) -> tuple[int, int]:
    level, n = merkle.split_stored_hash_index(j)
    return merkle.stored_hash_index(level - 1, 2 * n), merkle.stored_hash_index(level - 1, 2 * n + 1)


def _read_stored_hashes(index: Queries, faults: list[Fault]) -> list[bytes]:
    count, last = index.stored_hash_extent()
    if count == 0 or last == count - 1:  # id is the key: no gap, so no per-row check needed
        return index.stored_hashes()
    stored = []
    for position, (i, h) in enumerate(index.stored_hash_ids()):
        if i != position:
            faults.append(Fault(STORED_HASH_MISSING, f"storage index {position}",
                                f"stored Merkle hashes {position}..{i - 1} are missing", HINT_LOG))
            break
        stored.append(bytes(h))
    return stored


def _fault_index(where: str) -> int:
    match = re.match(r"log index (\d+)", where)
    return int(match.group(1)) if match else -1


def _scan_range_in_worker(source: ReaderSource, lo: int, hi: int) -> RangeScan:
    with open_reader(source) as conn:
        gc.disable()
        return _scan_range(Queries(conn), lo, hi)


def _scan_range(index: Queries, lo: int, hi: int) -> RangeScan:
    """Scan entries [lo, hi): the hot loop of a million-entry verify. On the path where nothing is
    wrong each entry costs one comparison of its leaf's fields with its index row and one salted
    hash per personal text; only an entry that differs is taken apart to name its faults."""
    out = RangeScan(lo)
    heads = out.last_head
    get_head = heads.get
    leaves: list[bytes] = []
    keep_leaf = leaves.append
    sha = hashlib.sha256
    event_format = ev.EVENT_FORMAT
    salt_size = ev.SALT_SIZE
    leaf_columns = _LEAF_COLUMNS
    load_leaf = ev.load_leaf
    # Texts ordered like the events (event_texts' key starts with idx): merged as we go.
    texts = iter(index.event_texts_in_range(lo, hi))
    retention_day = text_retention()
    day, day_later = "", retention_day("")
    pending = next(texts, None)
    rows = index.events_in_range(lo, hi)
    position = lo
    for idx, subject, leaf, kind, clip_id, device_id, time in rows:
        if idx != position:
            out.gap_at = position
            break
        position += 1
        lh = sha(b"\x00" + leaf).digest()
        keep_leaf(lh)
        try:
            body = load_leaf(leaf)
            sound = leaf_columns(body) == (event_format, idx, kind, clip_id, device_id, time)
        except ValueError as exc:  # not JSON
            body, sound = exc, False
        except (TypeError, KeyError):  # not an object, or a field missing
            sound = False
        if sound:
            logged_kind, logged_clip = kind, clip_id
        elif _entry_faults(body, idx, kind, clip_id, device_id, time, out.faults):
            logged_kind, logged_clip = body.get("kind"), body.get("clip")
        else:
            heads[subject] = lh.hex()  # not an event at all: nothing more to compare
            while pending is not None and pending[0] <= idx:
                pending = next(texts, None)
            continue
        head = get_head(subject)
        if head is None and subject not in out.first_prev:
            out.first_prev[subject] = (idx, body.get("prev"), where(idx, body))  # stitched by the caller
        elif body.get("prev") != head:
            out.faults.append(Fault(CHAIN_BROKEN, where(idx, body),
                                    f"does not follow the previous event about {subject} (events removed or reordered)",
                                    HINT_LOG))
        heads[subject] = lh.hex()
        # The personal texts kept in the index must still hash to the salted digests in the leaf.
        while pending is not None and pending[0] < idx:
            pending = next(texts, None)  # texts of an entry that is not in the log: step 7 finds the row
        linked = 0
        floor: str | None = None  # the earliest retain_until of this entry's texts, once per entry
        while pending is not None and pending[0] == idx:
            _, fieldname, salt, text, same_field, digest, t_clip, t_until, erased_at = pending
            linked += 1
            logged = body.get(fieldname)
            if text is not None:
                # A salt of another length would let bytes move between salt and text (same digest).
                try:
                    altered = len(salt) != salt_size or logged != sha(salt + text.encode()).hexdigest()  # UTF-8
                except (TypeError, AttributeError):  # no salt, or a salt or text of another type
                    altered = True
                if altered:
                    out.faults.append(Fault(TEXT_ALTERED, f"log index {idx}", f"the {fieldname} text in the index "
                                            "does not match the salted hash in the log", HINT_LOG))
                    pending = next(texts, None)
                    continue
            if floor is None:
                if isinstance(time, str):
                    if time[:10] != day:  # one date sum per day, not per text
                        day = time[:10]
                        day_later = retention_day(day)
                    floor = day_later + time[10:]
                else:
                    floor = "?"  # sorts after every date: any retention date is then too early
            if same_field != 1 or digest != logged or t_clip != logged_clip:
                out.faults.append(Fault(TEXT_ALTERED, f"log index {idx}",
                                        f"the {fieldname} text's row names another field, digest or clip than the log",
                                        HINT_LOG))
            elif not isinstance(t_until, str) or t_until < floor:
                # Erasure acts on retain_until: an earlier one would erase an access log early.
                # (Same-width ISO times: the string order is the time order.)
                out.faults.append(Fault(TEXT_ALTERED, f"log index {idx}",
                                        f"the {fieldname} text's retention date is less than two years after "
                                        "the event",
                                        HINT_LOG))
            elif text is None and (erased_at is None or erased_at < t_until):
                out.faults.append(Fault(TEXT_ERASED_EARLY, f"log index {idx}",
                                        f"the {fieldname} text was erased before its two years had passed", HINT_LOG))
            pending = next(texts, None)
        out.links += linked
        if linked != ("actor" in body) + ("officer" in body) + ("reason" in body) + ("case" in body):
            out.faults.append(Fault(TEXT_ALTERED, f"log index {idx}",
                                    "the personal texts linked to this entry are not those its leaf names", HINT_LOG))
        if logged_kind in KEPT_KINDS or logged_clip is None:
            out.bodies[idx] = body
            if logged_kind == ev.EXPIRE:
                out.expired_subjects.add(subject)
    else:
        if position != hi:
            out.gap_at = position
    out.size = position - lo
    out.leaf_hashes = b"".join(leaves)
    if out.gap_at is None:
        compare_stored_hashes(index, lo, leaves, out)
    return out


#: What a leaf must say, in the order its index row gives it (format and index are the leaf's own).
_LEAF_COLUMNS = operator.itemgetter("format", "index", "kind", "clip", "device", "time")


def _entry_faults(body: Any, idx: int, kind, clip_id, device_id, time, faults: list[Fault]) -> bool:
    """Name what is wrong with an entry whose leaf differs from what its index row says; False if
    the leaf is no event at all (``body`` is then the parse error or the parsed value)."""
    if isinstance(body, ValueError) or not isinstance(body, dict) or body.get("format") != ev.EVENT_FORMAT:
        reason = body if isinstance(body, ValueError) else "not an event"
        faults.append(Fault(EVENT_INVALID, f"log index {idx}", f"is not a valid event ({reason})", HINT_LOG))
        return False
    if body.get("index") != idx:
        faults.append(Fault(EVENT_INVALID, where(idx, body), f"says it is entry {body.get('index')}", HINT_LOG))
    # Step 7a. list, show, report and retention query these columns, not the leaves.
    leaf_cols = (body.get("kind"), body.get("clip"), body.get("device"), body.get("time"))
    names = [n for n, a, b in zip(_COLUMN_NAMES, (kind, clip_id, device_id, time), leaf_cols) if a != b]
    if names:
        faults.append(Fault(EVENT_ROW_MISMATCH, where(idx, body),
                            f"the index's {', '.join(names)} differ(s) from the logged event", HINT_LOG))
    return True


# -- 2. hashes -------------------------------------------------------------------------------


def _check_hashes(index: Queries, data: LogData, faults: list[Fault]) -> Callable[[list[int]], list[bytes]]:
    """Recompute every stored hash from the leaves; localise mismatches. Returns a reader of the
    recomputed hashes (what the checkpoints are checked against: the leaves, not the stored
    copies). The workers found a difference: this is the path of a damaged log."""
    stored = _read_stored_hashes(index, faults)
    leaves = [data.leaf_hashes[i:i + 32] for i in range(0, len(data.leaf_hashes), 32)]
    bad = merkle.mismatched_stored_hashes(leaves, stored)
    _, expected = merkle.stored_hashes_for_appends(0, leaves)
    read = lambda indexes: [expected[i] for i in indexes]  # noqa: E731
    if len(stored) != len(expected):
        faults.append(Fault(STORED_HASH_MISSING, f"log size {data.size}",
                            f"{len(stored)} stored Merkle hashes for {data.size} entries "
                            f"(expected {len(expected)})", HINT_LOG))
    for j in bad:
        if j >= min(len(stored), len(expected)):
            break  # a missing or extra stored hash: reported above
        level, n = merkle.split_stored_hash_index(j)
        if level == 0:
            faults.append(Fault(LEAF_ALTERED, f"log index {n}",
                                "the entry's bytes do not match its stored leaf hash", HINT_LOG))
            continue
        left = merkle.stored_hash_index(level - 1, 2 * n)
        right = merkle.stored_hash_index(level - 1, 2 * n + 1)
        if stored[j] != merkle.node_hash(stored[left], stored[right]):
            lo, hi = n << level, ((n + 1) << level) - 1
            faults.append(Fault(STORED_HASH_ALTERED, f"storage index {j}",
                                f"the stored hash over log entries {lo}..{hi} does not match its children",
                                HINT_LOG))
    return read


# -- 3. checkpoints ----------------------------------------------------------------------------


def _check_checkpoints(store, data: LogData, read: Callable[[list[int]], list[bytes]], faults: list[Fault]) -> None:
    """``read``: the hashes recomputed from the leaves (or the stored ones, found equal to them)."""
    size = data.size
    rewritten: list[int] = []
    previous = None
    for row_size, note in store.log.checkpoints():
        where = f"checkpoint {row_size}"
        try:
            cp = cpmod.open_checkpoint(note, store.verifier, store.origin)
        except EvidenceError as exc:
            faults.append(Fault(CHECKPOINT_INVALID, where, f"does not verify: {exc}", HINT_CHECKPOINT))
            continue
        if cp.size != row_size:
            faults.append(Fault(CHECKPOINT_INVALID, where, f"is filed under size {row_size} but says {cp.size}",
                                HINT_CHECKPOINT))
            continue
        if cp.size > size:
            faults.append(Fault(LOG_TRUNCATED, where,
                                f"the store signed a log of {cp.size} entries; only {size} are left", HINT_LOG))
            continue
        if merkle.tree_hash(cp.size, read) != cp.root:
            rewritten.append(cp.size)
            continue
        if previous is not None:
            try:
                proof = merkle.consistency_proof(previous.size, cp.size, read)
                cpmod.verify_checkpoint_consistency(previous, cp, proof)
            except EvidenceError as exc:
                faults.append(Fault(LOG_REWRITTEN, where, f"is not consistent with checkpoint {previous.size}: {exc}",
                                    HINT_CHECKPOINT))
        previous = cp
    if rewritten:
        # One line, not one per later checkpoint: a single altered entry breaks them all.
        faults.append(Fault(LOG_REWRITTEN, f"checkpoint {rewritten[0]}",
                            f"{len(rewritten)} signed checkpoint(s) (sizes {rewritten[0]}..{rewritten[-1]}) do not "
                            "match the root recomputed from the log entries", HINT_LOG))


def _check_checkpoint_file(store, note: bytes | None, data: LogData, read: Callable[[list[int]], list[bytes]],
                           faults: list[Fault]) -> None:
    """3b. The latest checkpoint kept outside the database (store.CHECKPOINT_FILE): the log must
    still have its entries and root, and the database must still hold it; entries after the
    database's latest checkpoint were signed by nobody."""
    from evidence_store.store import CHECKPOINT_FILE

    kept = {size for size, _ in store.log.checkpoints()}
    latest = max(kept, default=0)
    if latest < data.size:
        faults.append(Fault(LOG_UNSIGNED, f"log index {latest}", f"log entries {latest}..{data.size - 1} are covered "
                            "by no signed checkpoint (checkpoints deleted, or entries added)", HINT_CHECKPOINT))
    if note is None:
        faults.append(Fault(CHECKPOINT_MISSING, CHECKPOINT_FILE, "the store keeps no checkpoint file",
                            "every command that writes the log writes it; if it was deleted, compare the "
                            "database with the checkpoints published to the data-protection officer"))
        return
    try:
        cp = cpmod.open_checkpoint(note, store.verifier, store.origin)
    except EvidenceError as exc:
        faults.append(Fault(CHECKPOINT_INVALID, CHECKPOINT_FILE, f"does not verify: {exc}", HINT_CHECKPOINT))
        return
    if cp.size > data.size:
        faults.append(Fault(LOG_TRUNCATED, CHECKPOINT_FILE, f"the store signed a log of {cp.size} entries; only "
                            f"{data.size} are left", HINT_LOG))
        return
    if merkle.tree_hash(cp.size, read) != cp.root:
        faults.append(Fault(LOG_REWRITTEN, CHECKPOINT_FILE, f"the log's first {cp.size} entries do not match the "
                            "signed checkpoint kept outside the database: the log was rewritten", HINT_LOG))
    if cp.size not in kept:
        faults.append(Fault(CHECKPOINT_MISSING, f"checkpoint {cp.size}", f"the database no longer holds the "
                            f"checkpoint of size {cp.size} that {CHECKPOINT_FILE} holds (checkpoints deleted)",
                            HINT_CHECKPOINT))


# -- 5. objects --------------------------------------------------------------------------------


def _object_owners(store, wanted: set[str] | None) -> dict[str, str]:
    """sha256 -> owner name, for the objects of live clips/quarantine items (optionally some)."""
    owners: dict[str, str] = {}
    index = store.index
    for clip_id, m, j in index.clip_objects_in_state(ClipState.STORED):
        if wanted is None or clip_id in wanted:
            owners.setdefault(m, f"clip {clip_id}")
            owners.setdefault(j, f"clip {clip_id}")
    for clip_id, sha in index.segment_objects_in_state(ClipState.STORED):
        if wanted is None or clip_id in wanted:
            owners.setdefault(sha, f"clip {clip_id}")
    for qid, claimed, m, j in index.quarantine_in_state(ClipState.QUARANTINED):
        if wanted is None or qid in wanted or claimed in wanted:
            for h in (m, j):
                if h:
                    owners.setdefault(h, f"quarantine {qid}")
            for sha in index.quarantine_object_hashes(qid):
                owners.setdefault(sha, f"quarantine {qid}")
    return owners


def _lock_targets(store, owners: dict[str, str]) -> list[LockTarget]:
    """Each object with what its lock must cover: its owner's deadline, and a legal hold while
    the owner is held (only asked where the storage has a lock: S3 Object Lock)."""
    if not store.objects.locking:
        return [LockTarget(sha) for sha in owners]
    infos = {f"{'quarantine' if info.state == ClipState.QUARANTINED else 'clip'} {info.clip_id}": info
             for info in store.clips()}
    targets = []
    for sha, owner in owners.items():
        info = infos.get(owner)
        targets.append(LockTarget(sha, None, parse_time(info.deadline) if info else None,
                                  bool(info and info.holds)))
    return targets


def _check_objects(store, wanted: set[str] | None, faults: list[Fault], quick: bool = False) -> None:
    owners = _object_owners(store, wanted)
    ordered = sorted(owners.items(), key=lambda kv: (kv[1], kv[0]))
    for fault in store.objects.check_many(_lock_targets(store, dict(ordered)), quick=quick):
        sha = fault.sha256
        faults.append(Fault(fault.kind, owners[sha], f"object {sha} {fault.message}",
                            fault.hint or HINT_OBJECT.format(p=sha[:2], sha=sha)))
    if wanted is None:
        from evidence_store.objects import HEX64

        for (sha,) in store.index.deleted_object_hashes():
            if not isinstance(sha, str) or not HEX64.match(sha):
                faults.append(Fault(ROW_MISMATCH, f"object {sha!r}", "is not an object name the store writes",
                                    HINT_CLIP))
            elif store.objects.exists(sha):
                faults.append(Fault(OBJECT_NOT_DELETED, f"object {sha}", "belongs to expired material but still exists",
                                    HINT_EXPIRE))


# -- 6. clips ------------------------------------------------------------------------------------


def _check_clips(store, wanted: set[str] | None, faults: list[Fault]) -> None:
    keys = store.index.device_keys()
    ingests = {}
    for clip_id, leaf in store.index.ingest_leaves(ev.INGEST):
        try:
            ingests[clip_id] = json.loads(leaf)
        except ValueError:
            pass  # reported by step 4
    for clip_id, device_id, m, j in store.index.clips_in_state(ClipState.STORED):
        if wanted is not None and clip_id not in wanted:
            continue
        where = f"clip {clip_id}"
        key = keys.get(device_id)
        if key is None:
            faults.append(Fault(INDEX_MISMATCH, where, f"its device {device_id} is not enrolled", HINT_CLIP))
            continue
        public = DevicePublicKey.parse(key)
        event = ingests.get(clip_id)
        if event is None or event.get("manifest") != m or event.get("journal") != j:
            faults.append(Fault(INDEX_MISMATCH, where, "the index names another manifest or journal than its ingest event",
                                HINT_CLIP))
        try:
            manifest = parse_manifest(store.objects.read(m), public)
        except EvidenceError as exc:
            faults.append(Fault(MANIFEST_INVALID, where, f"manifest: {exc}", HINT_CLIP))
            manifest = None
        try:
            parse_journal(store.objects.read(j), public, clip_id)
        except EvidenceError as exc:
            faults.append(Fault(JOURNAL_INVALID, where, f"journal: {exc}", HINT_CLIP))
        if manifest is None:
            continue
        rows = {s["name"]: s for s in store.segments(clip_id)}
        for seg in manifest.segments:
            row = rows.get(seg.name)
            if row is None or (row["sha256"], row["bytes"], row["plaintext_sha256"]) != (
                    seg.sha256, seg.bytes, seg.plaintext_sha256):
                faults.append(Fault(INDEX_MISMATCH, where, f"segment {seg.name}: the index differs from the signed manifest",
                                    HINT_CLIP))
        if manifest.clip_id != clip_id:
            faults.append(Fault(INDEX_MISMATCH, where, f"its manifest is for clip {manifest.clip_id}", HINT_CLIP))
        if event is not None:
            _check_start(event, manifest, where, faults)


def _time_of(value: object) -> datetime:
    """A logged time (FormatError for anything but a time as format_time writes it)."""
    return parse_time(value if isinstance(value, str) else "")


def _check_start(event: dict, manifest, where: str, faults: list[Fault]) -> None:
    """The start the deadline counts from (the event's ``started_at``) is the signed manifest's,
    or, for a clip whose claim was impossible (retention.earliest_start), a later one with the
    claim kept as ``claimed_started_at`` and the clip flagged."""
    try:
        claimed = _time_of(event.get("claimed_started_at", event.get("started_at")))
        started = _time_of(event.get("started_at"))
        signed = parse_time(manifest.started_at)
    except EvidenceError:
        faults.append(Fault(INDEX_MISMATCH, where, "the ingest event or the manifest has no valid start", HINT_CLIP))
        return
    if claimed != signed:
        faults.append(Fault(INDEX_MISMATCH, where, "the ingest event's start differs from the signed manifest's",
                            HINT_CLIP))
    elif "claimed_started_at" in event and not (
            started > claimed and retention.FLAG_START_CORRECTED in (event.get("flags") or [])):
        faults.append(Fault(INDEX_MISMATCH, where, "the ingest event corrects the start without a later start "
                            "and the flag", HINT_CLIP))


# -- 7. index rows against the log -------------------------------------------------------------


def _check_index(store, data: LogData, wanted: set[str] | None, faults: list[Fault]) -> None:
    """7a (event rows against their leaves) runs in the log scan; here: clip rows, expiry and
    holds against the events that created them."""
    index = store.index
    ingests: dict[str, tuple[int, dict]] = {}
    hold_events: dict[int, dict] = {}
    releases: dict[int, tuple[int, dict]] = {}  # hold event index -> (release index, body)
    expired_subjects = data.expired_subjects
    for idx, body in data.bodies.items():
        kind = body.get("kind")
        if kind == "ingest" and body.get("clip"):
            ingests.setdefault(body["clip"], (idx, body))
        elif kind == "hold":
            hold_events[idx] = body
        elif kind == "release" and isinstance(body.get("hold_event"), int):
            releases[body["hold_event"]] = (idx, body)
    # 7b. Clip rows against their ingest events (every row, expired ones too: the report counts them).
    seen = set()
    for clip_id, device_id, sequence, trigger, started_at, state, _late in index.clip_ingest_columns():
        seen.add(clip_id)
        if wanted is not None and clip_id not in wanted:
            continue
        where = f"clip {clip_id}"
        found = ingests.get(clip_id)
        if found is None:
            faults.append(Fault(INDEX_MISMATCH, where, "has an index row but no ingest event in the log", HINT_CLIP))
            continue
        idx, body = found
        claimed = {"device": body.get("device"), "sequence": body.get("sequence"), "trigger": body.get("trigger"),
                   "started_at": body.get("started_at")}
        actual = {"device": device_id, "sequence": sequence, "trigger": trigger, "started_at": started_at}
        differ = [k for k in claimed if claimed[k] != actual[k]]
        if differ:
            faults.append(Fault(INDEX_MISMATCH, f"{where} (log index {idx})",
                                f"the index's {', '.join(differ)} differ(s) from the ingest event", HINT_CLIP))
        if state == ClipState.EXPIRED and clip_id not in expired_subjects:
            faults.append(Fault(EXPIRE_MISSING, where, "is marked expired but the log has no expire event for it",
                                HINT_CLIP))
        elif state != ClipState.EXPIRED and clip_id in expired_subjects:
            faults.append(Fault(INDEX_MISMATCH, where, f"the log says it expired but the index says {state}", HINT_CLIP))
    if wanted is None:
        for clip_id, (idx, _) in sorted(ingests.items()):
            if clip_id not in seen:
                faults.append(Fault(INDEX_MISMATCH, f"clip {clip_id} (log index {idx})",
                                    "was ingested but its index row is gone", HINT_CLIP))
    for qid, state in index.quarantine_states():
        if (wanted is None or qid in wanted) and state == ClipState.EXPIRED and qid not in expired_subjects:
            faults.append(Fault(EXPIRE_MISSING, f"quarantine {qid}",
                                "is marked expired but the log has no expire event for it", HINT_CLIP))
    # 7c. Holds: the table must be exactly what the hold and release events say.
    table = {event_index: (hold_id, clip_id, kind, released_at, release_event)
             for hold_id, clip_id, kind, event_index, released_at, release_event in index.hold_release_rows()}
    for idx, body in sorted(hold_events.items()):
        clip_id = body.get("clip")
        if wanted is not None and clip_id not in wanted:
            continue
        where = f"clip {clip_id} (log index {idx})"
        release = releases.get(idx)
        row = table.get(idx)
        if row is None:
            state = "released" if release else "active"
            faults.append(Fault(HOLD_MISMATCH, where, f"the log holds this clip ({state} hold) but the holds table "
                                                      "has no row for it", HINT_CLIP))
            continue
        _, row_clip, row_kind, released_at, release_event = row
        if (row_clip, row_kind) != (clip_id, body.get("hold_kind")):
            faults.append(Fault(HOLD_MISMATCH, where, "the hold row names another clip or kind than the hold event",
                                HINT_CLIP))
        if release is None and (released_at is not None or release_event is not None):
            faults.append(Fault(HOLD_MISMATCH, where, "the hold row is released but the log has no release event",
                                HINT_CLIP))
        elif release is not None and (release_event != release[0] or released_at != release[1].get("time")):
            faults.append(Fault(HOLD_MISMATCH, where, f"the log released this hold (log index {release[0]}) "
                                                      "but the hold row says otherwise", HINT_CLIP))
    for event_index, (hold_id, clip_id, *_rest) in sorted(table.items()):
        if (wanted is None or clip_id in wanted) and event_index not in hold_events:
            faults.append(Fault(HOLD_MISMATCH, f"clip {clip_id}",
                                f"hold row {hold_id} has no hold event in the log (log index {event_index})", HINT_CLIP))


# -- 7d. every index table against the state the log proves ---------------------------------------


def _check_starts_after_dockings(state: logstate.LogState, data: LogData, pick: Callable[[str | None], bool],
                                 faults: list[Fault]) -> None:
    """Each deadline counts from no earlier than the camera's last docking logged before its
    ingest (retention.earliest_start), and from no later: recomputed from the leaves, so that an
    index row edited before an ingest cannot have moved a deadline unseen. Ingests with no
    docking event before them (a store from before they were logged) keep step 6's check alone."""
    for clip_id, facts in state.clips.items():
        device = state.devices.get(facts.device or "")
        docked = device.docking_before(facts.index) if device is not None else None
        if docked is None or not pick(clip_id):
            continue
        body = data.bodies.get(facts.index) or {}
        try:
            claimed = _time_of(body.get("claimed_started_at", body.get("started_at")))
            started, arrived, bound = _time_of(facts.started_at), _time_of(facts.ingested_at), _time_of(docked)
        except EvidenceError:
            continue  # step 6 names a start that is no time
        want = retention.earliest_start(claimed, bound, arrived)
        if started != want:
            faults.append(Fault(INDEX_MISMATCH, f"clip {clip_id} (log index {facts.index})",
                                f"its deadline counts from {facts.started_at}, but its claimed start and the "
                                f"camera's docking at {docked} before it make that {format_time(want)}", HINT_CLIP))


def _check_state(store, state: logstate.LogState, data: LogData, wanted: set[str] | None,
                 faults: list[Fault]) -> None:
    """What 7b/7c leave out: every column expiry, ingest, list or report act on, against the
    state derived from the leaves (logstate). Each difference is a ROW_MISMATCH naming the row
    and the columns."""
    index = store.index

    def differ(where: str, names: list[str], what: str = "the log") -> None:
        if names:
            faults.append(Fault(ROW_MISMATCH, where, f"the index's {', '.join(names)} differ(s) from {what}",
                                HINT_CLIP))

    def pick(item: str | None) -> bool:
        return wanted is None or item in wanted

    texts = _event_texts(index)
    # Clips: arrival, flags, expiry, justification, officer (7b checked device, sequence, trigger, start).
    for (clip_id, officer, manifest, journal, ingested_at, flags, justification, late, expired_at, _ended_at,
         _homes) in index.clip_state_rows():
        facts = state.clips.get(clip_id)
        if facts is None or not pick(clip_id):
            continue
        try:
            row_flags = json.loads(flags)
        except (TypeError, ValueError):
            row_flags = None
        want_just = None if facts.trigger != "emergency" else (
            Justification.JUSTIFIED if facts.justified else Justification.PENDING)
        logged_officer = texts.get((facts.index, "officer"))  # None: the ingest named no officer
        names = [n for n, a, b in (
            ("manifest_sha256", manifest, facts.manifest), ("journal_sha256", journal, facts.journal),
            ("ingested_at", ingested_at, facts.ingested_at), ("flags", row_flags, sorted(facts.flags)),
            ("late", late, int(facts.late)), ("justification", justification, want_just),
            ("expired_at", expired_at, facts.expired_at),
            # The officer's name goes from an expired row when the log's texts go.
            ("officer", officer, officer if logged_officer is _ERASED or (
                officer is None and facts.expired_index is not None) else logged_officer))
            if a != b]
        differ(f"clip {clip_id} (log index {facts.index})", names)
    # Segment rows: exactly the objects of the ingest event.
    segs: dict[str, dict[str, tuple]] = {}
    for clip_id, name, size, sha, status in index.segment_state_rows():
        segs.setdefault(clip_id, {})[name] = (size, sha, status)
    for clip_id, facts in state.clips.items():
        if not pick(clip_id):
            continue
        logged = {o.get("name"): (o.get("bytes"), o.get("sha256"), o.get("state"))
                  for o in facts.objects if isinstance(o, dict)}
        if segs.get(clip_id, {}) != logged:
            differ(f"clip {clip_id} (log index {facts.index})", ["segments"], "the ingest event's objects")
    for clip_id in segs.keys() - state.clips.keys():
        if pick(clip_id):
            differ(f"clip {clip_id}", ["segments"], "the log (no ingest event)")
    _check_starts_after_dockings(state, data, pick, faults)
    # Quarantined items.
    kept: dict[str, dict[str, tuple]] = {}
    for qid, name, sha, size in index.quarantine_object_state_rows():
        kept.setdefault(qid, {})[name] = (sha, size)
    quarantine_rows = {r[0]: r for r in index.quarantine_rows()}
    for qid, item in state.quarantine.items():
        if not pick(qid) and not pick(item.claimed_clip):
            continue
        where = f"quarantine {qid} (log index {item.index})"
        row = quarantine_rows.get(qid)
        if row is None:
            faults.append(Fault(ROW_MISMATCH, where, "was quarantined but its index row is gone", HINT_CLIP))
            continue
        want_start: str | None
        want_late: int | None
        try:
            start = store._quarantine_start(item)
            want_start = format_time(start)
            want_late = int(parse_time(item.at or "") > start + store.policy.retention)
        except ValueError:
            want_start, want_late = None, None
        want = (qid, item.claimed_clip, item.device, item.manifest, item.journal, item.cause, item.at,
                want_start, ClipState.EXPIRED if item.expired_index is not None else ClipState.QUARANTINED, want_late,
                item.expired_at)
        names = [n for n, a, b in zip(_QUARANTINE_COLUMNS, row, want) if a != b
                 # an old event without started_at, whose manifest expiry deleted: nothing to derive from
                 and not (n in ("started_at", "late") and item.started_at is None and item.expired_index is not None)]
        kept_logged = {o.get("name"): (o.get("sha256"), o.get("bytes")) for o in item.objects if isinstance(o, dict)}
        if kept.get(qid, {}) != kept_logged:
            names.append("objects")
        differ(where, names)
    for qid in (quarantine_rows.keys() | kept.keys()) - state.quarantine.keys():
        if pick(qid):
            faults.append(Fault(ROW_MISMATCH, f"quarantine {qid}", "has index rows but no quarantine event in the log",
                                HINT_CLIP))
    # Holds: the texts, time and after_view of each row (7c checked clip, kind and release).
    for hold_id, event_index, case_text, reason_text, actor_text, created_at, after_view in index.hold_text_rows():
        hold = state.holds.get(event_index)
        if hold is None or not pick(hold.clip_id):
            continue
        links = index.text_links(event_index)
        names = [n for n, a, b in (("case_text", case_text, links.get("case")),
                                   ("reason_text", reason_text, links.get("reason")),
                                   ("actor_text", actor_text, links.get("actor")),
                                   ("created_at", created_at, hold.time),
                                   ("after_view", after_view, int(hold.after_view)))
                 if a != b]
        differ(f"clip {hold.clip_id} (hold row {hold_id}, log index {event_index})", names)
    # Devices: key, profile, revocation, officer and chain position decide what ingest accepts.
    if wanted is None:
        device_rows = index.device_state_rows()
        for row in device_rows:
            (device_id, public_key, profile, officer, revoked, revoked_reason, enrolled_at, last_seq, last_manifest,
             last_docking) = row
            device = state.devices.get(device_id)
            if device is None:
                faults.append(Fault(ROW_MISMATCH, f"device {device_id}", "has an index row but no enroll event",
                                    HINT_CLIP))
                continue
            try:
                row_profile = json.loads(profile)
            except (TypeError, ValueError):
                row_profile = None
            logged_officer = texts.get((device.assign_index, "officer")) if device.assign_index is not None else None
            logged_reason = texts.get((device.revoke_index, "reason")) if device.revoke_index is not None else None
            names = [n for n, a, b in (
                ("public_key", public_key, device.public_key), ("profile", row_profile, device.profile),
                ("enrolled_at", enrolled_at, device.enrolled_at), ("revoked", revoked, int(device.revoked)),
                ("revoked_reason", revoked_reason, revoked_reason if logged_reason is _ERASED else logged_reason),
                ("officer", officer, officer if logged_officer is _ERASED else logged_officer),
                ("last_sequence", last_seq, device.last_sequence),
                ("last_manifest_sha256", last_manifest, device.last_manifest)) if a != b]
            if not device.docking_row_agrees(last_docking):
                names.append("last_docking")
            differ(f"device {device_id} (log index {device.index})", names)
        for device_id in state.devices.keys() - {r[0] for r in device_rows}:
            faults.append(Fault(ROW_MISMATCH, f"device {device_id}", "was enrolled but its index row is gone",
                                HINT_CLIP))
        # Objects: deleted exactly when the log expired them; every live one indexed (expiry treats
        # an unindexed file as an interrupted ingest's leftover).
        live = state.live_objects()
        rows = index.object_deletions()
        for sha in sorted(live):
            if rows.get(sha, "missing") is not None:
                state_text = "has no objects row" if sha not in rows else "is marked deleted"
                faults.append(Fault(ROW_MISMATCH, f"object {sha}", f"a live clip or quarantined item names it but it "
                                    f"{state_text}", HINT_CLIP))
        named = set(state.expired_objects).union(*(f.object_hashes() for f in state.clips.values()),
                                                 *(f.object_hashes() for f in state.quarantine.values()))
        for sha in sorted(rows.keys() - named, key=str):
            # A row keeps a file from being treated as an interrupted ingest's leftover, which
            # expiry deletes after the retention: one no event names would keep it for ever.
            faults.append(Fault(ROW_MISMATCH, f"object {sha}", "has an objects row but no event names it", HINT_CLIP))
        for idx in index.text_links_outside(state.size):
            faults.append(Fault(TEXT_ALTERED, f"log index {idx}", "personal texts are linked to a log entry that "
                                "does not exist", HINT_LOG))
        for text_id in _unlinked_texts(index, data, sound=not faults):
            faults.append(Fault(TEXT_ALTERED, f"text {text_id}", "a personal text no log entry names", HINT_LOG))
        for sha in sorted(state.expired_objects.keys() - rows.keys()):
            faults.append(Fault(ROW_MISMATCH, f"object {sha}", "an expire event deleted it but its objects row (the "
                                "tombstone that lets an interrupted expiry finish) is gone", HINT_CLIP))
        for sha, deleted_at in sorted(rows.items()):
            if deleted_at is not None and sha not in live and deleted_at not in state.expired_objects.get(sha, ()):
                faults.append(Fault(ROW_MISMATCH, f"object {sha}", "is marked deleted but no expire event of that "
                                    "time names it", HINT_CLIP))
            elif deleted_at is None and sha in state.expired_objects and sha not in live:
                faults.append(Fault(ROW_MISMATCH, f"object {sha}", "an expire event deleted it but its row says it "
                                    "is kept", HINT_EXPIRE))


def _unlinked_texts(index: Queries, data: LogData, sound: bool) -> list[int]:
    """Ids of personal texts no log entry links to.

    When nothing was found wrong so far (``sound``: the leaves match their signed checkpoints,
    and every link's text row exists and carries the salted digest its leaf names), the links
    name distinct texts: each leaf digest hashes a fresh random salt, so no two are alike and no
    text can carry two of them. Then as many texts as links means that none is unlinked: a
    count, not an anti-join of two million-row tables (a second of a million-event verify)."""
    if sound and data.links is not None and not index.text_links_outside(data.size) \
            and index.text_count() == data.links:
        return []
    return index.unlinked_texts()


_ERASED = object()
_QUARANTINE_COLUMNS = ("qid", "clip_id", "device_id", "manifest_sha256", "journal_sha256", "reason", "at",
                       "started_at", "state", "late", "expired_at")


def _event_texts(index: Queries) -> dict[tuple[int, str], str | object]:
    """(event index, field) -> text (or _ERASED) for the officer and reason fields of the events
    whose texts an index row copies (ingest, assign, revoke): few, so all are read."""
    return {(idx, fieldname): _ERASED if text is None else text
            for idx, fieldname, text in index.copied_texts(("officer", "reason"), (ev.INGEST, ev.ASSIGN, ev.REVOKE))}


def _check_config(store, state: logstate.LogState, faults: list[Fault]) -> None:
    """9. recipients, log.vkey, store.json: written only by the administrator, and the ones the
    latest config event of the log recorded."""
    try:
        store.check_config(state)
    except EvidenceError as exc:
        faults.append(Fault(CONFIG_MISMATCH, getattr(exc, "where", None) or "config", str(exc),
                            "the store's administrator restores the logged file, or checks the new one and runs "
                            "'bodycam-evidence record-config'"))


# -- 8. leftovers (notes) ------------------------------------------------------------------------


def _note_leftovers(store, notes: list[Fault]) -> None:
    from evidence_store.objects import HEX64

    for name, age in store.orphans():
        if not HEX64.match(name) or store.objects.size(name) is None:
            notes.append(Fault(STRAY_FILE, f"objects/{name[:2]}/{name}", "is not an object the store wrote",
                               "remove it by hand after checking what put it there"))
        else:
            notes.append(Fault(ORPHAN_OBJECT, f"object {name}",
                               f"no clip or quarantine item names it ({age / 86400:.1f} days old)", HINT_ORPHAN))
    leftovers = store.objects.leftovers()
    if leftovers:
        notes.append(Fault(TMP_LEFTOVER, "tmp/", f"{leftovers} unfinished object write(s) (temporary files, "
                           "or multipart uploads on S3)",
                           "writes in progress, or interrupted ones: 'bodycam-evidence expire' removes those "
                           "older than a day"))
