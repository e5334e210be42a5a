"""Replay an MPEG-TS or raw H.264 file as if it came from the encoder (``simulate --camera FILE``,
benchmarks). The file's access units are re-muxed to fresh MPEG-TS, paced by their timestamps on
the injected clock, or handed over as fast as asked with ``produce``.

Thread rule: as for the synthetic camera: the sink runs on this camera's thread in real time,
on the caller's thread with ``produce``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from device.camera.base import Camera, Sink
from device.camera._tsmux import TsMuxer
from device.errors import HardwareError

log = logging.getLogger(__name__)


def read_access_units(path: Path) -> tuple[list[tuple[bytes, bool, int, int]], int, int, float]:
    """All (access unit, keyframe, decode µs, presentation µs) of the first video stream, plus width, height, fps.
    Raises HardwareError if the file is not H.264 in MPEG-TS or an elementary stream."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                raise HardwareError(f"{path}: video is {stream.codec_context.name}, not H.264")
            if container.format.name not in ("mpegts", "h264"):
                raise HardwareError(f"{path}: {container.format.name} container; replay needs MPEG-TS or raw H.264")
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            width, height = stream.codec_context.width, stream.codec_context.height
            units = []
            for index, packet in enumerate(container.demux(stream)):
                if packet.size == 0:
                    continue
                default = round(index * 1_000_000 / fps)
                base = packet.time_base * 1_000_000 if packet.time_base is not None else None
                dts = int(packet.dts * base) if packet.dts is not None and base else default
                pts = int(packet.pts * base) if packet.pts is not None and base else dts
                units.append((bytes(packet), bool(packet.is_keyframe), dts, pts))
    except (av.FFmpegError, IndexError) as exc:
        raise HardwareError(f"cannot read {path}: {exc}") from exc
    if not units:
        raise HardwareError(f"{path}: no video frames")
    t0 = units[0][2]  # decode time of the first unit: nothing may come before it
    return [(data, key, dts - t0, pts - t0) for data, key, dts, pts in units], width, height, fps


class ReplayCamera(Camera):
    """Replays ``units`` (as from ``read_access_units``) in a loop, starting at a keyframe."""

    def __init__(self, clock, units, *, width: int, height: int, fps: float, realtime: bool = True):
        if not units or not any(unit[1] for unit in units):
            raise HardwareError("nothing to replay: no keyframe")
        self._clock = clock
        self._units = units
        self.width, self.height, self.fps = width, height, fps
        self.realtime = realtime
        self._span_us = units[-1][2] + round(1_000_000 / fps)
        self._sink: Sink | None = None
        self._muxer: TsMuxer | None = None
        self._position = 0
        self._loops = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_file(cls, clock, path: Path, *, realtime: bool = True) -> "ReplayCamera":
        units, width, height, fps = read_access_units(Path(path))
        return cls(clock, units, width=width, height=height, fps=fps, realtime=realtime)

    def start(self, sink: Sink) -> None:
        if self._sink is not None:
            raise HardwareError("the replay camera is already running")
        self._sink = sink
        self._muxer = TsMuxer(self.width, self.height, self.fps)
        self._position = next(i for i, unit in enumerate(self._units) if unit[1])
        self._loops = 0
        self._stop.clear()
        if self.realtime:
            self._thread = threading.Thread(target=self._run, name="replay-camera", daemon=True)
            self._thread.start()

    def _next_time(self) -> int:
        return self._units[self._position][2] + self._loops * self._span_us

    def _emit_one(self) -> None:
        data, key, dts, pts = self._units[self._position]
        offset = self._loops * self._span_us
        self._sink(self._muxer.mux(data, key, dts + offset, pts + offset))
        self._position += 1
        if self._position == len(self._units):
            self._position, self._loops = 0, self._loops + 1

    def produce(self, frames: int) -> None:
        """Hand over ``frames`` units now, on the caller's thread."""
        if self._sink is None or self._thread is not None:
            raise HardwareError("produce() needs a started camera without its real-time thread")
        for _ in range(frames):
            self._emit_one()

    def _run(self) -> None:
        t0 = self._clock.monotonic()
        first = self._next_time()
        try:
            while not self._stop.is_set():
                wait = t0 + (self._next_time() - first) / 1e6 - self._clock.monotonic()
                if wait > 0:
                    self._stop.wait(min(wait, 0.1))
                    continue
                self._emit_one()
        except BaseException:
            log.exception("the replay camera stopped")

    def stop(self) -> None:
        if self._sink is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._muxer.close()
        self._sink = None
        self._muxer = None
