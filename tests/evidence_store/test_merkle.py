"""Tests of evidence_store.merkle against a naive transcription of RFC 9162's recursive
definitions (MTH, PATH, SUBPROOF) and against SQLite storage."""

import hashlib
import sqlite3

import pytest

from evidence_store import merkle
from evidence_store.errors import IntegrityError

# --- naive RFC 9162 oracle: the recursive definitions of section 2.1, written out literally --


def _k(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d):
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m, d):
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return rfc_path(m, d[:k]) + [rfc_mth(d[k:])]
    return rfc_path(m - k, d[k:]) + [rfc_mth(d[:k])]


def rfc_subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [rfc_mth(d)]
    k = _k(n)
    if m <= k:
        return rfc_subproof(m, d[:k], b) + [rfc_mth(d[k:])]
    return rfc_subproof(m - k, d[k:], False) + [rfc_mth(d[:k])]


DATA = [b"event %d" % i for i in range(40)]


class MemoryLog:
    """Stored hashes in a dict, appended one leaf at a time; counts reads for the O(log n) test."""

    def __init__(self):
        self.hashes = {}
        self.reads = 0
        self.calls = 0
        self.size = 0

    def read_hash(self, indexes):
        self.calls += 1
        self.reads += len(indexes)
        return [self.hashes[i] for i in indexes]

    def append(self, data):
        for index, h in merkle.stored_hashes_for_append(self.size, merkle.leaf_hash(data), self.read_hash):
            assert index not in self.hashes, "stored hashes are never rewritten"
            self.hashes[index] = h
        self.size += 1


@pytest.fixture(scope="module")
def log():
    log = MemoryLog()
    for d in DATA:
        log.append(d)
    return log


def test_merkle_prefixes_are_rfc9162_values():
    assert merkle.LEAF_PREFIX == b"\x00" and merkle.NODE_PREFIX == b"\x01"
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


def test_merkle_empty_tree_root_is_sha256_of_nothing():
    assert merkle.root_from_leaf_hashes([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.tree_hash(0, lambda ix: []) == merkle.EMPTY_ROOT


def test_merkle_known_vector_two_leaves():
    # Root of the first two leaves (b"" and b"\x00") of the CT reference test data, whose
    # published value is the hex string below; the formula above must agree with it.
    expected = hashlib.sha256(
        b"\x01" + hashlib.sha256(b"\x00").digest() + hashlib.sha256(b"\x00\x00").digest()
    ).digest()
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(b""), merkle.leaf_hash(b"\x00")]) == expected
    assert expected.hex() == "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"


@pytest.mark.parametrize("size", range(0, len(DATA) + 1))
def test_merkle_tree_hash_at_every_size_equals_rfc_mth(log, size):
    expected = rfc_mth(DATA[:size])
    assert merkle.tree_hash(size, log.read_hash) == expected
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(d) for d in DATA[:size]]) == expected


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 31, 32, 33, 40])
def test_merkle_inclusion_proof_equals_rfc_path_and_verifies(log, size):
    root = rfc_mth(DATA[:size])
    for i in range(size):
        proof = merkle.inclusion_proof(i, size, log.read_hash)
        assert proof == rfc_path(i, DATA[:size])
        merkle.verify_inclusion(i, size, merkle.leaf_hash(DATA[i]), proof, root)


@pytest.mark.parametrize("new", [1, 2, 3, 7, 8, 9, 16, 17, 40])
def test_merkle_consistency_proof_equals_rfc_subproof_and_verifies(log, new):
    new_root = rfc_mth(DATA[:new])
    for old in range(0, new + 1):
        proof = merkle.consistency_proof(old, new, log.read_hash)
        if 0 < old < new:
            assert proof == rfc_subproof(old, DATA[:new], True)
        else:
            assert proof == []
        merkle.verify_consistency(old, new, rfc_mth(DATA[:old]), new_root, proof)


