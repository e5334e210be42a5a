"""Replay an MPEG-TS or raw H.264 file as if it came from the encoder (``simulate --camera FILE``,
benchmarks). The file's access units are re-muxed to fresh MPEG-TS, paced by their timestamps on
the injected clock, or handed over as fast as asked with ``produce``.

The file's sound (its first audio stream, any codec FFmpeg decodes) plays the microphone: it is
decoded once, resampled to mono 48 kHz and encoded to AAC again as the frames go out, at the same
offset from the first video frame as in the file, so a replayed recording keeps the file's sync.

Thread rule: as for the synthetic camera: the sink runs on this camera's thread in real time,
on the caller's thread with ``produce``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from device.camera._tsmux import TsMuxer
from device.camera.base import AUDIO_RATE, Camera, Sink
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


def read_sound(path: Path):
    """(mono float32 samples at 48 kHz, µs of the first sample after the first video frame's
    decode time) of the file's first audio stream, or None if it has none. Raises HardwareError."""
    import av
    import numpy as np

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio or not container.streams.video:
                return None
            video, audio = container.streams.video[0], container.streams.audio[0]
            t0 = None
            for packet in container.demux(video):
                if packet.size and packet.dts is not None:
                    t0 = int(packet.dts * packet.time_base * 1_000_000)
                    break
            container.seek(0)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
            blocks, start = [], None
            for frame in container.decode(audio):
                if start is None and frame.pts is not None and frame.time_base is not None:
                    start = int(frame.pts * frame.time_base * 1_000_000)
                blocks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            blocks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except (av.FFmpegError, OSError) as exc:
        raise HardwareError(f"cannot read the sound of {path}: {exc}") from exc
    if not blocks or start is None:
        return None
    return np.concatenate(blocks).astype(np.float32), start - (t0 or 0)


class _LoopedSound:
    """The file's samples as a microphone on the replay's looping time line (the sound repeats
    with the picture every ``span_us``)."""

    def __init__(self, pcm, start_us: int, span_us: int):
        self._pcm, self._start_us, self._span_us = pcm, start_us, span_us
        self._sample = 0

    def samples_until(self, end_us: int):
        import numpy as np

        end = end_us * AUDIO_RATE // 1_000_000
        out = np.zeros(max(0, end - self._sample), np.float32)
        n = self._sample
        while n < end:
            # Copy whole runs of samples: per loop of the picture, the sound is one slice.
            loop = (n * 1_000_000 // AUDIO_RATE) // self._span_us
            next_loop = -(-(loop + 1) * self._span_us * AUDIO_RATE // 1_000_000)
            stop = min(end, max(next_loop, n + 1))
            base = (loop * self._span_us + self._start_us) * AUDIO_RATE // 1_000_000
            lo, hi = max(n - base, 0), min(stop - base, len(self._pcm))
            if lo < hi:
                at = lo + base - self._sample
                out[at:at + hi - lo] = self._pcm[lo:hi]
            n = stop
        self._sample = max(self._sample, end)
        return out


class ReplayCamera(Camera):
    """Replays ``units`` (as from ``read_access_units``) in a loop, starting at a keyframe."""

    def __init__(self, clock, units, *, width: int, height: int, fps: float, realtime: bool = True,
                 sound=None):
        """``sound``: (samples, start µs) as from ``read_sound``, or None for a file without."""
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
        self._sound = sound
        self._microphone: _LoopedSound | None = None
        self._first_dts: int | None = None
        self.error: BaseException | None = None
        self.sound_error: str | None = None

    @classmethod
    def from_file(cls, clock, path: Path, *, realtime: bool = True) -> ReplayCamera:
        units, width, height, fps = read_access_units(Path(path))
        return cls(clock, units, width=width, height=height, fps=fps, realtime=realtime,
                   sound=read_sound(Path(path)))

    def start(self, sink: Sink) -> None:
        if self._sink is not None:
            raise HardwareError("the replay camera is already running")
        self._sink = sink
        self.sound_error = None
        self._microphone = None
        if self.sound and self._sound is None:
            log.warning("the replayed file has no sound: recording picture only")
            self.sound_error = "the replayed file has no sound"
        elif self.sound:
            self._microphone = _LoopedSound(self._sound[0], self._sound[1], self._span_us)
        self._muxer = TsMuxer(self.width, self.height, self.fps, sound=self._microphone is not None)
        self._position = next(i for i, unit in enumerate(self._units) if unit[1])
        self._loops = 0
        self._first_dts = None
        self.error = None
        self._stop.clear()
        if self.realtime:
            self._thread = threading.Thread(target=self._run, name="replay-camera", daemon=True)
            self._thread.start()

    def _next_time(self) -> int:
        return self._units[self._position][2] + self._loops * self._span_us

    def _emit_one(self) -> None:
        sink, muxer = self._sink, self._muxer
        if sink is None or muxer is None:
            raise HardwareError("the replay camera is not running")
        data, key, dts, pts = self._units[self._position]
        offset = self._loops * self._span_us
        if self._microphone is not None:
            if self._first_dts is None:
                self._first_dts = dts + offset
                self._microphone.samples_until(self._first_dts)  # sound before the first frame: skipped
            # The sound up to this frame's decode time goes in first: the muxer interleaves by time.
            for unit in muxer.encode_pcm(self._microphone.samples_until(dts + offset), self._first_dts):
                sink(unit)
        for unit in muxer.mux(data, key, dts + offset, pts + offset):
            sink(unit)
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
        except BaseException as exc:  # the recorder learns of it through poll(): no silent stop
            log.exception("the replay camera stopped")
            self.error = exc

    def stop(self) -> None:
        if self._sink is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._muxer is not None:
            for unit in self._muxer.close():
                self._sink(unit)
        self._sink = None
        self._muxer = None
