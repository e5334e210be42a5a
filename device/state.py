"""The camera's private state folder (never the outbox): chain head, recording marker, pinned key.

    device.key        the Ed25519 private key (evidence_store.clip.devkey)
    chain.json        the last sealed manifest's hash and the next sequence number
    recording.json    present while a clip is being recorded: what recovery needs to seal it
                      and to decide whether to resume
    recording.json.bad  a marker recovery could not read, kept for the runbook (never reused)
    store.vkey        the store's verifier key, pinned at the first enrollment
    enrollment        the last good enrollment note (in force while the outbox's is missing or bad)
    clock.json        the last dock time accepted (signed stamp) and the latest time the camera trusted

Every write goes through ``atomic_write``. The chain head is written after the manifest it
names, so a crash between the two leaves a manifest the head does not know yet;
``reconcile_chain`` (run at every start, see recover.py) finds it and moves the head on.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import MISSING, asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

from device.errors import DeviceError
from evidence_store.clip.errors import ClipError
from evidence_store.clip.fsutil import atomic_write, fsync_dir, read_regular
from evidence_store.clip.ids import format_time, parse_time

log = logging.getLogger(__name__)

CHAIN_FILE = "chain.json"
MARKER_FILE = "recording.json"
BAD_MARKER_SUFFIX = ".bad"
PINNED_KEY_FILE = "store.vkey"
ENROLLMENT_COPY_FILE = "enrollment"
CLOCK_RECORD_FILE = "clock.json"
MAX_ENROLLMENT_COPY = 64 * 1024  # an enrollment note is a few hundred bytes (outbox.MAX_RECORD_BYTES)
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
# Under systemd with ProcSubset=pid, /proc/sys is hidden. The unit's RuntimeDirectory= (on /run,
# a tmpfs emptied at every boot; systemd names it in $RUNTIME_DIRECTORY) then holds a random
# token made at the first start in this boot: the same token means the same boot.
RUNTIME_DIR_ENV = "RUNTIME_DIRECTORY"
BOOT_TOKEN_FILE = "boot-id"


def default_state_dir(outbox: str | os.PathLike) -> Path:
    """The command line's default: a sibling ``OUTBOX.state`` of the outbox."""
    outbox = Path(outbox).resolve()
    return outbox.with_name(outbox.name + ".state")


def check_state_outside_outbox(outbox: str | os.PathLike, state: str | os.PathLike) -> None:
    """Raise DeviceError if the state folder (private key) is the outbox or lies inside it: the
    dock and whoever holds the USB port can read the whole outbox."""
    box, st = Path(outbox).resolve(), Path(state).resolve()
    if st == box or box in st.parents:
        raise DeviceError(f"the state folder {state} is inside the outbox {outbox}",
                          "hint: the device key must never be on the evidence partition; "
                          "pass a --state folder outside the outbox (default: OUTBOX.state beside it)")


def boot_id(runtime_dir: str | os.PathLike | None = None) -> str:
    """This boot's id: a marker from an earlier boot means power was lost, not that the process
    crashed; recording is then not resumed (nobody decided to record after the power came back).

    The kernel's boot id if it is readable; else a token in ``runtime_dir`` (default
    ``$RUNTIME_DIRECTORY``), created on first use; else "" (unknown: nothing is resumed)."""
    try:
        return BOOT_ID_FILE.read_text().strip()
    except OSError:
        pass
    folder = runtime_dir if runtime_dir is not None else os.environ.get(RUNTIME_DIR_ENV, "").split(":")[0]
    if not folder:
        return ""
    path = Path(folder) / BOOT_TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot read the boot token %s: %s", path, exc)
        return ""
    token = str(uuid.uuid4())
    try:
        # O_EXCL: two processes starting at once agree on the first token written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        log.warning("cannot write the boot token %s: %s", path, exc)
        return ""
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


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
    sound: bool = False  # the camera was told to record sound (recovery's best knowledge)


# The fields' annotations (strings, under ``from __future__ import annotations``) -> JSON types.
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "bool": bool, "str": str, "str | None": (str, type(None)), "int": int, "int | None": (int, type(None)),
    "tuple[str, ...]": tuple}


def _build(cls, data, path: Path):
    """``cls(**data)`` for a JSON object of exactly ``cls``'s shape; DeviceError otherwise (a
    damaged or foreign file must give a one-line error, not a TypeError from a constructor)."""
    problem = None
    if not isinstance(data, dict):
        problem = f"expected a JSON object, got {type(data).__name__}"
    else:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        missing = sorted(name for name, f in known.items() if name not in data
                         and f.default is MISSING and f.default_factory is MISSING)
        if unknown:
            problem = f"unknown field {unknown[0]!r}"
        elif missing:
            problem = f"missing field {missing[0]!r}"
        else:
            for name, value in data.items():
                annotation = known[name].type
                wanted = _JSON_TYPES.get(annotation) if isinstance(annotation, str) else None
                # bool is an int in Python: a flag is never accepted where a number belongs
                if wanted is not None and (not isinstance(value, wanted)
                                           or (isinstance(value, bool) and wanted is not bool)):
                    problem = f"field {name!r} has the wrong type ({type(value).__name__})"
                    break
                if name == "bookmarks" and not all(isinstance(b, str) for b in value):
                    problem = "field 'bookmarks' must hold strings"
                    break
    if problem is not None:
        raise DeviceError(f"{path} is malformed: {problem}",
                          "hint: the state folder is damaged; see the firmware runbook")
    return cls(**data)


