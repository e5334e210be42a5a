"""RFC 9162 Merkle tree hashing, proofs, and a storage scheme for a log of millions of events.

Hashing (RFC 9162 section 2.1.1): a leaf hashes as SHA-256(0x00 || data), an interior node as
SHA-256(0x01 || left || right). Pure functions only; the store keeps the hashes in SQLite.

Storage scheme. The log stores the hash of every *complete* subtree, i.e. node (level L,
number n) covering leaves [n * 2**L, (n + 1) * 2**L), and never an incomplete one, so a stored
hash never changes once written. Each hash has a *storage index*: its position in the order
the hashes complete as leaves are appended (a post-order walk). Appending leaf i stores its leaf
hash and one hash per trailing 1 bit of i, at consecutive storage indexes, so the table is
append-only, dense, and written in key order (cheap in SQLite, B-tree inserts at the end).
Any tree root, inclusion or consistency proof is a fold over at most ~2 log2(n) stored
complete-subtree hashes, which ``read_hash`` fetches in one call (one SQL ``IN`` query).
Go's golang.org/x/mod/sumdb/tlog uses the same numbering (its StoredHashIndex).

``read_hash(indexes: list[int]) -> list[bytes]`` returns the hashes at those storage indexes in
the same order; it may raise whatever the storage raises for a missing index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from evidence_store.errors import IntegrityError

#: RFC 9162 section 2.1.1 domain separation: leaf hashes and node hashes can never collide.
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
#: Root of the empty tree: SHA-256 of the empty string (RFC 9162 section 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

ReadHash = Callable[[list[int]], Sequence[bytes]]

_sha256 = hashlib.sha256


class ProofError(IntegrityError):
    """A Merkle proof, stored hash or tree root does not match. ``where`` names the index."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash of ``data``: SHA-256(0x00 || data)."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


# --- storage indexes --------------------------------------------------------------------------


def stored_hash_count(size: int) -> int:
    """How many hashes a log of ``size`` leaves stores: 2*size - popcount(size)."""
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    return 2 * size - bin(size).count("1")


