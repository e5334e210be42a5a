"""Writing a manifest (= sealing a clip) and keeping the per-device chain head consistent.

Order, and why: the manifest is written LAST in the clip folder, atomically, because its presence
is what tells the dock that a clip is complete. The chain head in the state folder is updated
after it. A crash between the two leaves a signed manifest that the head does not know;
``reconcile_chain`` moves the head past it at the next start, so the next clip neither reuses
its sequence number nor names the wrong predecessor. Nothing is ever sealed twice: a clip with a
manifest is never touched again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from device.state import ChainHead, StateDir
from evidence_store.clip.devkey import DeviceKey, DevicePublicKey
from evidence_store.clip.errors import ClipError
from evidence_store.clip.fsutil import atomic_write, read_regular
from evidence_store.clip.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    Manifest,
    manifest_hash,
    parse_manifest,
    sign_manifest,
)
from evidence_store.clip.outbox import Outbox

log = logging.getLogger(__name__)


def firmware_version() -> str:
    try:
        return f"bodycam-device/{metadata.version('bodycam')}"
    except metadata.PackageNotFoundError:
        return "bodycam-device/0.1.0"


def seal(clip_dir: Path, state: StateDir, key: DeviceKey,
         build: Callable[[int, str | None], Manifest]) -> tuple[Manifest, str]:
    """Sign ``build(sequence, previous_manifest_hash)``, write it as the clip's manifest, then move
    the chain head on. Returns the manifest and its hash. Raises FormatError for a bad manifest."""
    head = state.chain()
    manifest = build(head.next_sequence, head.last_manifest)
    data = sign_manifest(manifest, key)
    atomic_write(clip_dir / MANIFEST_FILE, data)
    digest = manifest_hash(data)
    state.write_chain(ChainHead(head.next_sequence + 1, digest, manifest.clip_id))
    log.info("sealed clip %s (sequence %d, %s)", manifest.clip_id, manifest.sequence, manifest.end_reason)
    return manifest, digest


def reconcile_chain(outbox: Outbox, state: StateDir, public_key: DevicePublicKey) -> ChainHead:
    """Advance the chain head past sealed manifests it does not know (a crash after the manifest
    was written, before the head was). Only manifests signed by this device that continue the
    chain exactly are followed. Returns the (possibly new) head."""
    head = state.chain()
    sealed: dict[str | None, tuple[Manifest, str]] = {}
    for clip_id in outbox.list_clips().sealed:
        try:
            data = read_regular(outbox.clip_dir(clip_id) / MANIFEST_FILE, MAX_MANIFEST_BYTES)
            manifest = parse_manifest(data, public_key)
        except (ClipError, OSError) as exc:
            log.warning("clip %s: manifest not readable while reconciling the chain: %s", clip_id, exc)
            continue
        sealed[manifest.previous_manifest] = (manifest, manifest_hash(data))
    moved = head
    while moved.last_manifest in sealed:
        manifest, digest = sealed.pop(moved.last_manifest)
        if manifest.sequence != moved.next_sequence:
            break
        moved = ChainHead(manifest.sequence + 1, digest, manifest.clip_id)
    if moved != head:
        log.warning("chain head was behind (crash while sealing); now at sequence %d", moved.next_sequence)
        state.write_chain(moved)
    return moved
