"""The encrypting recorder, driven frame by frame on a fake clock (no sleeps, no threads)."""

from __future__ import annotations

import gc
import json
from datetime import timedelta

import pytest

from device.camera.base import NULL_PACKET, TS_PACKET_SIZE, TsUnit
from device.camera.synthetic import SyntheticCamera
from device.errors import RecorderError, StorageFullError
from device.prerecord import PrerecordBuffer
from device.recorder import EncryptingRecorder
from device.recorder_api import Trigger
from evidence_store.clip.age import CHUNK_SIZE
from evidence_store.clip.journal import parse_journal
from evidence_store.clip.manifest import MANIFEST_FILE, manifest_hash, parse_manifest
from evidence_store.clip.outbox import Profile
from tests.device._kit import clip_dirs, ffprobe_frames, make_camera

MIB = 1024 * 1024
FRAME = 0.04


class SpyCamera(SyntheticCamera):
    """The synthetic camera, counting starts and keeping what it sent."""

    def __init__(self, clock, **kw):
        super().__init__(clock, width=160, height=120, realtime=False, **kw)
        self.starts = 0
        self.sent = []

    def start(self, sink):
        self.starts += 1

        def spy(unit):
            self.sent.append(unit)
            sink(unit)
        super().start(spy)


def make_recorder(cam, clock, **kw):
    camera = SpyCamera(clock)
    kw.setdefault("reserve_mib", 0)
    recorder = EncryptingRecorder(cam.outbox, cam.state, cam.key, camera, clock, threaded=False, **kw)
    return recorder, camera


def announced_with_bookmark_in_a_home(recorder, camera, clock, *, frames):
    """An announced recording (3 s announcement) with ``frames`` frames, then a bookmark and the
    homes flag: every piece of state that sealing or recovery must carry into the manifest."""
    announced = clock.now()
    clock.advance(3)
    recorder.start(Trigger("announced", announced, clock.now()))
    camera.produce(frames)
    recorder.bookmark(clock.now())
    recorder.set_homes(clock.now())


def record(recorder, camera, clock, seconds, trigger=None):
    trigger = trigger or Trigger("emergency", None, clock.now())
    recorder.start(trigger)
    for _ in range(round(seconds / FRAME)):
        camera.produce(1)
        clock.advance(FRAME)
        assert recorder.poll() is None
    recorder.stop("officer")
    return recorder.last_sealed


def manifest_of(cam, clip_id):
    data = (cam.outbox / "clips" / clip_id / MANIFEST_FILE).read_bytes()
    return parse_manifest(data, cam.key.public), data


def plaintext(cam, clip_id):
    return b"".join(cam.decrypt(p) for p in sorted((cam.outbox / "clips" / clip_id).glob("seg-*.age")))


