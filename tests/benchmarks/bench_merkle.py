"""Benchmarks of evidence_store.merkle on a 1,000,000-event log kept in SQLite.

Run: ``python -m tests.benchmarks.bench_merkle`` (about 20 s). Each figure is printed as
``FIGURE | REFERENCE | RATIO | GOAL`` where the reference is measured in the same run on the
same machine, so the ratio travels between machines better than the figure does.
``run()`` returns the rows as dicts for a table runner.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import sys
import tempfile
import time

from evidence_store import merkle

LOG_SIZE = 1_000_000
PROOF_SAMPLES = 2_000
VERIFY_GOAL_S = 5.0
PROOF_GOAL_MS = 1.0


def _leaves(n: int) -> list[bytes]:
    """Event-sized leaves (~140 bytes, like a canonical-JSON event with salted hashes)."""
    pad = "ab" * 40
    return [
        b'{"actor":"%s","clip":%d,"kind":"ingest","prev":"%s","time":%d}' % (pad.encode(), i, pad[:32].encode(), 1700000000 + i)
        for i in range(n)
    ]


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS leaves (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS hashes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)")
    return db


def _reader(db: sqlite3.Connection):
    def read_hash(indexes: list[int]) -> list[bytes]:
        # One query per proof: the point of batching read_hash.
        rows = dict(db.execute(f"SELECT id, hash FROM hashes WHERE id IN ({','.join('?' * len(indexes))})", indexes))
        return [rows[i] for i in indexes]

    return read_hash


def _row(name, figure, unit, reference, goal, ok, reference_name):
    return {
        "name": name,
        "figure": figure,
        "unit": unit,
        "reference": reference,
        "reference_name": reference_name,
        "ratio": figure / reference if reference else float("inf"),
        "goal": goal,
        "ok": ok,
    }


def run(size: int = LOG_SIZE) -> list[dict]:
    """Run every benchmark; return rows {name, figure, unit, reference, ratio, goal, ok}."""
    rows = []
    leaves = _leaves(size)
    with tempfile.TemporaryDirectory() as tmp:
        db = _open(os.path.join(tmp, "log.sqlite"))

        # Reference: plain SHA-256 of the same leaves, nothing else.
        t0 = time.perf_counter()
        sha = hashlib.sha256
        for d in leaves:
            sha(d).digest()
        plain = time.perf_counter() - t0

        # 0. Context: storing the leaf rows is the event table's cost, paid with or without
        #    a Merkle tree, so it is shown but has no goal.
        t0 = time.perf_counter()
        with db:
            db.executemany("INSERT INTO leaves VALUES (?, ?)", enumerate(leaves))
        store_leaves = time.perf_counter() - t0
        rows.append(_row(f"store {size:,} leaf rows (context, SQLite)", store_leaves, "s", plain,
                         "none", True, "hashlib SHA-256 of the leaves"))

        # 1. Build: hash the leaves, compute every stored hash, insert them, read the root.
        t0 = time.perf_counter()
        first, hashes = merkle.stored_hashes_for_appends(0, [merkle.leaf_hash(d) for d in leaves])
        with db:
            db.executemany("INSERT INTO hashes VALUES (?, ?)", enumerate(hashes, first))
        root = merkle.tree_hash(size, _reader(db))
        build = time.perf_counter() - t0
        del hashes
        rows.append(_row(f"compute+store tree of {size:,} leaves (SQLite)", build, "s", plain,
                         f"< {VERIFY_GOAL_S:g} s", build < VERIFY_GOAL_S, "hashlib SHA-256 of the leaves"))

        # 2. Full verification from disk: re-read every leaf, recompute every stored hash,
        #    compare with the stored table, and the root with the checkpointed root.
        db.close()
        db = _open(os.path.join(tmp, "log.sqlite"))
        t0 = time.perf_counter()
        leaf_hashes = [merkle.leaf_hash(d) for (d,) in db.execute("SELECT data FROM leaves ORDER BY id")]
        stored = [h for (h,) in db.execute("SELECT hash FROM hashes ORDER BY id")]
        bad = merkle.mismatched_stored_hashes(leaf_hashes, stored)
        ok = not bad and merkle.tree_hash(size, lambda ix, table=stored: [table[i] for i in ix]) == root
        verify = time.perf_counter() - t0
        del leaf_hashes, stored
        rows.append(_row(f"verify log of {size:,} leaves (SQLite)", verify, "s", plain,
                         f"< {VERIFY_GOAL_S:g} s", ok and verify < VERIFY_GOAL_S, "hashlib SHA-256 of the leaves"))

        # 3. One inclusion proof at full size, read from SQLite (average of many).
        read_hash = _reader(db)
        rng = random.Random(1)
        picks = [rng.randrange(size) for _ in range(PROOF_SAMPLES)]
        t0 = time.perf_counter()
        proofs = [merkle.inclusion_proof(i, size, read_hash) for i in picks]
        prove = (time.perf_counter() - t0) / PROOF_SAMPLES * 1000

        depth = max(1, (size - 1).bit_length())
        t0 = time.perf_counter()
        for _ in range(PROOF_SAMPLES):
            h = b"\x00" * 32
            for _ in range(depth):
                h = sha(b"\x01" + h + h).digest()
        chain = (time.perf_counter() - t0) / PROOF_SAMPLES * 1000
        rows.append(_row(f"inclusion proof at size {size:,} (SQLite)", prove, "ms", chain,
                         f"< {PROOF_GOAL_MS:g} ms", prove < PROOF_GOAL_MS, f"chain of {depth} SHA-256"))

        # 4. Verifying one inclusion proof (what a court's checker does).
        t0 = time.perf_counter()
        for i, proof in zip(picks, proofs):
            merkle.verify_inclusion(i, size, merkle.leaf_hash(leaves[i]), proof, root)
        check = (time.perf_counter() - t0) / PROOF_SAMPLES * 1000
        rows.append(_row(f"verify inclusion proof at size {size:,}", check, "ms", chain,
                         f"< {PROOF_GOAL_MS:g} ms", check < PROOF_GOAL_MS, f"chain of {depth} SHA-256"))
        # 5. Appending one event at full size: read O(log n) siblings, insert O(1) hashes
        #    (2 rows amortised). The commit is left out: its fsync costs the same with or
        #    without a tree, and an ingest commits once for all its rows.
        appends = 1000
        t0 = time.perf_counter()
        with db:
            for i in range(size, size + appends):
                db.executemany("INSERT INTO hashes VALUES (?, ?)",
                               merkle.stored_hashes_for_append(i, merkle.leaf_hash(b"event %d" % i), read_hash))
        append = (time.perf_counter() - t0) / appends * 1000
        rows.append(_row(f"append one leaf at size {size:,} (SQLite, before commit)", append, "ms", chain,
                         f"< {PROOF_GOAL_MS:g} ms", append < PROOF_GOAL_MS, f"chain of {depth} SHA-256"))
        db.close()
    return rows


def _fmt(value: float, unit: str) -> str:
    return f"{value:.3f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def main() -> int:
    rows = run()
    print("FIGURE | REFERENCE | RATIO | GOAL")
    for r in rows:
        print(
            f"{r['name']}: {_fmt(r['figure'], r['unit'])} | {r['reference_name']}: "
            f"{_fmt(r['reference'], r['unit'])} | {r['ratio']:.1f}x | {r['goal']} "
            f"{'ok' if r['ok'] else 'MISSED'}"
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
