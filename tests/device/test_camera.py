"""Camera backends: H.264 in whole MPEG-TS packets, keyframes that open with PAT/PMT, threads that
stop when told, and heavy libraries imported only by the backend that needs them."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from device.camera.base import NULL_PACKET, TS_PACKET_SIZE
from device.camera.picamera2_backend import Picamera2Camera
from device.camera.replay import ReplayCamera
from device.camera.synthetic import SyntheticCamera
from device.camera.v4l2 import V4l2Camera
from device.errors import HardwareError
from evidence_store.clip.clock import SystemClock
from tests.device import fake_picamera2
from tests.device._kit import ffprobe_frames


def _pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def _collect(camera, start=True):
    units = []
    lock = threading.Lock()

    def sink(unit):
        with lock:
            units.append(unit)
    if start:
        camera.start(sink)
    return units


def test_synthetic_produce_whole_ts_packets_and_plays(clock):
    camera = SyntheticCamera(clock, width=160, height=120, realtime=False)
    units = _collect(camera)
    camera.produce(30)
    camera.stop()
    assert len(units) == 30
    assert units[0].keyframe and sum(u.keyframe for u in units) == 2  # one a second at 25 fps
    for unit in units:
        assert len(unit.data) % TS_PACKET_SIZE == 0
        assert all(unit.data[i] == 0x47 for i in range(0, len(unit.data), TS_PACKET_SIZE))
    key = next(u for u in units[1:] if u.keyframe)
    assert _pid(key.data) == 0  # a keyframe opens with the PAT: a segment may start there
    assert ffprobe_frames(b"".join(u.data for u in units)) == ("h264", 30)


def test_synthetic_null_packets_between_units_still_play(clock):
    camera = SyntheticCamera(clock, width=160, height=120, realtime=False)
    units = _collect(camera)
    camera.produce(10)
    camera.stop()
    stream = (NULL_PACKET * 3).join(u.data for u in units)
    assert ffprobe_frames(stream) == ("h264", 10)


def test_synthetic_realtime_paces_frames_and_stops():
    camera = SyntheticCamera(SystemClock(), width=160, height=120, fps=25)
    units = _collect(camera)
    time.sleep(0.4)
    camera.stop()
    count = len(units)
    time.sleep(0.1)
    assert 5 <= count <= 14
    assert len(units) == count  # nothing after stop()


def test_synthetic_produce_while_realtime_raises(clock):
    camera = SyntheticCamera(SystemClock(), width=160, height=120)
    _collect(camera)
    try:
        with pytest.raises(HardwareError, match="real-time"):
            camera.produce(1)
    finally:
        camera.stop()


@pytest.fixture
def picamera2_fake():
    fake_picamera2.install()
    yield fake_picamera2
    fake_picamera2.uninstall()


def test_picamera2_fake_encoder_feeds_our_output_on_its_thread(picamera2_fake):
    camera = Picamera2Camera(width=160, height=120, fps=25, bitrate=200_000)
    threads = set()
    units = []

    def sink(unit):
        threads.add(threading.current_thread().name)
        units.append(unit)
    camera.start(sink)
    deadline = time.monotonic() + 5
    while len(units) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    camera.stop()
    count = len(units)
    time.sleep(0.05)
    assert len(units) == count >= 12
    assert threads == {"fake-encoder"}  # called on the encoder's thread, as picamera2 does
    assert units[0].keyframe and _pid(units[0].data) in (0, 0x11)
    assert ffprobe_frames(b"".join(u.data for u in units)) == ("h264", count)
    picam = picamera2_fake.Picamera2.instances[0]
    assert picam.calls[:4] == ["configure", "start", "start_encoder", "stop_encoder"]
    assert picam.config["main"]["size"] == (160, 120)
    camera.close()
    assert picam.calls[-2:] == ["stop", "close"]


def test_picamera2_output_ignores_audio_and_frames_when_not_recording(picamera2_fake):
    camera = Picamera2Camera(width=160, height=120)
    camera.open()
    _, output_cls = camera._modules
    from device.camera._tsmux import TsMuxer

    units = []
    output = output_cls(TsMuxer(160, 120, 25), units.append)
    output.outputframe(b"\x00\x00\x00\x01\x09\xf0", True, 0)  # not started: recording is False
    output.start()
    output.outputframe(None, True, 0, packet=object(), audio=True)
    assert units == [] and output.error is None


def test_picamera2_backend_without_picamera2_raises_hardware_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as off a Pi
    with pytest.raises(HardwareError, match="picamera2 is not installed"):
        Picamera2Camera().open()


def test_camera_import_heavy_libraries_not_loaded():
    code = ("import sys, device.camera, device.recorder, device.recover, device.cli;"
            "print(sorted(m for m in ('av', 'picamera2', 'cv2', 'sqlite3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class FakeCapture:
    def __init__(self, device):
        self.device = device
        self.reads = 0
        self.released = False

    def isOpened(self):
        return True

    def set(self, prop, value):
        return True

    def read(self):
        self.reads += 1
        time.sleep(0.01)
        return True, np.full((120, 160, 3), self.reads % 256, np.uint8)

    def release(self):
        self.released = True


def test_v4l2_fake_capture_encodes_to_ts():
    captures = []

    def factory(device):
        captures.append(FakeCapture(device))
        return captures[-1]
    camera = V4l2Camera(SystemClock(), width=160, height=120, fps=25, bitrate=200_000, capture_factory=factory)
    units = _collect(camera)
    time.sleep(0.3)
    camera.stop()
    camera.close()
    assert captures[0].released and camera.error is None
    assert len(units) >= 5 and units[0].keyframe
    assert ffprobe_frames(b"".join(u.data for u in units))[0] == "h264"


def test_v4l2_closed_device_raises_hardware_error():
    class Closed(FakeCapture):
        def isOpened(self):
            return False
    with pytest.raises(HardwareError, match="cannot open the USB camera"):
        V4l2Camera(SystemClock(), capture_factory=Closed).open()


def test_replay_file_remuxes_access_units(tmp_path, clock):
    source = tmp_path / "in.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "1",
                    "-c:v", "libx264", "-g", "25", "-f", "mpegts", str(source)], check=True)
    camera = ReplayCamera.from_file(clock, source, realtime=False)
    units = _collect(camera)
    camera.produce(40)  # loops past the end of the file
    camera.stop()
    assert units[0].keyframe
    assert [u.timestamp_us for u in units] == sorted(u.timestamp_us for u in units)
    assert ffprobe_frames(b"".join(u.data for u in units)) == ("h264", 40)


def test_camera_factory_builds_replay_and_refuses_unknown(tmp_path, clock):
    from device.camera import open_camera
    from device.config import CameraConfig
    from device.errors import ConfigError
    from tests.soundcheck import make_source

    source = tmp_path / "in.ts"
    make_source(source, seconds=1.0, marks=(0.5,))
    camera = open_camera(CameraConfig(backend="replay", device=str(source)), clock, realtime=False)
    assert isinstance(camera, ReplayCamera) and (camera.width, camera.height) == (160, 120)
    with pytest.raises(ConfigError, match="unknown camera backend"):
        open_camera(CameraConfig(backend="webcam"), clock)
