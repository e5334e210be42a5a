"""A USB (UVC/V4L2) camera through OpenCV, encoded to H.264 with PyAV's libx264, with its
ALSA microphone (or any FFmpeg capture input) encoded to AAC.

Thread rule: one capture thread reads frames, encodes and muxes them and calls the sink; with
sound, a microphone thread reads, encodes and muxes sound. The two share the muxer and the sink
under ``self._mux_lock``, so the sink is still called one unit at a time. The controller's thread
only starts and stops them. OpenCV and PyAV are imported on first use.

Both streams are stamped on the injected clock's monotonic time since start: a video frame when
it is read, the sound by its sample count from the moment its first block arrived (minus that
block's length), so a microphone's buffering does not shift the sound against the picture.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from device.camera._h264 import open_x264
from device.camera._sound import AvMicrophone
from device.camera._tsmux import TsMuxer
from device.camera.base import Camera, Sink
from device.errors import HardwareError

log = logging.getLogger(__name__)


class Capture(Protocol):
    """What the camera uses of OpenCV's VideoCapture (tests hand in a fake)."""

    def isOpened(self) -> bool: ...  # OpenCV's spelling

    def set(self, prop: int, value: float) -> bool: ...

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


def _opencv_capture(device: str) -> Capture:
    import cv2

    return cv2.VideoCapture(device, cv2.CAP_V4L2)


class V4l2Camera(Camera):
    """``capture_factory(device)`` returns an object with ``isOpened()``, ``set(prop, value)``,
    ``read() -> (ok, bgr ndarray)`` and ``release()`` (OpenCV's VideoCapture, or a test fake)."""

    def __init__(self, clock, *, device: str = "/dev/video0", width: int = 1280, height: int = 720,
                 fps: float = 25.0, bitrate: int = 4_000_000, capture_factory=_opencv_capture,
                 audio_device: str = "default", audio_format: str = "alsa", microphone_factory=AvMicrophone):
        self._clock = clock
        self.device = device
        self.width, self.height, self.fps, self.bitrate = int(width) & ~1, int(height) & ~1, fps, bitrate
        self._factory = capture_factory
        self._capture: Capture | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.sound_error: str | None = None
        self.audio_device, self.audio_format = audio_device, audio_format
        self._microphone_factory = microphone_factory
        self._mic_thread: threading.Thread | None = None
        self._mux_lock = threading.Lock()

    def open(self) -> None:
        if self._capture is not None:
            return
        capture = self._factory(self.device)
        if not capture.isOpened():
            raise HardwareError(f"cannot open the USB camera {self.device}",
                                "check that it is plugged in and that no other program uses it")
        try:
            import cv2

            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        except ImportError:
            pass  # a fake capture without OpenCV: nothing to set
        self._capture = capture

    def start(self, sink: Sink) -> None:
        self.open()
        if self._thread is not None:
            raise HardwareError("the USB camera is already running")
        codec = open_x264(self.width, self.height, self.fps, self.bitrate)
        self.error = None
        self.sound_error = None
        microphone = None
        if self.sound:
            try:
                microphone = self._microphone_factory(self.audio_device, self.audio_format)
                microphone.open()
            except Exception as exc:  # the picture must not wait for a microphone
                log.error("no microphone, recording picture only: %s", exc)
                self.sound_error = f"no microphone: {exc}"
                microphone = None
        muxer = TsMuxer(self.width, self.height, self.fps, sound=microphone is not None)
        self._stop.clear()
        t0 = self._clock.monotonic()
        self._thread = threading.Thread(target=self._run, args=(codec, muxer, sink, t0), name="v4l2-camera",
                                        daemon=True)
        self._thread.start()
        if microphone is not None:
            self._mic_thread = threading.Thread(target=self._listen, args=(microphone, muxer, sink, t0),
                                                name="v4l2-microphone", daemon=True)
            self._mic_thread.start()

    def _deliver(self, sink: Sink, units) -> None:
        for unit in units:
            sink(unit)

    def _run(self, codec, muxer: TsMuxer, sink: Sink, t0: float) -> None:
        # The capture thread: read, scale, encode, mux, hand over; timestamps on the injected clock.
        import av

        try:
            capture = self._capture
            if capture is None:
                raise HardwareError(f"the USB camera {self.device} is not open")
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    raise HardwareError(f"the USB camera {self.device} stopped delivering frames")
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
                frame.pts = int((self._clock.monotonic() - t0) * 1_000_000)
                frame.time_base = codec.time_base
                for packet in codec.encode(frame):
                    with self._mux_lock:
                        self._deliver(sink, muxer.mux(bytes(packet), bool(packet.is_keyframe), int(packet.pts)))
            for packet in codec.encode(None):
                with self._mux_lock:
                    self._deliver(sink, muxer.mux(bytes(packet), bool(packet.is_keyframe), int(packet.pts)))
        except BaseException as exc:
            log.exception("the USB camera stopped")
            self.error = exc
        finally:
            self._stop.set()  # the microphone thread ends with the picture
            if self._mic_thread is not None:
                self._mic_thread.join()
            with self._mux_lock:
                try:
                    self._deliver(sink, muxer.close())
                except Exception as exc:
                    log.warning("closing the muxer: %s", exc)

    def _listen(self, microphone, muxer: TsMuxer, sink: Sink, t0: float) -> None:
        # The microphone thread: a failure here ends the sound, never the picture.
        from device.camera.base import AUDIO_RATE

        start_us = None
        try:
            while not self._stop.is_set():
                samples = microphone.read()
                if start_us is None:
                    start_us = max(0, int((self._clock.monotonic() - t0) * 1_000_000)
                                   - len(samples) * 1_000_000 // AUDIO_RATE)
                with self._mux_lock:
                    self._deliver(sink, muxer.encode_pcm(samples, start_us))
        except Exception as exc:
            log.error("the microphone failed, recording picture only: %s", exc)
            self.sound_error = f"microphone failed: {exc}"
        finally:
            microphone.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._mic_thread = None

    def close(self) -> None:
        self.stop()
        if self._capture is not None:
            self._capture.release()
            self._capture = None