def test_merkle_stored_hash_index_round_trips_and_is_dense(log):
    assert len(log.hashes) == merkle.stored_hash_count(len(DATA))
    assert sorted(log.hashes) == list(range(len(log.hashes)))
    for index in range(len(log.hashes)):
        level, n = merkle.split_stored_hash_index(index)
        assert merkle.stored_hash_index(level, n) == index
        assert log.hashes[index] == rfc_mth(DATA[n << level : (n + 1) << level])


def test_merkle_stored_hash_index_known_values():
    # Post-order numbering (same as Go's tlog.StoredHashIndex): leaves 0,1 -> 0,1; node -> 2.
    assert [merkle.stored_hash_index(0, n) for n in range(5)] == [0, 1, 3, 4, 7]
    assert merkle.stored_hash_index(1, 0) == 2
    assert merkle.stored_hash_index(2, 0) == 6
    assert merkle.stored_hash_index(3, 0) == 14


def test_merkle_bulk_append_equals_one_by_one(log):
    first, hashes = merkle.stored_hashes_for_appends(0, [merkle.leaf_hash(d) for d in DATA])
    assert first == 0 and hashes == [log.hashes[i] for i in range(len(log.hashes))]
    first, hashes = merkle.stored_hashes_for_appends(13, [merkle.leaf_hash(d) for d in DATA[13:]], log.read_hash)
    assert first == merkle.stored_hash_count(13)
    assert hashes == [log.hashes[i] for i in range(first, len(log.hashes))]


def test_merkle_bulk_append_nonempty_without_reader_raises_value_error():
    with pytest.raises(ValueError, match="read_hash"):
        merkle.stored_hashes_for_appends(3, [b"\x00" * 32])


def test_merkle_reads_are_logarithmic_and_batched():
    log = MemoryLog()
    for d in [b"%d" % i for i in range(1 << 12)]:
        log.append(d)
    for op in (
        lambda: merkle.tree_hash(4000, log.read_hash),
        lambda: merkle.inclusion_proof(2999, 4000, log.read_hash),
        lambda: merkle.consistency_proof(1234, 4000, log.read_hash),
    ):
        log.reads = log.calls = 0
        op()
        assert log.calls == 1
        assert log.reads <= 2 * 12 + 2


def test_merkle_sqlite_storage_gives_same_proofs(log):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE hashes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)")

    def read_hash(indexes):
        rows = dict(db.execute(
            f"SELECT id, hash FROM hashes WHERE id IN ({','.join('?' * len(indexes))})", indexes
        ))
        return [rows[i] for i in indexes]

    for i, d in enumerate(DATA):
        db.executemany("INSERT INTO hashes VALUES (?, ?)", merkle.stored_hashes_for_append(i, merkle.leaf_hash(d), read_hash))
    assert merkle.inclusion_proof(17, 40, read_hash) == merkle.inclusion_proof(17, 40, log.read_hash)
    assert merkle.tree_hash(40, read_hash) == rfc_mth(DATA)


def test_merkle_mismatched_stored_hashes_reports_every_bad_index(log):
    stored = [log.hashes[i] for i in range(len(log.hashes))]
    leaves = [merkle.leaf_hash(d) for d in DATA]
    assert merkle.mismatched_stored_hashes(leaves, stored) == []
    stored[5] = b"\x00" * 32
    stored[30] = b"\x11" * 32
    assert merkle.mismatched_stored_hashes(leaves, stored) == [5, 30]
    assert merkle.mismatched_stored_hashes(leaves, stored[:-2]) == [5, 30, len(stored) - 2, len(stored) - 1]


def test_merkle_tampered_leaf_changes_recomputed_hashes(log):
    stored = [log.hashes[i] for i in range(len(log.hashes))]
    leaves = [merkle.leaf_hash(d) for d in DATA]
    leaves[9] = merkle.leaf_hash(b"event 9 edited")
    bad = merkle.mismatched_stored_hashes(leaves, stored)
    # The leaf and every complete subtree above it.
    assert [merkle.split_stored_hash_index(i) for i in bad] == [(0, 9), (1, 4), (2, 2), (3, 1), (4, 0), (5, 0)]


