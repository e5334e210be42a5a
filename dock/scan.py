"""Look at a camera's outbox and decide what to ingest, in which order, without trusting it.

Nothing here writes. A clip folder becomes a ``Candidate``: its manifest bytes (read with a size
cap, never through a link), the manifest parsed *without* its signature (only to learn the
sequence number for ordering; the ingest verifies it against the enrolled key before believing a
word of it), and either a ``problem`` (the content is wrong: the clip will be quarantined) or a
``transient`` error (the read failed: the clip is left for the next docking).
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dock.errors import DockError
from evidence_store.clip.errors import FormatError
from evidence_store.clip.fsutil import UnsafeFileError, read_regular
from evidence_store.clip.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from evidence_store.clip.outbox import CLIPS_DIR, DEVICE_FILE, DeviceRecord, Outbox
from evidence_store.errors import EvidenceError

log = logging.getLogger(__name__)

# Errors that mean "the medium went away or failed", never "the content is wrong": a clip that
# hits one is left on the camera for the next docking, never quarantined (and so never cleared).
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ESTALE, errno.ENOTCONN,
                              errno.EBUSY, errno.EAGAIN})


@dataclass
class Candidate:
    clip_id: str
    path: Path
    manifest_bytes: bytes | None = None
    manifest: Manifest | None = None  # untrusted until verified against the enrolled key
    problem: str | None = None  # content failure: quarantine with this reason
    transient: str | None = None  # I/O failure: leave on the camera

    @property
    def order_key(self) -> tuple:
        # Verified-looking clips in sequence order first; clips that cannot even be parsed last,
        # so a broken folder never delays the ones behind it.
        if self.manifest is not None:
            return (0, self.manifest.sequence, self.clip_id)
        return (1, 0, self.clip_id)


@dataclass
class Scan:
    device: DeviceRecord | None
    candidates: list[Candidate] = field(default_factory=list)
    unsealed: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for c in self.candidates if c.manifest for s in c.manifest.segments)


def read_device(outbox: Outbox) -> DeviceRecord:
    """The camera's device.json. Raises DockError when the folder is not a camera's outbox."""
    try:
        return outbox.device()
    except FormatError as exc:
        raise DockError(f"{outbox.root}: {exc}", "hint: is this a camera's evidence partition (device.json)?") from None
    except OSError as exc:
        raise DockError(f"{outbox.root}: cannot read device.json: {exc.strerror or exc}") from None


def read_device_hint(outbox: Outbox) -> tuple[DeviceRecord | None, str | None]:
    """device.json as an unsigned hint: (record, None), or (None, why it is unusable). Never
    raises for its content: a planted or broken device.json must not block a camera whose
    identity its serial or its signed clips prove (see ingest.identify)."""
    try:
        return outbox.device(), None
    except FormatError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{DEVICE_FILE}: cannot be read: {exc.strerror or exc}"


def scan_outbox(outbox: Outbox) -> Scan:
    """Read every sealed clip's manifest (unverified); return them in ingest order. device.json
    is read as a hint only (``Scan.device`` is None when it is missing or broken)."""
    scan = Scan(device=read_device_hint(outbox)[0])
    try:
        outbox.check_layout()
        listing = outbox.list_clips()
    except FormatError as exc:
        raise DockError(f"{outbox.root}: {exc}", "hint: the partition is refused as a whole; nothing on it was touched") from None
    except OSError as exc:
        raise DockError(f"{outbox.root}: cannot list clips: {exc.strerror or exc}") from None
    scan.unsealed = listing.unsealed
    scan.rejected = listing.rejected
    for name, why in listing.rejected:
        log.warning("%s: clips/%r refused: %s", outbox.root, name, why)
    for clip_id in listing.unsealed:
        log.info("%s: clip %s is not sealed (no manifest); left on the camera", outbox.root, clip_id)
    for clip_id in listing.sealed:
        scan.candidates.append(read_candidate(outbox, clip_id))
    scan.candidates.sort(key=lambda c: c.order_key)
    return scan


def read_candidate(outbox: Outbox, clip_id: str) -> Candidate:
    path = outbox.clip_dir(clip_id)
    cand = Candidate(clip_id, path)
    try:
        # The cap is enforced on the file's size before a byte is read: a manifest of
        # gigabytes is refused, not loaded.
        cand.manifest_bytes = read_regular(path / MANIFEST_FILE, MAX_MANIFEST_BYTES)
    except UnsafeFileError as exc:
        cand.problem = f"manifest: {_strip(exc, path)}"
        return cand
    except OSError as exc:
        cand.transient = f"manifest: {exc.strerror or exc}"
        return cand
    try:
        cand.manifest = parse_manifest(cand.manifest_bytes, None)
    except EvidenceError as exc:
        cand.problem = str(exc)
    return cand


def outbox_present(outbox: Outbox) -> bool:
    """False once the camera has gone (unplugged, unmounted): stop instead of failing every clip."""
    try:
        # clips/, not device.json: device.json is an unsigned hint that a partition may lack.
        os.stat(outbox.root / CLIPS_DIR, follow_symlinks=False)
        return True
    except OSError:
        return False


def _strip(exc: Exception, base: Path) -> str:
    # Log lines and quarantine reasons name files relative to the clip: the mount point differs
    # between dockings, and a reason must be the same on a rerun (quarantine is idempotent on it).
    return str(exc).replace(f"{base}/", "")
