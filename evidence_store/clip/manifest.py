"""The manifest: the camera's signed statement of what one clip is. Written last = sealed.

Canonical JSON ``{"manifest": BODY, "signature": base64}``; the signature is Ed25519 by the
device key over MANIFEST_CONTEXT || canonical(BODY). The manifest hash, which the next manifest
of the same device names as ``previous_manifest``, is the SHA-256 of the file's bytes. State that
changes later (justification, holds) belongs to the store, never here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Set
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

from evidence_store.clip import canonical
from evidence_store.clip.devkey import MANIFEST_CONTEXT, DeviceKey, DevicePublicKey, b64, unb64
from evidence_store.clip.errors import FormatError
from evidence_store.clip.ids import SEGMENT_RE, check_clip_id, check_device_id, parse_time

MANIFEST_FILE = "manifest"
FORMAT = "bodycam-manifest/v2"
# v1 manifests (before sound) have no "sound" field and are read as picture-only clips; a v2
# manifest must carry it. The version decides which, so neither can pose as the other.
FORMAT_V1 = "bodycam-manifest/v1"
FORMATS = (FORMAT_V1, FORMAT)
MAX_MANIFEST_BYTES = 1024 * 1024  # a real manifest is a few KiB; refuse gigabytes before reading
ANNOUNCED = "announced"
EMERGENCY = "emergency"
TRIGGERS = (ANNOUNCED, EMERGENCY)
END_REASONS = ("officer", "docked", "storage", "shutdown", "interrupted")


@dataclass(frozen=True)
class SegmentRecord:
    name: str
    bytes: int  # ciphertext bytes in the file
    sha256: str  # of the whole file
    plaintext_bytes: int  # of the authenticated plaintext the camera signed
    plaintext_sha256: str
    duration_ms: int
    cut: bool  # True: ends without age's final chunk (power loss); salvage reads it
    committed_bytes: int  # bytes the journal committed (== bytes unless cut)


@dataclass(frozen=True)
class Manifest:
    clip_id: str
    sequence: int
    device_id: str
    officer: str | None
    firmware: str
    profile: str
    trigger: str
    announced_at: str | None
    started_at: str
    ended_at: str
    end_reason: str
    homes: bool
    prerecord_seconds: int
    resumes: str | None
    bookmarks: list[str]
    segments: list[SegmentRecord]
    clock_source: str
    previous_manifest: str | None
    format: str = FORMAT
    homes_at: str | None = None
    notes: list[str] = field(default_factory=list)
    sound: bool = False  # v2: the clip's segments carry an AAC sound stream

    def body(self) -> dict[str, Any]:
        body = asdict(self)
        if self.format == FORMAT_V1:
            del body["sound"]  # v1 had no such field: its signed body must stay as it was
        return body

    def validate(self) -> Manifest:
        """Raise FormatError naming the first field that is out of range or of the wrong type."""
        _check_types(self)
        check_clip_id(self.clip_id)
        check_device_id(self.device_id)
        if self.format not in FORMATS:
            raise FormatError(f"manifest: unknown format {self.format!r}")
        if self.format == FORMAT_V1 and self.sound:
            raise FormatError("manifest: a v1 manifest cannot record sound")
        if not isinstance(self.sequence, int) or self.sequence < 0:
            raise FormatError("manifest: sequence must be a non-negative integer")
        if self.trigger not in TRIGGERS:
            raise FormatError(f"manifest: trigger must be one of {TRIGGERS}")
        if (self.trigger == ANNOUNCED) != (self.announced_at is not None):
            raise FormatError("manifest: announced_at is required for, and only for, announced clips")
        if self.end_reason not in END_REASONS:
            raise FormatError(f"manifest: unknown end reason {self.end_reason!r}")
        for what in ("started_at", "ended_at"):
            parse_time(getattr(self, what), f"manifest {what}")
        if self.announced_at:
            parse_time(self.announced_at, "manifest announced_at")
        for mark in self.bookmarks:
            parse_time(mark, "manifest bookmark")
        if self.resumes is not None:
            check_clip_id(self.resumes)
        if not isinstance(self.prerecord_seconds, int) or self.prerecord_seconds < 0:
            raise FormatError("manifest: prerecord_seconds must be a non-negative integer")
        if not self.segments:
            raise FormatError("manifest: a clip has at least one segment")
        names = set()
        for seg in self.segments:
            if not SEGMENT_RE.match(seg.name) or seg.name in names:
                raise FormatError(f"manifest: bad or repeated segment name {seg.name!r}")
            names.add(seg.name)
            if seg.bytes < 0 or seg.committed_bytes > seg.bytes or (not seg.cut and seg.committed_bytes != seg.bytes):
                raise FormatError(f"manifest: segment {seg.name} sizes are inconsistent")
            for digest in (seg.sha256, seg.plaintext_sha256):
                if len(digest) != 64 or digest.strip("0123456789abcdef"):
                    raise FormatError(f"manifest: segment {seg.name} has a malformed hash")
        if self.previous_manifest is not None and (
            len(self.previous_manifest) != 64 or self.previous_manifest.strip("0123456789abcdef")
        ):
            raise FormatError("manifest: previous_manifest must be a SHA-256 hex digest")
        return self

    @property
    def recorded_seconds(self) -> float:
        return sum(s.duration_ms for s in self.segments) / 1000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON types of every field. A manifest is parsed before its signature is checked, and even a
# correctly signed one comes from a device that may be buggy or compromised: a string where the
# store expects a flag must be a FormatError (quarantine), never a crash of the dock.
_STR, _OPT_STR, _INT, _BOOL = (str,), (str, type(None)), "int", (bool,)
_MANIFEST_TYPES = {
    "clip_id": _STR, "sequence": _INT, "device_id": _STR, "officer": _OPT_STR, "firmware": _STR, "profile": _STR,
    "trigger": _STR, "announced_at": _OPT_STR, "started_at": _STR, "ended_at": _STR, "end_reason": _STR,
    "homes": _BOOL, "prerecord_seconds": _INT, "resumes": _OPT_STR, "clock_source": _STR,
    "previous_manifest": _OPT_STR, "format": _STR, "homes_at": _OPT_STR, "sound": _BOOL,
}
_SEGMENT_TYPES = {
    "name": _STR, "bytes": _INT, "sha256": _STR, "plaintext_bytes": _INT, "plaintext_sha256": _STR,
    "duration_ms": _INT, "cut": _BOOL, "committed_bytes": _INT,
}


def _check_fields(record: Any, types: dict, what: str) -> None:
    for name, kind in types.items():
        value = getattr(record, name)
        ok = _is_int(value) and value >= 0 if kind == _INT else isinstance(value, kind)
        if not ok:
            raise FormatError(f"{what}: field {name} has the wrong type or a negative value")


def _check_types(manifest: Manifest) -> None:
    _check_fields(manifest, _MANIFEST_TYPES, "manifest")
    for name in ("bookmarks", "notes", "segments"):
        if not isinstance(getattr(manifest, name), list):
            raise FormatError(f"manifest: field {name} must be a list")
    if not all(isinstance(x, str) for x in manifest.bookmarks + manifest.notes):
        raise FormatError("manifest: bookmarks and notes must be strings")
    for seg in manifest.segments:
        _check_fields(seg, _SEGMENT_TYPES, "manifest segment")
    if manifest.homes_at is not None:
        parse_time(manifest.homes_at, "manifest homes_at")


class _Dataclass(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


def _require_fields(record: dict, cls: type[_Dataclass], what: str, absent: Set[str] = frozenset()) -> None:
    expected = set(cls.__dataclass_fields__) - absent
    missing, unexpected = sorted(expected - set(record)), sorted(set(record) - expected)
    if missing or unexpected:
        raise FormatError(f"{what}: unexpected or missing fields: " + "; ".join(
            ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            + ([f"unexpected field(s) {', '.join(n[:40] for n in unexpected[:5])}"] if unexpected else [])))


def sign_manifest(manifest: Manifest, key: DeviceKey) -> bytes:
    """The manifest file's bytes."""
    manifest.validate()
    body = manifest.body()
    signature = key.sign(MANIFEST_CONTEXT, canonical.dumps(body))
    return canonical.dumps({"manifest": body, "signature": b64(signature)})


