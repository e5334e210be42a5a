"""Checks shared by the dock tests: the ingest guarantees, stated once."""

from __future__ import annotations

import os
from pathlib import Path

from evidence_store.clip.outbox import Outbox
from evidence_store.store import Store
from evidence_store.verify import verify_store


def assert_store_sound(store_root: Path) -> None:
    """The store verifies: log, checkpoints, events, objects, clips."""
    with Store.open(store_root) as store:
        faults = verify_store(store)
    assert faults == [], [str(f) for f in faults]


def stored_clips(store_root: Path) -> dict[str, str]:
    """clip id -> manifest hash of every stored (not quarantined) clip; fails on a duplicate."""
    with Store.open(store_root) as store:
        rows = store.conn.execute("SELECT clip_id, manifest_sha256 FROM clips").fetchall()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a clip is stored twice"
    return dict(rows)


def ingest_events(store_root: Path) -> list[dict]:
    with Store.open(store_root) as store:
        return [e for e in store.events() if e["kind"] == "ingest"]


def outbox_clip_names(outbox: Outbox) -> list[str]:
    try:
        return sorted(os.listdir(outbox.root / "clips"))
    except FileNotFoundError:
        return []


def assert_cleared(outbox: Outbox, clips, verifier_key: str, status: str = "stored") -> None:
    """The camera holds no clip folder of ``clips`` and a valid receipt for each."""
    left = set(outbox_clip_names(outbox))
    for clip in clips:
        assert clip.clip_id not in left
        receipt = outbox.receipt(clip.clip_id, verifier_key)
        assert receipt is not None and receipt.status == status
        assert receipt.manifest_sha256 == clip.manifest_sha256
