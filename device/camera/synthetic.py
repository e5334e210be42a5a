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
        import av
        import numpy as np

        codec = open_x264(self.width, self.height, self.fps, self.bitrate)
        self._codec = codec
        if self._background is None:
            bars = np.zeros((self.height, self.width, 3), np.uint8)
            step = max(1, self.width // len(BARS))
            for i, colour in enumerate(BARS):
                bars[:, i * step:(i + 1) * step] = colour
            # Converted to the encoder's yuv420p once: a frame is then a copy and a few strokes in
            # its planes. Drawing in RGB and converting each frame took 20 to 40 ms at 1080p, on
            # the emergency path between the press and the first frame.
            self._background = av.VideoFrame.from_ndarray(bars, format="rgb24").reformat(format="yuv420p").to_ndarray()

    def _planes(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views of the Y, U and V planes of a yuv420p array as PyAV packs it."""
        w, h = self.width, self.height
        flat = frame.reshape(-1)
        chroma = (h // 2) * (w // 2)
        return (flat[:h * w].reshape(h, w), flat[h * w:h * w + chroma].reshape(h // 2, w // 2),
                flat[h * w + chroma:].reshape(h // 2, w // 2))

    def _paint(self, planes, rows: slice, cols: slice, luma) -> None:
        """Grey (white 235 .. black 16 in video range) over the rectangle; its chroma neutral."""
        y, u, v = planes
        y[rows, cols] = luma
        half = slice(rows.start // 2, -(-rows.stop // 2)), slice(cols.start // 2, -(-cols.stop // 2))
        u[half] = v[half] = 128

    def _picture(self, index: int):
        import av
        import numpy as np
        from PIL import Image, ImageDraw

        if self._background is None:
            raise HardwareError("the synthetic camera is not open")
        w, h = self.width, self.height
        frame = self._background.copy()
        planes = self._planes(frame)
        x = int(index * 4) % w  # a moving bar shows frozen video at a glance
        self._paint(planes, slice(0, h), slice(x, min(w, x + 4)), 235)
        box = max(2, min(w, h) // 4)
        self._paint(planes, slice(0, box), slice(0, box), 235 if marker_frame(index, self.fps) else 16)  # sync marker
        now = self._clock.now()
        text = now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}  #{index}"
        strip = Image.new("L", (w, min(h, 14)))
        ImageDraw.Draw(strip).text((2, 1), text, fill=255)
        rows = slice(h - strip.height, h)
        self._paint(planes, rows, slice(0, w), 16)
        planes[0][rows] = (16 + np.asarray(strip, np.uint16) * 219 // 255).astype(np.uint8)
        return av.VideoFrame.from_ndarray(frame, format="yuv420p")

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
