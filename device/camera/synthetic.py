"""A synthetic camera: colour bars, a moving bar and a burnt-in clock, encoded to H.264 with
PyAV (libx264) and muxed to MPEG-TS in memory; with sound on, a click track in AAC.

Sync is testable, not assumed: once a second (half a second in) the box in the top-left corner
turns from black to white for one frame, and the sound has a 4 ms click at that frame's
presentation time (``device.camera._sound``). A test decodes both streams and compares.

It runs either in real time on its own thread (``simulate``, the benchmarks), pacing frames on the
injected clock, or not at all until a test asks for frames with ``produce(n)``, which encodes them
as fast as it can on the caller's thread (so tests with a fake clock never sleep).

Thread rule: in real-time mode the sink is called on this camera's thread; with ``produce`` on
the caller's. Never both: ``produce`` refuses while the thread runs.
"""

from __future__ import annotations

import logging
import threading
from fractions import Fraction
from typing import TYPE_CHECKING

from device.camera._h264 import open_x264
from device.camera._sound import ClickTrack, marker_frame
from device.camera._tsmux import TsMuxer
from device.camera.base import Camera, Sink
from device.errors import HardwareError

if TYPE_CHECKING:  # PyAV and numpy load on first use
    import numpy as np
    from av.video.codeccontext import VideoCodecContext

log = logging.getLogger(__name__)

BARS = ((235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16),
        (235, 16, 235), (235, 16, 16), (16, 16, 235), (16, 16, 16))


class SyntheticCamera(Camera):
    """``clock`` stamps the burnt-in time (its ``now()``) and paces frames (its ``monotonic()``).
    ``realtime`` False: no thread, frames only through ``produce``. ``microphone(fps)`` makes the
    sound source (default: the click track); it has ``samples_until(end_us)``."""

    def __init__(self, clock, *, width: int = 320, height: int = 240, fps: float = 25.0,
                 bitrate: int = 400_000, realtime: bool = True, microphone=ClickTrack):
        self.width, self.height, self.fps = int(width) & ~1, int(height) & ~1, float(fps)
        self.bitrate = int(bitrate)
        self.realtime = realtime
        self._clock = clock
        self._codec: VideoCodecContext | None = None
        self._background: np.ndarray | None = None
        self._sink: Sink | None = None
        self._muxer: TsMuxer | None = None
        self._frame_index = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what ended the thread, if not stop()
        self.sound_error: str | None = None
        self._microphone_factory = microphone
        self._microphone = None

    # --- encoder ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open libx264 now, so that ``start`` (on an emergency press) only encodes."""
        if self._codec is not None:
            return
        import numpy as np

        codec = open_x264(self.width, self.height, self.fps, self.bitrate)
        self._codec = codec
        if self._background is None:
            bars = np.zeros((self.height, self.width, 3), np.uint8)
            step = max(1, self.width // len(BARS))
            for i, colour in enumerate(BARS):
                bars[:, i * step:(i + 1) * step] = colour
            self._background = bars

    def _picture(self, index: int):
        import av
        from PIL import Image, ImageDraw

        if self._background is None:
            raise HardwareError("the synthetic camera is not open")
        frame = self._background.copy()
        x = int(index * 4) % self.width  # a moving bar shows frozen video at a glance
        frame[:, x:x + 4] = 255
        box = max(2, min(self.width, self.height) // 4)
        frame[:box, :box] = 255 if marker_frame(index, self.fps) else 0  # the sync marker
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        now = self._clock.now()
        text = now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}  #{index}"
        draw.rectangle((0, self.height - 14, self.width, self.height), fill=(0, 0, 0))
        draw.text((2, self.height - 13), text, fill=(255, 255, 255))
        return av.VideoFrame.from_image(image).reformat(format="yuv420p")

    def _encode_one(self) -> None:
        index = self._frame_index
        self._frame_index += 1
        picture = self._picture(index)
        pts = round(index * 1_000_000 / self.fps)
        picture.pts = pts
        picture.time_base = Fraction(1, 1_000_000)
        if self._codec is None:
            raise HardwareError("the synthetic camera is not open")
        self._emit(self._codec.encode(picture))
        self._sound_until(round((index + 1) * 1_000_000 / self.fps))

    def _sound_until(self, end_us: int) -> None:
        if self._microphone is None:
            return
        sink, muxer = self._running()
        try:
            units = muxer.encode_pcm(self._microphone.samples_until(end_us), 0)
        except Exception as exc:  # the picture goes on without sound: see base.Camera
            log.error("the microphone failed, recording picture only: %s", exc)
            self.sound_error = f"microphone failed: {exc}"
            self._microphone = None
            return
        for unit in units:
            sink(unit)

    def _emit(self, packets) -> None:
        sink, muxer = self._running()
        for packet in packets:
            ts = int(packet.pts) if packet.pts is not None else 0
            for unit in muxer.mux(bytes(packet), bool(packet.is_keyframe), ts):
                sink(unit)

    def _running(self) -> tuple[Sink, TsMuxer]:
        if self._sink is None or self._muxer is None:
            raise HardwareError("the synthetic camera is not running")
        return self._sink, self._muxer

    # --- Camera ----------------------------------------------------------------------------

    def start(self, sink: Sink) -> None:
        self.open()
        if self._sink is not None:
            raise HardwareError("the synthetic camera is already running")
        self._sink = sink
        self.error = None
        self.sound_error = None
        self._microphone = None
        if self.sound:
            try:
                self._microphone = self._microphone_factory(self.fps)
            except Exception as exc:
                log.error("no microphone, recording picture only: %s", exc)
                self.sound_error = f"no microphone: {exc}"
        self._muxer = TsMuxer(self.width, self.height, self.fps, sound=self._microphone is not None)
        self._frame_index = 0
        self._stop.clear()
        if self.realtime:
            self._thread = threading.Thread(target=self._run, name="synthetic-camera", daemon=True)
            self._thread.start()

    def produce(self, frames: int) -> None:
        """Encode ``frames`` frames now, on the caller's thread (tests, benchmarks)."""
        if self._sink is None or self._thread is not None:
            raise HardwareError("produce() needs a started camera without its real-time thread")
        for _ in range(frames):
            self._encode_one()

    def _run(self) -> None:
        # The camera's thread: paces frames on the injected clock, encodes, calls the sink.
        t0 = self._clock.monotonic()
        try:
            while not self._stop.is_set():
                due = t0 + self._frame_index / self.fps
                wait = due - self._clock.monotonic()
                if wait > 0:
                    if self._stop.wait(min(wait, 0.1)):
                        break
                    continue
                self._encode_one()
        except BaseException as exc:  # the recorder learns of it through poll(): no silent stop
            log.exception("the synthetic camera stopped")
            self.error = exc

    def stop(self) -> None:
        if self._sink is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if self._codec is not None:
                self._emit(self._codec.encode(None))  # frames still inside the encoder
        except Exception as exc:
            log.warning("flushing the encoder: %s", exc)
        if self._muxer is not None:
            for unit in self._muxer.close():
                self._sink(unit)
        self._sink = None
        self._muxer = None
        self._microphone = None
        self._codec = None
        self.open()  # ready for the next start, off the emergency path

    def close(self) -> None:
        self.stop()
        self._codec = None
