"""The parts of verify's scan of the log that its worker processes and verify itself share.

A million-entry log is scanned by one worker process per core, each over a contiguous range
(verify._scan_range); what a range found comes back as a ``RangeScan``, and verify stitches the
ranges together: the per-subject chains across range borders, the stored Merkle hashes over two
ranges (``crossing``), and the personal-text links each range counted (``links``: see
verify._unlinked_texts, which a count spares a million-row anti-join).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from evidence_store import logstate, merkle

#: Event kinds whose parsed bodies verify's later steps need; every other body is dropped.
KEPT_KINDS = logstate.STATE_KINDS


@dataclass
class RangeScan:
    """What scanning log entries [lo, hi) found. Picklable: verify's workers send it back."""

    lo: int
    size: int = 0  # entries present from lo on, up to the first gap
    gap_at: int | None = None  # absolute index of the first missing entry, if any
    leaf_hashes: bytes = b""  # concatenated 32-byte leaf hashes
    #: Every stored hash that the appends of these entries wrote equals the one recomputed from
    #: the leaves, but for those over entries before lo (``crossing``): the caller checks those.
    hashes_equal: bool = False
    crossing: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    bodies: dict = field(default_factory=dict)
    expired_subjects: set = field(default_factory=set)
    first_prev: dict = field(default_factory=dict)  # subject -> (idx, prev, where) of its first entry here
    last_head: dict = field(default_factory=dict)  # subject -> hex leaf hash of its last entry here
    links: int = 0  # personal-text links of these entries (each found its text row)


def where(idx: int, body: dict) -> str:
    return f"log index {idx}" + (f" (clip {body['clip']})" if body.get("clip") else "")


def text_retention() -> Callable[[str], str]:
    """day (YYYY-MM-DD) -> the day from which the personal texts of that day's events may be
    erased (records.TEXT_RETENTION later): an event at ``day`` + ``T...`` keeps them until at least
    that day + the same ``T...``. "?" for a day that is no date (it sorts after every date)."""
    from evidence_store.clip.ids import format_time, parse_time
    from evidence_store.store.records import TEXT_RETENTION

    days: dict[str, str] = {}

    def later(day: str) -> str:
        found = days.get(day)
        if found is None:
            try:
                found = format_time(parse_time(day + "T00:00:00.000Z") + TEXT_RETENTION)[:10]
            except ValueError:
                found = "?"
            days[day] = found
        return found

    return later


def compare_stored_hashes(index, lo: int, leaves: list[bytes], out: RangeScan) -> None:
    """Recompute the stored hashes the appends of leaves lo, lo+1, ... wrote (the leaf hashes and
    the subtree hashes each append completed; merkle.stored_hashes_for_appends) and compare them
    with the stored ones. A subtree reaching left of lo cannot be recomputed here: its storage
    index goes to ``out.crossing`` for the caller, which checks it against its children.

    The comparison runs inside the database engine: the recomputed hashes go to it as one
    parameter, and it counts the rows equal to their slice of it (half the time of reading a
    million hashes back into Python objects)."""
    first = merkle.stored_hash_count(lo)
    computed: list[bytes] = []
    append, extend = computed.append, computed.extend
    stack: list[bytes | None] = []
    pop, push = stack.pop, stack.append
    node = merkle.NODE_PREFIX
    sha = hashlib.sha256
    crossing = out.crossing

    def completed(top: bytes | None, n: int) -> bytes | None:
        """Store the subtrees that leaf number n's append completes above the level of ``top``."""
        while n & 1:
            left = pop() if stack else None  # nothing left of it here: the subtree starts before lo
            if left is None or top is None:
                top = None
                crossing.append(first + len(computed))
                append(b"")  # filled in below with the stored one, which the caller checks
            else:
                top = sha(node + left + top).digest()
                append(top)
            n >>= 1
        return top

    start = 0
    if lo & 1 and leaves:  # an odd first leaf completes subtrees that start before lo
        append(leaves[0])
        push(completed(leaves[0], lo))
        start = 1
    # Then two leaves at a time: the second of each pair completes their parent, and perhaps more.
    i = lo + start
    for left_leaf, right_leaf in zip(leaves[start::2], leaves[start + 1::2]):
        top = sha(node + left_leaf + right_leaf).digest()
        extend((left_leaf, right_leaf, top))
        n = i >> 1
        push(completed(top, n) if n & 1 else top)
        i += 2
    if (len(leaves) - start) & 1:  # a last unpaired leaf
        append(leaves[-1])
        push(leaves[-1])
    if crossing:
        known = index.stored_hashes_by_id(crossing)
        for j in crossing:
            found = known.get(j, b"")  # missing: unequal, and the caller names it
            if len(found) != merkle.HASH_SIZE:  # the comparison below goes by 32-byte slices
                out.hashes_equal = False
                return
            computed[j - first] = found
    out.hashes_equal = index.stored_hashes_matching(first, b"".join(computed)) == len(computed)
