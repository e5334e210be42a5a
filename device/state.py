"""The camera's private state folder (never the outbox): chain head, recording marker, pinned key.

    device.key        the Ed25519 private key (evidence_store.clip.devkey)
    chain.json        the last sealed manifest's hash and the next sequence number
    recording.json    present while a clip is being recorded: what recovery needs to seal it
                      and to decide whether to resume
    store.vkey        the store's verifier key, pinned at the first enrollment

Every write goes through ``atomic_write``. The chain head is written after the manifest it
names, so a crash between the two leaves a manifest the head does not know yet;
``reconcile_chain`` (run at every start, see recover.py) finds it and moves the head on.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from evidence_store.clip.fsutil import atomic_write

from device.errors import DeviceError

log = logging.getLogger(__name__)

CHAIN_FILE = "chain.json"
MARKER_FILE = "recording.json"
PINNED_KEY_FILE = "store.vkey"
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def default_state_dir(outbox: str | os.PathLike) -> Path:
    """The command line's default: a sibling ``OUTBOX.state`` of the outbox."""
    outbox = Path(outbox).resolve()
    return outbox.with_name(outbox.name + ".state")


def boot_id() -> str:
    """This boot's id: a marker from an earlier boot means power was lost, not that the process
    crashed; recording is then not resumed (nobody decided to record after the power came back)."""
    try:
        return BOOT_ID_FILE.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ChainHead:
    next_sequence: int = 0
    last_manifest: str | None = None  # SHA-256 hex of the last sealed manifest's bytes
    last_clip: str | None = None


@dataclass(frozen=True)
class RecordingMarker:
    """What the recorder knows about the running clip that the journal does not say."""

    clip_id: str
    trigger: str
    announced_at: str | None  # only for announced clips (the manifest's rule)
    started_at: str
    ordered_at: str  # when the original recording was ordered (differs for a resumed clip)
    interrupted_announcement: str | None
    profile: str
    prerecord_seconds: int
    clock_source: str
    officer: str | None
    resumes: str | None
    boot_id: str
    bookmarks: tuple[str, ...] = ()
    homes_at: str | None = None


class StateDir:
    """Access to the state folder; creates it (mode 0700: it holds the private key)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def ensure(self) -> "StateDir":
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self

    def _read_json(self, name: str):
        try:
            return json.loads((self.path / name).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{self.path / name} is unreadable: {exc}",
                              "hint: the state folder is damaged; see the firmware runbook") from None

    # -- chain head ---------------------------------------------------------------------------

    def chain(self) -> ChainHead:
        data = self._read_json(CHAIN_FILE)
        return ChainHead() if data is None else ChainHead(**data)

    def write_chain(self, head: ChainHead) -> None:
        atomic_write(self.path / CHAIN_FILE, json.dumps(asdict(head), sort_keys=True).encode() + b"\n", mode=0o600)

    # -- recording marker ---------------------------------------------------------------------

    def marker(self) -> RecordingMarker | None:
        data = self._read_json(MARKER_FILE)
        if data is None:
            return None
        data["bookmarks"] = tuple(data.get("bookmarks", ()))
        return RecordingMarker(**data)

    def write_marker(self, marker: RecordingMarker) -> None:
        atomic_write(self.path / MARKER_FILE, json.dumps(asdict(marker), sort_keys=True).encode() + b"\n", mode=0o600)

    def clear_marker(self) -> None:
        try:
            (self.path / MARKER_FILE).unlink()
        except FileNotFoundError:
            return
        from evidence_store.clip.fsutil import fsync_dir

        fsync_dir(self.path)

    # -- pinned store key ---------------------------------------------------------------------

    def pinned_key(self) -> str | None:
        try:
            return (self.path / PINNED_KEY_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def pin_key(self, vkey: str) -> None:
        atomic_write(self.path / PINNED_KEY_FILE, vkey.encode() + b"\n", mode=0o600)
