"""Sound on the camera: the legal profile decides, the configuration can only narrow it, the
manifest says per clip whether sound was captured, and a failing microphone never stops the
picture. Driven frame by frame on a fake clock; clips are a second or two at 160x120."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from device.camera._sound import AvMicrophone, ClickTrack
from device.camera.picamera2_backend import Picamera2Camera
from device.camera.v4l2 import V4l2Camera
from device.config import ProfileConfig, effective_profile
from device.errors import HardwareError
from device.recorder import EncryptingRecorder
from device.recorder_api import Trigger
from evidence_store.clip.clock import SystemClock
from evidence_store.clip.profile import NRW, Profile
from tests.device import fake_picamera2
from tests.device._kit import make_camera
from tests.device.test_camera import FakeCapture
from tests.device.test_recorder import SpyCamera, plaintext
from tests.soundcheck import find_marks, offsets

SILENT_PROFILE = Profile("NO-SOUND", prerecord_max_seconds=0, retention_days=30, sound=False)


def streams_of(data: bytes, tmp_path: Path) -> dict[str, dict]:
    path = tmp_path / "probe.ts"
    path.write_bytes(data)
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                             "stream=codec_type,codec_name,sample_rate,channels,duration", "-of", "json", str(path)],
                            capture_output=True, check=True, text=True)
    return {s["codec_type"]: s for s in json.loads(result.stdout)["streams"]}


def record_clip(cam, clock, *, frames=50, camera=None, **kw):
    camera = camera or SpyCamera(clock)
    recorder = EncryptingRecorder(cam.outbox, cam.state, cam.key, camera, clock, threaded=False, reserve_mib=0, **kw)
    recorder.start(Trigger("emergency", None, clock.now()))
    for _ in range(frames):
        camera.produce(1)
        clock.advance(0.04)
        recorder.poll()
    warnings = recorder.warnings()
    recorder.stop("officer")
    manifest = recorder.last_sealed
    recorder.close()
    return manifest, warnings


def test_sound_nrw_clip_has_aac_in_sync_and_manifest_says_sound(tmp_path, clock):
    cam = make_camera(tmp_path)
    manifest, warnings = record_clip(cam, clock, frames=60)
    assert manifest.sound is True and warnings == ()
    data = plaintext(cam, manifest.clip_id)
    streams = streams_of(data, tmp_path)
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["audio"]["codec_name"], streams["audio"]["sample_rate"], streams["audio"]["channels"]) == \
        ("aac", "48000", 1)
    boxes, clicks = find_marks(tmp_path / "probe.ts")
    assert len(boxes) == 2 and all(abs(o) <= 0.040 for o in offsets(boxes, clicks))


def test_sound_profile_forbids_no_audio_stream_and_config_cannot_switch_it_on(tmp_path, clock):
    cam = make_camera(tmp_path, profile=SILENT_PROFILE)
    manifest, _ = record_clip(cam, clock, local_sound=True)  # the configuration asks for sound
    assert manifest.sound is False
    streams = streams_of(plaintext(cam, manifest.clip_id), tmp_path)
    assert set(streams) == {"video"}
    assert not any("sound" in n for n in manifest.notes)  # not a fault: the law says so


def test_sound_config_switches_it_off_under_nrw(tmp_path, clock):
    cam = make_camera(tmp_path)
    manifest, _ = record_clip(cam, clock, local_sound=False)
    assert manifest.sound is False
    assert set(streams_of(plaintext(cam, manifest.clip_id), tmp_path)) == {"video"}


def test_sound_effective_profile_narrows_only():
    assert effective_profile(NRW, ProfileConfig(sound=True)).sound is True
    assert effective_profile(NRW, ProfileConfig(sound=False)).sound is False
    forbidding = Profile("X", sound=False)
    assert effective_profile(forbidding, ProfileConfig(sound=True)).sound is False


class FailingMicrophone(ClickTrack):
    """A click track whose device vanishes after ``works`` blocks (a USB microphone pulled)."""

    def __init__(self, fps, works=10):
        super().__init__(fps)
        self.works = works

    def samples_until(self, end_us):
        self.works -= 1
        if self.works < 0:
            raise OSError(19, "No such device")
        return super().samples_until(end_us)


def test_sound_microphone_fails_mid_clip_picture_goes_on_manifest_and_lights_say_so(tmp_path, clock):
    cam = make_camera(tmp_path)
    camera = SpyCamera(clock, microphone=FailingMicrophone)
    manifest, warnings = record_clip(cam, clock, frames=50, camera=camera)
    assert warnings == ("microphone",)
    assert manifest.sound is True  # the first part has sound
    [note] = [n for n in manifest.notes if n.startswith("sound stopped")]
    assert "No such device" in note and "picture only" in note
    data = plaintext(cam, manifest.clip_id)
    streams = streams_of(data, tmp_path)
    assert float(streams["video"]["duration"]) >= 1.9  # every frame is there
    assert float(streams["audio"]["duration"]) < 1.0


def test_sound_microphone_missing_at_start_records_picture_only(tmp_path, clock):
    def no_microphone(fps):
        raise OSError(2, "no capture device")

    cam = make_camera(tmp_path)
    manifest, warnings = record_clip(cam, clock, camera=SpyCamera(clock, microphone=no_microphone))
    assert manifest.sound is False and warnings == ("microphone",)
    assert any("no capture device" in n for n in manifest.notes)
    assert set(streams_of(plaintext(cam, manifest.clip_id), tmp_path)) == {"video"}


# --- backends -----------------------------------------------------------------------------------


def write_wav(path: Path, seconds: float = 2.0) -> None:
    """A 48 kHz mono WAV with a click every half second (a microphone for FFmpeg's wav input)."""
    from fractions import Fraction

    import av

    rate = 48_000
    pcm = np.zeros((1, int(seconds * rate)), np.int16)
    for at in range(rate // 2, pcm.shape[1], rate // 2):
        pcm[0, at:at + 200] = 20_000
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        for start in range(0, pcm.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(pcm[:, start:start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture
def picamera2_fake():
    fake_picamera2.install()
    yield fake_picamera2
    fake_picamera2.uninstall()


def collect(camera, until, timeout=10.0):
    units = []
    camera.start(units.append)
    deadline = time.monotonic() + timeout
    while not until(units) and time.monotonic() < deadline:
        time.sleep(0.02)
    camera.stop()
    return units


def test_sound_picamera2_audio_packets_muxed_beside_video(picamera2_fake, tmp_path):
    wav = tmp_path / "mic.wav"
    write_wav(wav)
    camera = Picamera2Camera(width=160, height=120, fps=25, bitrate=200_000, audio_device=str(wav), audio_format="wav")
    camera.set_sound(True)
    units = collect(camera, lambda u: sum(x.audio for x in u) >= 40)
    encoder = picamera2_fake.Picamera2.instances[0]
    assert camera.sound_error is None and camera.error is None
    streams = streams_of(b"".join(u.data for u in units), tmp_path)
    assert streams["audio"]["codec_name"] == "aac" and streams["video"]["codec_name"] == "h264"
    assert float(streams["audio"]["duration"]) >= 0.8  # real packets, not only a declared stream
    assert find_marks(tmp_path / "probe.ts")[1]  # the WAV's clicks came through
    camera.close()
    assert encoder.calls[-2:] == ["stop", "close"]


def test_sound_picamera2_microphone_missing_starts_picture_only(picamera2_fake, tmp_path):
    camera = Picamera2Camera(width=160, height=120, fps=25, bitrate=200_000,
                             audio_device=str(tmp_path / "no-such-device"), audio_format="wav")
    camera.set_sound(True)
    units = collect(camera, lambda u: len(u) >= 12)
    assert camera.sound_error is not None and "no sound" in camera.sound_error and camera.error is None
    assert set(streams_of(b"".join(u.data for u in units), tmp_path)) == {"video"}
    camera.close()


def test_sound_av_microphone_reads_a_capture_input(tmp_path):
    wav = tmp_path / "mic.wav"
    write_wav(wav, seconds=0.5)
    microphone = AvMicrophone(str(wav), "wav")  # FFmpeg's alsa/pulse inputs behave alike
    microphone.open()
    total = 0
    with pytest.raises(HardwareError, match="stopped delivering sound"):
        while True:
            total += len(microphone.read())
    microphone.close()
    assert abs(total - 24_000) <= 1024


def test_sound_av_microphone_missing_device_hardware_error(tmp_path):
    with pytest.raises(HardwareError, match="cannot open the microphone"):
        AvMicrophone(str(tmp_path / "nothing"), "wav").open()


class BlockMicrophone:
    """A microphone delivering 20 ms blocks of a quiet tone at the pace of a real one."""

    def __init__(self, device, format):
        self.closed = False

    def open(self):
        pass

    def read(self):
        time.sleep(0.02)
        return np.full(960, 0.1, np.float32)

    def close(self):
        self.closed = True


def test_sound_v4l2_microphone_thread_muxes_sound(tmp_path):
    camera = V4l2Camera(SystemClock(), device="fake", width=160, height=120, fps=25, bitrate=200_000,
                        capture_factory=FakeCapture, microphone_factory=BlockMicrophone)
    camera.set_sound(True)
    units = collect(camera, lambda u: sum(x.audio for x in u) >= 10 and len(u) >= 30)
    assert camera.error is None and camera.sound_error is None
    streams = streams_of(b"".join(u.data for u in units), tmp_path)
    assert streams["audio"]["codec_name"] == "aac" and streams["video"]["codec_name"] == "h264"
    assert float(streams["audio"]["duration"]) >= 0.15
    camera.close()


def test_sound_v4l2_microphone_missing_records_picture(tmp_path):
    camera = V4l2Camera(SystemClock(), device="fake", width=160, height=120, fps=25, bitrate=200_000,
                        capture_factory=FakeCapture,
                        microphone_factory=lambda device, format: AvMicrophone(str(tmp_path / "none"), "wav"))
    camera.set_sound(True)
    units = collect(camera, lambda u: len(u) >= 10)
    assert camera.sound_error.startswith("no microphone") and camera.error is None
    assert set(streams_of(b"".join(u.data for u in units), tmp_path)) == {"video"}
    camera.close()