def test_recorder_emergency_clip_decrypts_and_plays(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    manifest = record(recorder, camera, clock, 2.0)
    assert manifest.trigger == "emergency" and manifest.end_reason == "officer"
    assert manifest.officer == "PK-1001" and manifest.profile == "NRW" and manifest.prerecord_seconds == 0
    assert ffprobe_frames(plaintext(cam, manifest.clip_id)) == ("h264", 50)
    assert sorted(p.name for p in clip_dirs(cam.outbox)[0].iterdir()) == ["journal", "manifest", "seg-00000.age"]


def test_recorder_padding_whole_null_packets_stream_unchanged(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    manifest = record(recorder, camera, clock, 1.5)
    data = plaintext(cam, manifest.clip_id)
    assert len(data) % TS_PACKET_SIZE == 0
    packets = [data[i:i + TS_PACKET_SIZE] for i in range(0, len(data), TS_PACKET_SIZE)]
    nulls = [p for p in packets if p == NULL_PACKET]
    assert nulls, "a slow stream must have been padded"
    assert b"".join(p for p in packets if p != NULL_PACKET) == b"".join(u.data for u in camera.sent)


def test_recorder_quiet_camera_commits_everything_within_a_second(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(5)
    written = sum(len(u.data) for u in camera.sent)
    for _ in range(50):  # one second without a frame: the controller still polls at 50 Hz
        clock.advance(0.02)
        recorder.poll()
    clip = clip_dirs(cam.outbox)[0]
    entries = parse_journal((clip / "journal").read_bytes(), cam.key.public, clip.name).entries
    assert entries[-1].plaintext_bytes >= written  # every frame is inside a sealed, synced chunk
    assert entries[-1].plaintext_bytes % CHUNK_SIZE == 0
    times = [e.time for e in entries]
    assert len(times) >= 2
    recorder.stop("officer")


def test_recorder_journal_gap_never_exceeds_one_second(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    manifest = record(recorder, camera, clock, 3.0)
    clip = cam.outbox / "clips" / manifest.clip_id
    entries = parse_journal((clip / "journal").read_bytes(), cam.key.public, clip.name).entries
    from evidence_store.clip.ids import parse_time

    stamps = [parse_time(e.time) for e in entries]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= timedelta(seconds=1)
    assert entries[-1].final and entries[-1].bytes == manifest.segments[-1].bytes


def test_recorder_segment_length_rotates_at_keyframes(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, segment_seconds=1.0)
    manifest = record(recorder, camera, clock, 3.0)
    assert [s.name for s in manifest.segments] == ["seg-00000.age", "seg-00001.age", "seg-00002.age"]
    total = 0
    for seg in manifest.segments:
        data = cam.decrypt(cam.outbox / "clips" / manifest.clip_id / seg.name)
        assert ((data[1] & 0x1F) << 8 | data[2]) in (0, 0x11)  # opens with the tables
        codec, frames = ffprobe_frames(data)  # each segment plays on its own
        total += frames
        assert seg.duration_ms == 1000 and not seg.cut
    assert total == 75


def test_recorder_not_enrolled_refuses(tmp_path, clock):
    cam = make_camera(tmp_path, enrolled=False)
    recorder, camera = make_recorder(cam, clock)
    assert recorder.can_start() == "not enrolled"
    with pytest.raises(RecorderError, match="not enrolled"):
        recorder.start(Trigger("emergency", None, clock.now()))
    assert camera.starts == 0 and clip_dirs(cam.outbox) == []


def test_recorder_below_reserve_records_and_warns_low_storage(tmp_path, clock):
    # 400 MiB free is minutes of video: an emergency must record, and the lights warn.
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, reserve_mib=512, free_bytes=lambda path: 400 * MIB)
    assert recorder.can_start() is None
    assert recorder.warnings() == ("low storage",)
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(5)
    recorder.stop("officer")
    assert recorder.last_sealed.end_reason == "officer" and camera.starts == 1


def test_recorder_below_seal_margin_refuses_start(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, reserve_mib=512, free_bytes=lambda path: 10 * MIB)
    assert recorder.can_start() == "storage reserve"  # 64 MiB margin: it could not be sealed
    with pytest.raises(StorageFullError):
        recorder.start(Trigger("emergency", None, clock.now()))
    assert camera.starts == 0


def test_recorder_disk_nearly_full_seals_and_returns_storage(tmp_path, clock):
    cam = make_camera(tmp_path)
    free = {"bytes": 1024 * MIB}
    recorder, camera = make_recorder(cam, clock, reserve_mib=64, free_bytes=lambda path: free["bytes"])
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(10)
    clock.advance(0.4)
    assert recorder.poll() is None
    free["bytes"] = 2 * MIB
    clock.advance(0.6)
    assert recorder.poll() == "storage"
    assert not recorder.recording
    manifest, _ = manifest_of(cam, recorder.last_sealed.clip_id)
    assert manifest.end_reason == "storage"


def test_recorder_nrw_profile_no_buffer_object_and_no_idle_encoder(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, local_prerecord=30)  # asks; NRW forbids
    gc.collect()
    assert recorder._prerecord is None
    assert not any(isinstance(o, PrerecordBuffer) for o in gc.get_objects())
    assert camera.starts == 0  # the encoder runs only once a recording starts


def test_recorder_prerecord_profile_buffers_in_ram_and_manifest_says_so(tmp_path, clock):
    cam = make_camera(tmp_path, profile=Profile("BW", prerecord_max_seconds=60))
    recorder, camera = make_recorder(cam, clock, local_prerecord=2)  # narrowed to 2 s
    assert camera.starts == 1 and recorder._prerecord is not None
    camera.produce(100)  # 4 s of idle video: only the last ~2 s are kept, only in RAM
    assert clip_dirs(cam.outbox) == []
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(25)
    recorder.stop("officer")
    manifest = recorder.last_sealed
    assert 1 <= manifest.prerecord_seconds <= 2
    frames = ffprobe_frames(plaintext(cam, manifest.clip_id))[1]
    assert 25 + 25 <= frames <= 25 + 51
    assert recorder._prerecord is not None  # still filling, in RAM, for the next recording
    recorder.close()


def test_recorder_chain_links_manifests(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    first = record(recorder, camera, clock, 0.5)
    second = record(recorder, camera, clock, 0.5)
    _, first_bytes = manifest_of(cam, first.clip_id)
    assert (first.sequence, second.sequence) == (0, 1)
    assert first.previous_manifest is None and second.previous_manifest == manifest_hash(first_bytes)
    head = json.loads((cam.state / "chain.json").read_text())
    assert head["next_sequence"] == 2 and not (cam.state / "recording.json").exists()


def test_recorder_announced_bookmarks_homes_in_manifest(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    announced_with_bookmark_in_a_home(recorder, camera, clock, frames=5)
    marker = json.loads((cam.state / "recording.json").read_text())
    assert marker["bookmarks"] and marker["homes_at"]  # recovery would keep them too
    camera.produce(5)
    recorder.stop("officer")
    m = recorder.last_sealed
    assert m.trigger == "announced" and m.announced_at == "2024-05-01T10:00:00.000Z"
    assert m.started_at == "2024-05-01T10:00:03.000Z" and m.homes and len(m.bookmarks) == 1


def test_recorder_emergency_during_announcement_noted_not_announced(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    announced = clock.now()
    clock.advance(1)
    recorder.start(Trigger("emergency", announced, clock.now()))
    camera.produce(3)
    recorder.stop("officer")
    m = recorder.last_sealed
    assert m.announced_at is None and any("overridden" in n for n in m.notes)


def test_recorder_resumed_trigger_links_interrupted_clip(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    recorder.set_resume("018f3398-c100-7817-ba81-71b4274f3a33")
    ordered = clock.now()
    clock.advance(5)
    recorder.start(Trigger("emergency", None, ordered, resumed_at=clock.now()))
    camera.produce(3)
    recorder.stop("officer")
    m = recorder.last_sealed
    assert m.resumes == "018f3398-c100-7817-ba81-71b4274f3a33"
    assert m.started_at == "2024-05-01T10:00:05.000Z"


def test_recorder_outbox_holds_no_private_key_or_identity(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    record(recorder, camera, clock, 1.0)
    recorder.close()
    secrets = [b"AGE-SECRET-KEY", b"BODYCAM-DEVICE-KEY", cam.key.seed, cam.identity.secret,
               str(cam.identity).encode()]
    for path in cam.outbox.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in secrets), path
    assert (cam.state / "device.key").exists()


# --- failures on the writer's side, and what poll() makes of them ----------------------------

def threaded_recorder(cam, clock, **kw):
    camera = SpyCamera(clock)
    recorder = EncryptingRecorder(cam.outbox, cam.state, cam.key, camera, clock, reserve_mib=0, threaded=True, **kw)
    return recorder, camera


def test_recorder_unexpected_write_error_poll_seals_interrupted_and_raises(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(5)
    clip_id = recorder.clip_id
    camera._sink(TsUnit(None, True, 10_000_000))  # not bytes: a TypeError deep in the writer
    with pytest.raises(RecorderError, match="recording stopped"):
        recorder.poll()
    m, _ = manifest_of(cam, clip_id)
    assert m.end_reason == "interrupted" and any("writing stopped early" in n for n in m.notes)
    assert not recorder.recording and not (cam.state / "recording.json").exists()


def test_recorder_writer_thread_gone_poll_seals_and_raises(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = threaded_recorder(cam, clock)
    try:
        recorder.start(Trigger("emergency", None, clock.now()))
        camera.produce(5)
        clip_id = recorder.clip_id
        recorder._queue.put(None)  # the writer thread ends, as it would on any uncaught error
        recorder._writer.join()
        with pytest.raises(RecorderError, match="writer thread has stopped"):
            recorder.poll()
        m, _ = manifest_of(cam, clip_id)
        assert m.end_reason == "interrupted" and any("writer thread" in n for n in m.notes)
        recorder.start(Trigger("emergency", None, clock.now()))  # a new writer for the next clip
        camera.produce(25)
        recorder.stop("officer")
        assert ffprobe_frames(plaintext(cam, recorder.last_sealed.clip_id))[1] == 25
    finally:
        recorder.close()


def test_recorder_full_queue_drops_frames_and_manifest_says_so(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = threaded_recorder(cam, clock, queue_units=4)
    try:
        recorder.start(Trigger("emergency", None, clock.now()))
        with recorder._lock:  # the writer stalls, as on an SD card stuck in fdatasync
            camera.produce(30)
            assert recorder._queue.qsize() <= 4
        recorder.stop("officer")
        m = recorder.last_sealed
        [note] = [n for n in m.notes if "writer queue full" in n]
        dropped = int(note.split()[0])
        assert 30 - 4 - 1 <= dropped < 30
        frames = ffprobe_frames(plaintext(cam, m.clip_id))[1]
        assert frames == 30 - dropped  # what was kept still plays
    finally:
        recorder.close()


def test_recorder_short_prerecord_rounds_up_to_a_second(tmp_path, clock):
    cam = make_camera(tmp_path, profile=Profile("BW", prerecord_max_seconds=60))
    recorder, camera = make_recorder(cam, clock, local_prerecord=2)
    camera.produce(11)  # 0.44 s of video before the trigger
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(5)
    recorder.stop("officer")
    assert recorder.last_sealed.prerecord_seconds == 1
    recorder.close()


def test_recorder_stop_failure_next_start_seals_old_clip_with_its_marker(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    announced_with_bookmark_in_a_home(recorder, camera, clock, frames=10)
    first = recorder.clip_id
    blocker = cam.outbox / "clips" / first / MANIFEST_FILE
    blocker.mkdir()  # the manifest cannot be written: sealing fails
    with pytest.raises(RecorderError, match="cannot seal"):
        recorder.stop("officer")
    blocker.rmdir()  # the fault passes
    recorder.start(Trigger("emergency", None, clock.now()))
    marker = json.loads((cam.state / "recording.json").read_text())
    assert marker["clip_id"] == recorder.clip_id != first
    camera.produce(5)
    recorder.stop("officer")
    old, _ = manifest_of(cam, first)
    assert old.end_reason == "interrupted" and old.trigger == "announced"
    assert old.announced_at == "2024-05-01T10:00:00.000Z" and old.homes and len(old.bookmarks) == 1
    assert recorder.last_sealed.previous_manifest is not None and recorder.last_sealed.sequence == 1


def test_recorder_camera_error_controller_continues_in_linked_clip(tmp_path, clock, mock_factory):
    from device.controller import State
    from tests.device.conftest import Rig

    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    rig = Rig(mock_factory, clock, recorder)
    try:
        rig.tap("emergency")
        assert rig.state is State.RECORDING
        first = recorder.clip_id
        camera.produce(10)
        camera.error = RuntimeError("sensor gone")
        rig.run(0.02)
        assert rig.state is State.RECORDING and recorder.clip_id != first
        failed, _ = manifest_of(cam, first)
        assert failed.end_reason == "interrupted"
        assert any("recording error: camera: sensor gone" in n for n in failed.notes)
        camera.produce(10)
        rig.hold("record", 1.6)
        assert rig.state is State.IDLE
        assert recorder.last_sealed.resumes == first and recorder.last_sealed.trigger == "emergency"
        # The new clip starts when recording resumed and keeps when it was ordered.
        assert any(f"ordered at {failed.started_at}" in n for n in recorder.last_sealed.notes)
    finally:
        rig.hardware.close()
        recorder.close()
