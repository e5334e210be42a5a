"""A USB (UVC/V4L2) camera through OpenCV, encoded to H.264 with PyAV's libx264.

Thread rule: one capture thread reads frames, encodes and muxes them and calls the sink; the
controller's thread only starts and stops it. OpenCV and PyAV are imported on first use.
"""

from __future__ import annotations

import logging
import threading

from device.camera.base import Camera, Sink
from device.camera._h264 import open_x264
from device.camera._tsmux import TsMuxer
from device.errors import HardwareError

log = logging.getLogger(__name__)


def _opencv_capture(device: str):
    import cv2

    return cv2.VideoCapture(device, cv2.CAP_V4L2)


class V4l2Camera(Camera):
    """``capture_factory(device)`` returns an object with ``isOpened()``, ``set(prop, value)``,
    ``read() -> (ok, bgr ndarray)`` and ``release()`` (OpenCV's VideoCapture, or a test fake)."""

    def __init__(self, clock, *, device: str = "/dev/video0", width: int = 1280, height: int = 720,
                 fps: float = 25.0, bitrate: int = 4_000_000, capture_factory=_opencv_capture):
        self._clock = clock
        self.device = device
        self.width, self.height, self.fps, self.bitrate = int(width) & ~1, int(height) & ~1, fps, bitrate
        self._factory = capture_factory
        self._capture = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

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
        muxer = TsMuxer(self.width, self.height, self.fps)
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(codec, muxer, sink), name="v4l2-camera", daemon=True)
        self._thread.start()

    def _run(self, codec, muxer: TsMuxer, sink: Sink) -> None:
        # The capture thread: read, scale, encode, mux, hand over; timestamps on the injected clock.
        import av

        t0 = self._clock.monotonic()
        try:
            while not self._stop.is_set():
                ok, image = self._capture.read()
                if not ok:
                    raise HardwareError(f"the USB camera {self.device} stopped delivering frames")
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
                frame.pts = int((self._clock.monotonic() - t0) * 1_000_000)
                frame.time_base = codec.time_base
                for packet in codec.encode(frame):
                    sink(muxer.mux(bytes(packet), bool(packet.is_keyframe), int(packet.pts)))
            for packet in codec.encode(None):
                sink(muxer.mux(bytes(packet), bool(packet.is_keyframe), int(packet.pts)))
        except BaseException as exc:
            log.exception("the USB camera stopped")
            self.error = exc
        finally:
            muxer.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def close(self) -> None:
        self.stop()
        if self._capture is not None:
            self._capture.release()
            self._capture = None
