"""Shared set-up for the recorder, recovery, docking and CLI tests: a camera outbox with a real
device key, a store-signed enrollment and an age identity that only the test (the "store") holds."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from evidence_store.clip import note
from evidence_store.clip.age import Identity, Salvage, read_chunks
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.ids import format_time
from evidence_store.clip.outbox import NRW, ClockStamp, DeviceRecord, Enrollment, Outbox, Profile

DEVICE_ID = "cam-0042"
START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


@dataclass
class Camera:
    outbox: Path
    state: Path
    key: DeviceKey
    identity: Identity
    signer: note.NoteSigner

    @property
    def box(self) -> Outbox:
        return Outbox(self.outbox)

    def enroll(self, profile: Profile = NRW, signer: note.NoteSigner | None = None, officer: str = "PK-1001") -> None:
        signer = signer or self.signer
        enrollment = Enrollment(DEVICE_ID, str(self.key.public), [str(self.identity.recipient)], profile, officer,
                                signer.verifier_key(), format_time(START))
        self.box.write_enrollment(enrollment.sign(signer))

    def stamp_clock(self, moment: datetime, *, device_id: str = DEVICE_ID,
                    signer: note.NoteSigner | None = None) -> bytes:
        """Write the dock's time as the store would (a signed clock note); returns the note."""
        data = ClockStamp(device_id, format_time(moment)).sign(signer or self.signer)
        self.box.write_clock(data)
        return data

    def identity_file(self) -> Path:
        path = self.outbox.parent / "store-identity.txt"
        path.write_text(f"# test store identity\n{self.identity}\n")
        return path

    def decrypt(self, segment: Path) -> bytes:
        with segment.open("rb") as f:
            return b"".join(read_chunks(f, [self.identity]))

    def salvage(self, segment: Path) -> tuple[bytes, Salvage]:
        report = Salvage()
        with segment.open("rb") as f:
            data = b"".join(read_chunks(f, [self.identity], salvage=report))
        return data, report


def make_camera(tmp_path: Path, *, enrolled: bool = True, profile: Profile = NRW) -> Camera:
    outbox, state = tmp_path / "outbox", tmp_path / "outbox.state"
    key = DeviceKey.generate()
    key.save(state)
    Outbox(outbox).init(DeviceRecord(DEVICE_ID, str(key.public), "test"))
    cam = Camera(outbox, state, key, Identity.generate(), note.generate_signer("bodycam-store"))
    if enrolled:
        cam.enroll(profile)
    return cam


def ffprobe_frames(data: bytes) -> tuple[str, int]:
    """(codec name, frame count) of an MPEG-TS stream, counted by decoding."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames", "-of", "json", "-i", "pipe:0"],
        input=data, capture_output=True, check=True)
    stream = json.loads(result.stdout)["streams"][0]
    return stream["codec_name"], int(stream["nb_read_frames"])


def ffprobe_duration(data: bytes) -> float:
    """Seconds of video: last frame's time minus the first's, plus one frame."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0",
         "-i", "pipe:0"], input=data, capture_output=True, check=True)
    times = [float(t.strip(",")) for t in result.stdout.decode().split() if t.strip(", ")]
    return 0.0 if not times else times[-1] - times[0] + 0.04


def clip_dirs(outbox: Path) -> list[Path]:
    return sorted(p for p in (outbox / "clips").iterdir() if not p.name.startswith("."))
