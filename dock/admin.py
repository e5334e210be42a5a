"""The dock's administrative commands: enroll a camera, and what ``status`` shows.

Assign and revoke are one store call each and live in the CLI.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from dock.errors import DockError
from dock.scan import read_device
from evidence_store.clip.clock import Clock
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.ids import format_time
from evidence_store.clip.outbox import Outbox
from evidence_store.vocabulary import ClipState

log = logging.getLogger(__name__)


def enroll(store, outbox_path: str | os.PathLike, device_id: str, clock: Clock) -> str:
    """Record the camera's public key (from the outbox's device.json) under ``device_id`` and write
    the store's enrollment note and the current time onto the camera.

    Returns the key's fingerprint. Raises DockError if device.json names another device id (a
    mix-up at the bench would otherwise bind one camera's key to another's id).
    """
    outbox = Outbox(outbox_path)
    record = read_device(outbox)
    if record.device_id != device_id:
        raise DockError(f"{outbox_path}: the camera says it is {record.device_id!r}, not {device_id!r}",
                        "hint: check the camera's label, or re-initialise it with the intended id")
    note = store.enroll(device_id, record.public_key)
    try:
        outbox.write_enrollment(note)
        outbox.write_clock(store.clock_note(device_id, clock.now()))
    except OSError as exc:
        raise DockError(f"{outbox_path}: enrolled in the store, but cannot write onto the camera: {exc.strerror or exc}",
                        "hint: dock the camera again; every docking writes the enrollment note") from None
    log.info("enrolled camera %s", device_id)
    return DevicePublicKey.parse(record.public_key).fingerprint


def status(store, state_dir: Path | None) -> dict:
    """Cameras with their officer, revocation, last docking and chain head; per camera what its
    last docking left behind (pending) and how much of its material is quarantined."""
    quarantined: dict[str | None, int] = {}
    for item in store.clips():
        if item.state == ClipState.QUARANTINED:
            quarantined[item.device_id] = quarantined.get(item.device_id, 0) + 1
    cameras = []
    for info in store.devices():
        report = _last_report(state_dir, info.device_id)
        pending = []
        if report:
            pending = [c["clip_id"] for c in report.get("clips", []) if c.get("outcome") == "skipped" or not c.get("cleared")]
            pending += list(report.get("unsealed", []))
        cameras.append({
            "device_id": info.device_id,
            "officer": info.officer,
            "revoked": info.revoked,
            "enrolled_at": format_time(info.enrolled_at),
            "last_docking": format_time(info.last_docking) if info.last_docking else None,
            "last_sequence": info.last_sequence,
            "last_report": report.get("finished_at") if report else None,
            "pending": sorted(set(pending)),
            "quarantined": quarantined.get(info.device_id, 0),
        })
    known = {c["device_id"] for c in cameras}
    other = sum(n for d, n in quarantined.items() if d not in known)
    return {"cameras": cameras, "quarantined_unknown_device": other}


def _last_report(state_dir: Path | None, device_id: str) -> dict | None:
    if state_dir is None:
        return None
    try:
        return json.loads((state_dir / "dockings" / f"{device_id}.json").read_text())
    except (OSError, ValueError):
        return None


def format_status(data: dict) -> str:
    lines = []
    if not data["cameras"]:
        lines.append("no cameras enrolled")
    for cam in data["cameras"]:
        state = "REVOKED" if cam["revoked"] else "active"
        sequence = cam["last_sequence"] if cam["last_sequence"] is not None else "-"
        lines.append(f"{cam['device_id']:<16} {state:<8} officer {cam['officer'] or '-':<12} "
                     f"last docking {cam['last_docking'] or 'never':<25} sequence {sequence}")
        if cam["pending"]:
            lines.append(f"    pending on the camera: {len(cam['pending'])} clip(s): {', '.join(cam['pending'][:5])}"
                         + (" ..." if len(cam["pending"]) > 5 else ""))
        if cam["quarantined"]:
            lines.append(f"    quarantined: {cam['quarantined']} item(s) (bodycam-evidence list --all)")
    if data["quarantined_unknown_device"]:
        lines.append(f"quarantined material of unknown devices: {data['quarantined_unknown_device']}")
    return "\n".join(lines)
