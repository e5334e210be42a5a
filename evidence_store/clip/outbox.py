"""The outbox: the camera's evidence partition, the one place camera and dock meet.

    device.json          device id and public key                 written by the camera at init
    enrollment           signed note by the store key: recipients, profile, officer, verifier key
    clock                signed note by the store key: the dock's time at the last docking, for this device
    clips/<clip-id>/     seg-NNNNN.age, journal, manifest (written last, atomically: present = sealed)
    receipts/<clip-id>   signed note by the store key: the clip is durably stored (or quarantined)

Both sides treat the folder as untrusted: the dock reads a partition anyone could have written,
and the camera reads records the dock wrote. Every read refuses links and special files, caps
sizes, and validates names before they become paths.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from evidence_store.clip import canonical, note, safejson
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.errors import FormatError
from evidence_store.clip.fsutil import UnsafeFileError, atomic_write, fsync_dir, read_regular, require_plain_dir
from evidence_store.clip.ids import check_clip_id, check_device_id, parse_time
from evidence_store.clip.manifest import MANIFEST_FILE
from evidence_store.clip.profile import NRW, Profile  # noqa: F401 - NRW: re-exported for the store

DEVICE_FILE = "device.json"
ENROLLMENT_FILE = "enrollment"
CLOCK_FILE = "clock"
CLIPS_DIR = "clips"
RECEIPTS_DIR = "receipts"
DEVICE_FORMAT = "bodycam-device/v1"
ENROLLMENT_FORMAT = "bodycam-enrollment/v1"
RECEIPT_FORMAT = "bodycam-receipt/v1"
CLOCK_FORMAT = "bodycam-clock/v2"  # v1 was unsigned: anyone with the USB cable set the time
MAX_RECORD_BYTES = 64 * 1024
STORED = "stored"
QUARANTINED = "quarantined"


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    public_key: str
    firmware: str = ""

    def to_bytes(self) -> bytes:
        return canonical.dumps({"format": DEVICE_FORMAT} | asdict(self)) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceRecord:
        record = _json_record(data, DEVICE_FILE, DEVICE_FORMAT)
        try:
            out = cls(**record)
        except TypeError:
            raise FormatError(f"{DEVICE_FILE}: unexpected fields") from None
        if not all(isinstance(v, str) for v in record.values()):
            raise FormatError(f"{DEVICE_FILE}: every field must be a string")
        check_device_id(out.device_id)
        DevicePublicKey.parse(out.public_key)
        return out


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    device_public_key: str
    recipients: list[str]
    profile: Profile
    officer: str | None
    verifier_key: str
    issued_at: str

    def text(self) -> str:
        body = {"format": ENROLLMENT_FORMAT} | asdict(self)
        return canonical.dumps(body).decode() + "\n"

    def sign(self, signer: note.NoteSigner) -> bytes:
        return note.sign_note(self.text(), signer)

    @classmethod
    def open(cls, data: bytes, verifier_key: str | None = None) -> Enrollment:
        """Verify and parse an enrollment note.

        ``verifier_key`` is the store key the camera pinned at its first enrollment; without it
        the note must at least be signed by the key it names (first enrollment, trust on first
        use at the dock the city controls). Raises FormatError or SignatureError.
        """
        text = _note_text(data, ENROLLMENT_FILE)
        record = _json_record(text.encode(), ENROLLMENT_FILE, ENROLLMENT_FORMAT)
        try:
            record["profile"] = Profile.from_mapping(record["profile"], where=f"{ENROLLMENT_FILE}: profile")
            enrollment = cls(**record)
        except (TypeError, KeyError):
            raise FormatError(f"{ENROLLMENT_FILE}: unexpected fields") from None
        # Typed before use: the camera acts on this record, and a list where a string belongs
        # must be a refused note (the last good one stays in force), never a crash.
        if not (all(isinstance(v, str) for v in (enrollment.device_id, enrollment.device_public_key,
                                                  enrollment.verifier_key, enrollment.issued_at))
                and isinstance(enrollment.recipients, list) and all(isinstance(r, str) for r in enrollment.recipients)
                and (enrollment.officer is None or isinstance(enrollment.officer, str))):
            raise FormatError(f"{ENROLLMENT_FILE}: a field has the wrong type")
        key = verifier_key or enrollment.verifier_key
        if verifier_key and verifier_key != enrollment.verifier_key:
            raise FormatError(f"{ENROLLMENT_FILE}: names a store key other than the pinned one")
        note.open_note(data, note.NoteVerifier.from_vkey(key))
        check_device_id(enrollment.device_id)
        if not enrollment.recipients:
            raise FormatError(f"{ENROLLMENT_FILE}: no recipients")
        return enrollment


@dataclass(frozen=True)
class Receipt:
    clip_id: str
    device_id: str
    manifest_sha256: str
    status: str  # STORED or QUARANTINED
    at: str
    reason: str = ""

    def sign(self, signer: note.NoteSigner) -> bytes:
        body = {"format": RECEIPT_FORMAT} | asdict(self)
        return note.sign_note(canonical.dumps(body).decode() + "\n", signer)

    @classmethod
    def open(cls, data: bytes, verifier_key: str) -> Receipt:
        note.open_note(data, note.NoteVerifier.from_vkey(verifier_key))
        record = _json_record(_note_text(data, RECEIPTS_DIR).encode(), "receipt", RECEIPT_FORMAT)
        try:
            receipt = cls(**record)
        except TypeError:
            raise FormatError("receipt: unexpected fields") from None
        check_clip_id(receipt.clip_id)
        return receipt


@dataclass(frozen=True)
class ClockStamp:
    """The dock's time for one camera, signed by the store key.

    Bound to ``device_id``, so a stamp copied from another camera is refused; the camera also
    refuses a stamp not later than the last one it accepted (a replayed copy of an old one).
    """

    device_id: str
    time: str

    @property
    def moment(self) -> datetime:
        return parse_time(self.time, CLOCK_FILE)

    def sign(self, signer: note.NoteSigner) -> bytes:
        body = {"format": CLOCK_FORMAT} | asdict(self)
        return note.sign_note(canonical.dumps(body).decode() + "\n", signer)

    @classmethod
    def open(cls, data: bytes, verifier_key: str) -> ClockStamp:
        """Verify (against the pinned store key) and parse a clock note. Raises FormatError or
        SignatureError (both ClipError)."""
        note.open_note(data, note.NoteVerifier.from_vkey(verifier_key))
        record = _json_record(_note_text(data, CLOCK_FILE).encode(), CLOCK_FILE, CLOCK_FORMAT)
        try:
            stamp = cls(**record)
        except TypeError:
            raise FormatError(f"{CLOCK_FILE}: unexpected fields") from None
        check_device_id(stamp.device_id)
        stamp.moment  # noqa: B018 -- raises FormatError for a malformed time
        return stamp


def _note_text(data: bytes, what: str) -> str:
    text, sep, _ = data.decode("utf-8", errors="replace").rpartition("\n\n")
    if not sep:
        raise FormatError(f"{what}: not a signed note")
    return text + "\n"


def _json_record(data: bytes, what: str, fmt: str) -> dict:
    record = safejson.loads(data, what, max_bytes=MAX_RECORD_BYTES)
    if not isinstance(record, dict) or record.pop("format", None) != fmt:
        raise FormatError(f"{what}: not a {fmt} record")
    return record


@dataclass
class ClipListing:
    """What a look at clips/ found. Names that are not clip ids are reported, never opened."""

    sealed: list[str] = field(default_factory=list)
    unsealed: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, why)


class Outbox:
    """Library access to an outbox folder for the camera, the dock and the tests."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- records -----------------------------------------------------------------------------

    def _read(self, name: str, max_bytes: int = MAX_RECORD_BYTES) -> bytes | None:
        try:
            return read_regular(self.root / name, max_bytes)
        except FileNotFoundError:
            return None
        except UnsafeFileError as exc:
            raise FormatError(str(exc)) from None

    def read_record(self, name: str) -> bytes | None:
        """The bytes of the record ``name`` (at most MAX_RECORD_BYTES; never a link or special
        file), None if there is none. Raises FormatError for an unsafe or oversized file."""
        return self._read(name)

    def init(self, record: DeviceRecord) -> None:
        for sub in ("", CLIPS_DIR, RECEIPTS_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / DEVICE_FILE, record.to_bytes())

    def device(self) -> DeviceRecord:
        data = self._read(DEVICE_FILE)
        if data is None:
            raise FormatError(f"{self.root}: no {DEVICE_FILE} (not a camera outbox)")
        return DeviceRecord.from_bytes(data)

    def write_enrollment(self, data: bytes) -> None:
        atomic_write(self.root / ENROLLMENT_FILE, data)

    def enrollment(self, verifier_key: str | None = None) -> Enrollment | None:
        data = self._read(ENROLLMENT_FILE)
        return None if data is None else Enrollment.open(data, verifier_key)

    def write_clock(self, data: bytes) -> None:
        """Write a signed ClockStamp note (``Store.clock_note``)."""
        atomic_write(self.root / CLOCK_FILE, data)

    def clock(self, verifier_key: str) -> ClockStamp | None:
        """The verified clock stamp, or None if there is none. Raises ClipError if it is not valid."""
        data = self._read(CLOCK_FILE)
        return None if data is None else ClockStamp.open(data, verifier_key)

    def set_aside(self, name: str) -> str | None:
        """Rename the record ``name`` (ENROLLMENT_FILE, CLOCK_FILE or ``receipts/<clip id>``) that
        the camera refused to a hidden ``.<name>.rejected`` beside it (replacing an older one), so
        that it is not read again and stays for whoever looks into the partition. Returns the
        new name, None if there was nothing to rename."""
        path = self.root / name
        target = path.with_name(f".{path.name}.rejected")
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return None
        except OSError:
            # A folder planted under the record's name: out of the way, under a fresh name.
            target = path.with_name(f".{path.name}.rejected-{os.urandom(4).hex()}")
            os.replace(path, target)
        fsync_dir(path.parent)
        return str(target.relative_to(self.root))

    # -- clips -------------------------------------------------------------------------------

    def clip_dir(self, clip_id: str) -> Path:
        return self.root / CLIPS_DIR / check_clip_id(clip_id)

    def check_layout(self) -> None:
        """Raise FormatError unless clips/ and receipts/ are plain folders on the outbox's own
        file system; the dock refuses a partition that fails before touching anything on it."""
        for name in (CLIPS_DIR, RECEIPTS_DIR):
            self._subdir(name)

    def _subdir(self, name: str) -> Path:
        """clips/ or receipts/, checked before every use (see fsutil.require_plain_dir)."""
        path = self.root / name
        try:
            require_plain_dir(path, same_device_as=self.root)
        except UnsafeFileError as exc:
            raise FormatError(f"outbox {name}/: {exc}") from None
        return path

    def list_clips(self) -> ClipListing:
        listing = ClipListing()
        base = self._subdir(CLIPS_DIR)
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:
            return listing
        for entry in entries:
            if entry.name.startswith("."):
                continue  # the camera's own temporary files
            try:
                check_clip_id(entry.name)
            except FormatError as exc:
                listing.rejected.append((entry.name, str(exc)))
                continue
            if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                listing.rejected.append((entry.name, "not a plain folder"))
                continue
            manifest = Path(entry.path) / MANIFEST_FILE
            (listing.sealed if manifest.exists() or manifest.is_symlink() else listing.unsealed).append(entry.name)
        return listing

    def delete_clip(self, clip_id: str) -> None:
        """Remove a clip folder (only after a receipt). Links inside are removed, never followed."""
        path = self._subdir(CLIPS_DIR) / check_clip_id(clip_id)
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            # The manifest goes last: a deletion cut off by power loss or a kill must leave either
            # a sealed folder (whose receipt lets the next docking finish the job) or an empty
            # one, never a manifest-less remainder that looks like an unsealed recording.
            manifest = path / MANIFEST_FILE
            for entry in os.scandir(path):
                if entry.name == MANIFEST_FILE:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            if os.path.lexists(manifest):
                fsync_dir(path)
                os.unlink(manifest)
            os.rmdir(path)
        fsync_dir(path.parent)

    def is_empty_clip(self, clip_id: str) -> bool:
        """An empty clip folder: what a deletion cut off after its manifest leaves behind."""
        path = self._subdir(CLIPS_DIR) / check_clip_id(clip_id)
        return path.is_dir() and not path.is_symlink() and not any(os.scandir(path))

    # -- receipts ----------------------------------------------------------------------------

    def write_receipt(self, clip_id: str, data: bytes) -> None:
        (self.root / RECEIPTS_DIR).mkdir(exist_ok=True)
        atomic_write(self._subdir(RECEIPTS_DIR) / check_clip_id(clip_id), data)

    def receipt_ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self._subdir(RECEIPTS_DIR)))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append(check_clip_id(name))
            except FormatError:
                continue
        return out

    def receipt(self, clip_id: str, verifier_key: str) -> Receipt | None:
        self._subdir(RECEIPTS_DIR)
        data = self._read(f"{RECEIPTS_DIR}/{check_clip_id(clip_id)}")
        if data is None:
            return None
        receipt = Receipt.open(data, verifier_key)
        if receipt.clip_id != clip_id:
            raise FormatError(f"receipt {clip_id}: is for clip {receipt.clip_id}")
        return receipt