def test_merkle_verify_inclusion_wrong_leaf_raises_proof_error(log):
    proof = merkle.inclusion_proof(3, 40, log.read_hash)
    with pytest.raises(merkle.ProofError, match="leaf 3 does not lead to the root") as info:
        merkle.verify_inclusion(3, 40, merkle.leaf_hash(b"forged"), proof, rfc_mth(DATA))
    assert isinstance(info.value, IntegrityError)
    assert info.value.where == "leaf 3 of 40"


@pytest.mark.parametrize("position", [0, 2, 5])
def test_merkle_verify_inclusion_tampered_proof_hash_raises_proof_error(log, position):
    proof = merkle.inclusion_proof(21, 40, log.read_hash)
    proof[position] = bytes([proof[position][0] ^ 1]) + proof[position][1:]
    with pytest.raises(merkle.ProofError, match="does not lead"):
        merkle.verify_inclusion(21, 40, merkle.leaf_hash(DATA[21]), proof, rfc_mth(DATA))


@pytest.mark.parametrize(
    "index, size, change, message",
    [
        (21, 40, lambda p: p + [b"\x00" * 32], "too long"),
        (21, 40, lambda p: p[:-1], "too short"),
        (40, 40, lambda p: p, "not in a tree"),
        (21, 40, lambda p: p[:-1] + [b"short"], "32-byte"),
    ],
)
def test_merkle_verify_inclusion_bad_shape_raises_proof_error(log, index, size, change, message):
    proof = change(merkle.inclusion_proof(21, 40, log.read_hash))
    with pytest.raises(merkle.ProofError, match=message):
        merkle.verify_inclusion(index, size, merkle.leaf_hash(DATA[21]), proof, rfc_mth(DATA))


def test_merkle_verify_consistency_rewritten_history_raises_proof_error(log):
    proof = merkle.consistency_proof(13, 40, log.read_hash)
    forged_old = rfc_mth(DATA[:12] + [b"rewritten"])
    with pytest.raises(merkle.ProofError, match="old root") as info:
        merkle.verify_consistency(13, 40, forged_old, rfc_mth(DATA), proof)
    assert info.value.where == "tree 13 -> 40"


@pytest.mark.parametrize("position", [0, 1, 3])
def test_merkle_verify_consistency_tampered_proof_hash_raises_proof_error(log, position):
    proof = merkle.consistency_proof(13, 40, log.read_hash)
    proof[position] = b"\xff" + proof[position][1:]
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(13, 40, rfc_mth(DATA[:13]), rfc_mth(DATA), proof)


@pytest.mark.parametrize(
    "old, new, proof, message",
    [
        (5, 3, [], "cannot be a prefix"),
        (7, 7, [b"\x00" * 32], "must be empty"),
        (7, 7, [], "forked"),
        (7, 9, [], "empty"),
    ],
)
def test_merkle_verify_consistency_bad_shape_raises_proof_error(old, new, proof, message):
    with pytest.raises(merkle.ProofError, match=message):
        merkle.verify_consistency(old, new, rfc_mth(DATA[:old]), rfc_mth(DATA[:new] + [b"x"] * (new == old)), proof)


def test_merkle_proof_arguments_out_of_range_raise_value_error(log):
    with pytest.raises(ValueError):
        merkle.inclusion_proof(5, 5, log.read_hash)
    with pytest.raises(ValueError):
        merkle.consistency_proof(6, 5, log.read_hash)
    with pytest.raises(ValueError):
        merkle.stored_hashes_for_append(0, b"short", log.read_hash)


def test_merkle_storage_returning_too_few_hashes_raises_proof_error(log):
    with pytest.raises(merkle.ProofError, match="returned 0 hashes"):
        merkle.tree_hash(7, lambda ix: [])
