"""Checks shared by the dock tests: the ingest guarantees, stated once."""

from __future__ import annotations

import os
from pathlib import Path

from dock.errors import MountError
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


class FolderMounter:
    """The dock.mount.Mounter of the tests: each devnode maps to a folder that already holds the
    outbox (a test has no block device to mount). Records every call so tests can check that each
    mount was undone."""

    def __init__(self, folders: dict[str, Path] | None = None):
        self.folders = {k: Path(v) for k, v in (folders or {}).items()}
        self.calls: list[tuple[str, str]] = []
        self.mounted: set[Path] = set()

    def mount(self, devnode: str, mountpoint: Path) -> Path:
        self.calls.append(("mount", devnode))
        try:
            folder = self.folders[devnode]
        except KeyError:
            raise MountError(f"cannot mount {devnode}: no such device") from None
        self.mounted.add(folder)
        return folder

    def unmount(self, path: Path) -> None:
        self.calls.append(("unmount", str(path)))
        self.mounted.discard(Path(path))