class StateDir:
    """Access to the state folder; creates it (mode 0700: it holds the private key)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def ensure(self) -> StateDir:
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
        """The chain head (a fresh one if there is none). Raises DeviceError if it is malformed."""
        data = self._read_json(CHAIN_FILE)
        return ChainHead() if data is None else _build(ChainHead, data, self.path / CHAIN_FILE)

    def write_chain(self, head: ChainHead) -> None:
        atomic_write(self.path / CHAIN_FILE, json.dumps(asdict(head), sort_keys=True).encode() + b"\n", mode=0o600)

    # -- recording marker ---------------------------------------------------------------------

    def has_marker(self) -> bool:
        return (self.path / MARKER_FILE).exists()

    def marker(self) -> RecordingMarker | None:
        """The recording marker, or None. Raises DeviceError if it is unreadable or malformed."""
        data = self._read_json(MARKER_FILE)
        if data is None:
            return None
        if isinstance(data, dict) and isinstance(data.get("bookmarks", ()), list):
            data["bookmarks"] = tuple(data.get("bookmarks", ()))
        return _build(RecordingMarker, data, self.path / MARKER_FILE)

    def set_marker_aside(self) -> Path | None:
        """Rename a marker that cannot be used to ``recording.json.bad`` (replacing an older one):
        kept for the runbook, never read again. Returns the new path, None if there was none."""
        bad = self.path / (MARKER_FILE + BAD_MARKER_SUFFIX)
        try:
            os.replace(self.path / MARKER_FILE, bad)
        except FileNotFoundError:
            return None
        fsync_dir(self.path)
        return bad

    def write_marker(self, marker: RecordingMarker) -> None:
        atomic_write(self.path / MARKER_FILE, json.dumps(asdict(marker), sort_keys=True).encode() + b"\n", mode=0o600)

    def clear_marker(self) -> None:
        try:
            (self.path / MARKER_FILE).unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.path)

    # -- pinned store key ---------------------------------------------------------------------

    def pinned_key(self) -> str | None:
        try:
            return (self.path / PINNED_KEY_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def pin_key(self, vkey: str) -> None:
        atomic_write(self.path / PINNED_KEY_FILE, vkey.encode() + b"\n", mode=0o600)

    # -- the last good enrollment -------------------------------------------------------------

    def enrollment_copy(self) -> bytes | None:
        """The last good enrollment note as it was accepted (verify it again before use)."""
        try:
            return read_regular(self.path / ENROLLMENT_COPY_FILE, MAX_ENROLLMENT_COPY)
        except FileNotFoundError:
            return None
        except (OSError, ClipError) as exc:
            log.error("the kept enrollment %s is unreadable: %s", self.path / ENROLLMENT_COPY_FILE, exc)
            return None

    def keep_enrollment(self, data: bytes) -> None:
        if self.enrollment_copy() != data:
            atomic_write(self.path / ENROLLMENT_COPY_FILE, data, mode=0o600)

    # -- the clock record ---------------------------------------------------------------------

    def clock_record(self) -> tuple[datetime | None, datetime | None]:
        """(the last accepted dock stamp's time, the latest time the camera trusted); Nones if
        there is no record. A damaged record counts as none (logged): it only makes the camera
        less strict, and the state folder is the camera's own."""
        try:
            data = self._read_json(CLOCK_RECORD_FILE)
            if data is None:
                return None, None
            stamp, known = data.get("last_stamp"), data.get("last_known")
            return (parse_time(stamp, CLOCK_RECORD_FILE) if stamp is not None else None,
                    parse_time(known, CLOCK_RECORD_FILE) if known is not None else None)
        except (DeviceError, ClipError, AttributeError) as exc:
            log.error("the clock record %s is damaged, ignored: %s", self.path / CLOCK_RECORD_FILE, exc)
            return None, None

    def write_clock_record(self, last_stamp: datetime | None, last_known: datetime | None) -> None:
        body = {"last_stamp": format_time(last_stamp) if last_stamp else None,
                "last_known": format_time(last_known) if last_known else None}
        atomic_write(self.path / CLOCK_RECORD_FILE, json.dumps(body, sort_keys=True).encode() + b"\n", mode=0o600)