def stored_hash_index(level: int, n: int) -> int:
    """Storage index of complete subtree (``level``, ``n``), covering leaves [n*2**level, (n+1)*2**level).

    The subtree completes when its last leaf m = (n+1)*2**level - 1 is appended: before that
    append, stored_hash_count(m) hashes exist; the append stores m's leaf hash and then one
    hash per level up to ``level``.
    """
    if level < 0 or n < 0:
        raise ValueError(f"no stored hash at level {level}, number {n}")
    last_leaf = ((n + 1) << level) - 1
    return stored_hash_count(last_leaf) + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Inverse of stored_hash_index: (level, n) of the hash at storage ``index``."""
    if index < 0:
        raise ValueError(f"storage index {index} is negative")
    # Find the leaf m whose append wrote this index: the largest m with count(m) <= index.
    # count(m) lies between 2m - log2(m) - 1 and 2m, so m is index // 2 or a little above.
    m = index // 2
    while stored_hash_count(m + 1) <= index:
        m += 1
    while stored_hash_count(m) > index:
        m -= 1
    level = index - stored_hash_count(m)
    return level, m >> level


def _subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """Complete subtrees (level, n) that make up leaves [lo, hi), left to right.

    Holds for the ranges RFC 9162's recursion produces: ``lo`` is a multiple of the largest
    power of two not above hi - lo, so the pieces follow the binary digits of hi - lo.
    """
    out = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its complete subtrees, left to right: RFC 9162 splits at the
    largest power of two, so the rightmost pieces pair up first."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = _sha256(NODE_PREFIX + left + h).digest()
    return h


def _read(read_hash: ReadHash, indexes: list[int]) -> list[bytes]:
    if not indexes:
        return []
    hashes = list(read_hash(indexes))
    if len(hashes) != len(indexes):
        raise ProofError(
            f"hash storage returned {len(hashes)} hashes for {len(indexes)} indexes",
            where=f"storage index {indexes[0]}",
        )
    return hashes


def _ranges_hashes(ranges: list[tuple[int, int]], read_hash: ReadHash) -> list[bytes]:
    """Hash of each range [lo, hi), reading all needed stored hashes in one call."""
    pieces = [_subtrees(lo, hi) for lo, hi in ranges]
    indexes = [stored_hash_index(level, n) for piece in pieces for level, n in piece]
    hashes = _read(read_hash, indexes)
    out, at = [], 0
    for piece in pieces:
        out.append(_fold(hashes[at : at + len(piece)]))
        at += len(piece)
    return out


# --- appending and building -------------------------------------------------------------------


def stored_hashes_for_append(index: int, leaf: bytes, read_hash: ReadHash) -> list[tuple[int, bytes]]:
    """The hashes to store when appending leaf hash ``leaf`` as leaf number ``index``.

    ``index`` must equal the current tree size. Reads the left siblings (one per trailing 1
    bit of ``index``) in one call. Returns [(storage index, hash), ...] in increasing storage
    index order, starting at stored_hash_count(index): leaf hash first, then each new parent.
    """
    if index < 0:
        raise ValueError(f"leaf index {index} is negative")
    if len(leaf) != HASH_SIZE:
        raise ValueError(f"leaf hash is {len(leaf)} bytes, expected {HASH_SIZE}")
    levels = 0
    while (index >> levels) & 1:
        levels += 1
    siblings = _read(read_hash, [stored_hash_index(level, (index >> level) - 1) for level in range(levels)])
    start = stored_hash_count(index)
    out = [(start, leaf)]
    h = leaf
    for level, left in enumerate(siblings):
        h = _sha256(NODE_PREFIX + left + h).digest()
        out.append((start + level + 1, h))
    return out


def stored_hashes_for_appends(
    start: int, leaves: Iterable[bytes], read_hash: ReadHash | None = None
) -> tuple[int, list[bytes]]:
    """The hashes to store when appending many leaf hashes to a tree of size ``start``.

    Reads the O(log start) hashes of the existing complete subtrees once (``read_hash`` may be
    None when ``start`` is 0), then hashes in one pass. Returns (first storage index, hashes)
    where the hashes belong at consecutive storage indexes from the first. This is also how a
    full verification recomputes every stored hash from the leaves.
    """
    if start < 0:
        raise ValueError(f"tree size {start} is negative")
    frontier = _subtrees(0, start)
    if frontier and read_hash is None:
        raise ValueError("read_hash is needed to append to a non-empty tree")
    # stack holds the complete subtrees of the tree so far, largest (leftmost) first.
    stack = _read(read_hash, [stored_hash_index(level, n) for level, n in frontier]) if read_hash and frontier else []
    out: list[bytes] = []
    append, pop, push = out.append, stack.pop, stack.append
    node = NODE_PREFIX
    sha = _sha256
    i = start
    # Hot loop: 1,000,000 leaves make 2,000,000 hashes; keep lookups local.
    for h in leaves:
        append(h)
        n = i
        while n & 1:
            h = sha(node + pop() + h).digest()
            append(h)
            n >>= 1
        push(h)
        i += 1
    return stored_hash_count(start), out


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash (MTH) of a list of leaf hashes; EMPTY_ROOT for no leaves."""
    if not leaves:
        return EMPTY_ROOT
    stack: list[bytes] = []
    for i, h in enumerate(leaves):
        n = i
        while n & 1:
            h = _sha256(NODE_PREFIX + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
    return _fold(stack)


def tree_hash(size: int, read_hash: ReadHash) -> bytes:
    """Root hash of the first ``size`` leaves, from at most log2(size)+1 stored hashes."""
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    if size == 0:
        return EMPTY_ROOT
    return _ranges_hashes([(0, size)], read_hash)[0]


# --- proofs (RFC 9162 2.1.3 and 2.1.4) ----------------------------------------------------------


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k, for n > 1 (RFC 9162's split point)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(index: int, size: int, read_hash: ReadHash) -> list[bytes]:
    """RFC 9162 inclusion proof (PATH) of leaf ``index`` in the tree of ``size`` leaves.

    Returns the hashes from the leaf's sibling up to the root's child. Reads O(log size)
    stored hashes in one call. Raises ValueError unless 0 <= index < size.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges = []
    lo, hi = 0, size
    # Walk from the root down to the leaf; the sibling range at each step is a proof element.
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return _ranges_hashes(ranges, read_hash)


def consistency_proof(old_size: int, new_size: int, read_hash: ReadHash) -> list[bytes]:
    """RFC 9162 consistency proof (PROOF) from the tree of ``old_size`` to ``new_size``.

    Empty when old_size is 0 or equals new_size. Reads O(log new_size) stored hashes in one
    call. Raises ValueError unless 0 <= old_size <= new_size.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    ranges = []
    lo, hi = 0, new_size
    whole = True  # SUBPROOF's flag b: the old tree is still a whole subtree of the walk
    while True:
        if old_size == hi:
            if not whole:
                ranges.append((lo, hi))
            break
        k = _largest_power_of_two_below(hi - lo)
        if old_size - lo <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole = False
    ranges.reverse()
    return _ranges_hashes(ranges, read_hash)


def _check_hashes(proof: Sequence[bytes], where: str) -> None:
    for i, h in enumerate(proof):
        if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
            raise ProofError(f"proof hash {i} is not a {HASH_SIZE}-byte hash", where=where)


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` makes for leaf hash ``leaf`` at ``index`` (RFC 9162 2.1.3.2).

    Raises ProofError if the proof has the wrong length for (index, size).
    """
    where = f"leaf {index} of {size}"
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}", where=where)
    _check_hashes(proof, where)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long ({len(proof)} hashes)", where=where)
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                # fn is a right-edge node without a sibling at these levels: skip them.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short ({len(proof)} hashes)", where=where)
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Returns None. Raises ProofError (where = "leaf <index> of <size>") if it is not.
    """
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}",
            "the leaf bytes, a proof hash or the checkpoint was altered",
            where=f"leaf {index} of {size}",
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    Follows RFC 9162 2.1.4.2; for old_size 0 or old_size == new_size the proof must be empty
    (and, for equal sizes, the roots equal). Returns None; raises ProofError if not consistent.
    """
    where = f"tree {old_size} -> {new_size}"

    def fail(message: str) -> ProofError:
        return ProofError(message, where=where)

    if not 0 <= old_size <= new_size:
        raise fail(f"size {old_size} cannot be a prefix of size {new_size}")
    _check_hashes(proof, where)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise fail(f"consistency proof must be empty, got {len(proof)} hashes")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise fail("the root of an empty tree must be SHA-256 of the empty string")
        if old_size == new_size and old_root != new_root:
            raise fail(f"two different roots for the same tree size {new_size}: the log forked")
        return
    if not proof:
        raise fail("consistency proof is empty")
    path = list(proof)
    # Step 2: when the old tree is a complete subtree its root is the first node of the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail(f"consistency proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise fail(f"consistency proof is too short ({len(proof)} hashes)")
    if fr != old_root:
        raise fail(f"consistency proof does not lead to the old root of size {old_size}")
    if sr != new_root:
        raise fail(
            f"consistency proof does not lead to the new root of size {new_size}: "
            "the log was rewritten, or the proof or a checkpoint was altered"
        )


# --- verifying stored hashes -------------------------------------------------------------------


def mismatched_stored_hashes(
    leaves: Iterable[bytes], stored: Sequence[bytes], start: int = 0, read_hash: ReadHash | None = None
) -> list[int]:
    """Storage indexes whose stored hash differs from the one recomputed from ``leaves``.

    ``leaves`` are the leaf hashes from number ``start`` on; ``stored`` the stored hashes from
    storage index stored_hash_count(start) on, in order. Every mismatch is reported (a
    verifier lists all faults); a missing or extra stored hash counts as a mismatch.
    Use split_stored_hash_index to name the subtree of each bad index.
    """
    first, expected = stored_hashes_for_appends(start, leaves, read_hash)
    if len(expected) == len(stored) and expected == list(stored):
        return []  # fast path: one C-level list comparison
    bad = [first + i for i, (a, b) in enumerate(zip(expected, stored)) if a != b]
    shorter, longer = sorted((len(expected), len(stored)))
    bad.extend(range(first + shorter, first + longer))
    return bad
