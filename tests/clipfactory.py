"""Real signed clips for tests, made with the clip library (before and beside the camera firmware).

``make_clip`` writes ``<outbox>/clips/<clip-id>/`` exactly as the camera does: age-encrypted MPEG-TS
segments (real H.264 from PyAV), a signed journal, and the signed manifest (written last). Video is
tiny (320x240, 10 fps) and cached per duration, so hundreds of clips stay fast.

Use from any test package::

    from tests.clipfactory import DeviceFixture, make_clip
    cam = DeviceFixture.new("cam-07")
    clip = make_clip(tmp_path / "outbox", cam, recipients, started_at=..., trigger="emergency")
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np

from evidence_store.clip.age import AgeWriter
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.ids import format_time, new_clip_id
from evidence_store.clip.journal import GENESIS, JOURNAL_FILE, JournalEntry, line_hash, sign_entry
from evidence_store.clip.manifest import (
    ANNOUNCED,
    EMERGENCY,
    MANIFEST_FILE,
    Manifest,
    SegmentRecord,
    manifest_hash,
    sign_manifest,
)

WIDTH, HEIGHT, FPS = 320, 240, 10
#: Write the plaintext in pieces this large, one journal line after each (the camera does one a second).
JOURNAL_EVERY = 48 * 1024


@functools.lru_cache(maxsize=16)
def make_ts(seconds: float = 2.0, seed: int = 0) -> bytes:
    """An MPEG-TS stream of ``seconds`` of moving test pattern in H.264 (cached)."""
    out = io.BytesIO()
    container = av.open(out, mode="w", format="mpegts")
    codec = "libx264" if "libx264" in av.codecs_available else "h264"
    stream = container.add_stream(codec, rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    if codec == "libx264":
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(FPS)}
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    for i in range(int(seconds * FPS)):
        img = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        img[..., 0] = (xs + i * 8 + seed * 40) % 256
        img[..., 1] = (ys * 2 + i * 3) % 256
        img[..., 2] = ((xs // 40 + ys // 40 + i) % 2) * 200
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out.getvalue()


@dataclass
class DeviceFixture:
    """A camera's identity for tests: device id and Ed25519 key, plus its chain head."""

    device_id: str
    key: DeviceKey
    next_sequence: int = 0
    last_manifest: str | None = None

    @classmethod
    def new(cls, device_id: str = "cam-07") -> DeviceFixture:
        return cls(device_id, DeviceKey.generate())

    @property
    def public_key(self) -> str:
        return str(self.key.public)


@dataclass
class Clip:
    clip_id: str
    folder: Path
    manifest: Manifest
    manifest_bytes: bytes
    journal_bytes: bytes
    segments: dict[str, bytes]  # name -> ciphertext
    plaintext: dict[str, bytes] = field(default_factory=dict)

    @property
    def manifest_sha256(self) -> str:
        return manifest_hash(self.manifest_bytes)


def make_clip(outbox: str | os.PathLike, device: DeviceFixture, recipients: list[str], *,
              started_at: datetime | None = None, trigger: str = ANNOUNCED, seconds: float = 2.0,
              segments: int = 1, officer: str | None = "PK-4711", sequence: int | None = None,
              previous_manifest: str | None = ..., cut_last: bool = False, clip_id: str | None = None,
              advance: bool = True) -> Clip:
    """Write a sealed clip into ``outbox/clips/<id>/`` and return it.

    ``sequence``/``previous_manifest`` default to the device's chain head, which advances unless
    ``advance`` is False. ``cut_last`` ends the last segment without age's final chunk, as after
    a power loss (journal not final, manifest says cut).
    """
    started_at = started_at or datetime.now(UTC) - timedelta(minutes=5)
    clip_id = clip_id or new_clip_id(started_at)
    sequence = device.next_sequence if sequence is None else sequence
    previous = device.last_manifest if previous_manifest is ... else previous_manifest
    folder = Path(outbox) / "clips" / clip_id
    folder.mkdir(parents=True, exist_ok=True)
    journal = bytearray()
    prev_line = GENESIS
    records, ciphertexts, plaintexts = [], {}, {}
    per_segment = seconds / segments
    for number in range(segments):
        name = f"seg-{number:05d}.age"
        plain = make_ts(per_segment, number)
        sink = io.BytesIO()
        writer = AgeWriter(sink, recipients)
        cut = cut_last and number == segments - 1
        at = started_at + timedelta(seconds=number * per_segment)
        for offset in range(0, len(plain), JOURNAL_EVERY):
            writer.write(plain[offset : offset + JOURNAL_EVERY])
            entry = JournalEntry(clip_id, name, writer.ciphertext_bytes, writer.ciphertext_sha256(),
                                 writer.plaintext_bytes, writer.plaintext_sha256(), format_time(at), False, prev_line)
            line = sign_entry(entry, device.key)
            journal += line
            prev_line = line_hash(line)
        if cut:
            committed = writer.ciphertext_bytes
            data = sink.getvalue()
            pbytes, psha = writer.plaintext_bytes, writer.plaintext_sha256()
        else:
            writer.close()
            data = sink.getvalue()
            committed = len(data)
            pbytes, psha = writer.plaintext_bytes, writer.plaintext_sha256()
            entry = JournalEntry(clip_id, name, len(data), writer.ciphertext_sha256(), pbytes, psha,
                                 format_time(at + timedelta(seconds=per_segment)), True, prev_line)
            line = sign_entry(entry, device.key)
            journal += line
            prev_line = line_hash(line)
        (folder / name).write_bytes(data)
        ciphertexts[name] = data
        plaintexts[name] = plain[:pbytes]
        records.append(SegmentRecord(name, len(data), hashlib.sha256(data).hexdigest(), pbytes, psha,
                                     int(per_segment * 1000), cut, committed))
    (folder / JOURNAL_FILE).write_bytes(bytes(journal))
    announced_at = format_time(started_at - timedelta(seconds=3)) if trigger == ANNOUNCED else None
    manifest = Manifest(
        clip_id=clip_id, sequence=sequence, device_id=device.device_id, officer=officer, firmware="test-1.0",
        profile="NRW", trigger=trigger, announced_at=announced_at, started_at=format_time(started_at),
        ended_at=format_time(started_at + timedelta(seconds=seconds)),
        end_reason="interrupted" if cut_last else "officer", homes=False, prerecord_seconds=0, resumes=None,
        bookmarks=[], segments=records, clock_source="dock", previous_manifest=previous)
    manifest_bytes = sign_manifest(manifest, device.key)
    (folder / MANIFEST_FILE).write_bytes(manifest_bytes)
    if advance:
        device.next_sequence = sequence + 1
        device.last_manifest = manifest_hash(manifest_bytes)
    return Clip(clip_id, folder, manifest, manifest_bytes, bytes(journal), ciphertexts, plaintexts)


__all__ = ["ANNOUNCED", "EMERGENCY", "DeviceFixture", "Clip", "make_clip", "make_ts"]