def manifest_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_manifest(data: bytes, public_key: DevicePublicKey | None) -> Manifest:
    """Parse a manifest file; verify its signature when ``public_key`` is given.

    Pass ``public_key=None`` only to read the device id before looking up its enrolled key;
    such a manifest is untrusted until a second call verifies it. Raises FormatError or
    SignatureError.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"manifest: {len(data)} bytes is larger than any real manifest")
    outer = canonical.loads(data, "manifest")
    if not isinstance(outer, dict) or set(outer) != {"manifest", "signature"}:
        raise FormatError("manifest: expected exactly 'manifest' and 'signature'")
    body = outer["manifest"]
    if not isinstance(body, dict):
        raise FormatError("manifest: body is not an object")
    if body.get("format") == FORMAT_V1 and "sound" in body:
        raise FormatError("manifest: field sound does not exist in format v1")
    if body.get("format") == FORMAT and "sound" not in body:
        raise FormatError("manifest: format v2 requires the field sound")
    # Every field of its format, exactly: a signed manifest without "notes" or "format" must not
    # be completed with defaults, or two readers could disagree on what the camera signed.
    _require_fields(body, Manifest, "manifest", absent={"sound"} if body.get("format") == FORMAT_V1 else set())
    if not isinstance(body["segments"], list) or not all(isinstance(x, dict) for x in body["segments"]):
        raise FormatError("manifest: segments must be a list of objects")
    for number, seg in enumerate(body["segments"]):
        _require_fields(seg, SegmentRecord, f"manifest segment {number}")
    segments = [SegmentRecord(**s) for s in body["segments"]]
    manifest = Manifest(**(body | {"segments": segments}))
    if public_key is not None:
        public_key.verify(MANIFEST_CONTEXT, canonical.dumps(body), unb64(outer["signature"], "manifest signature"),
                          f"manifest of clip {body.get('clip_id')}")
    try:
        return manifest.validate()
    except (TypeError, AttributeError):
        # An unsigned (public_key=None) manifest is hostile input: a string where a number
        # belongs must be a format error, not a traceback.
        raise FormatError("manifest: a field has the wrong type") from None
