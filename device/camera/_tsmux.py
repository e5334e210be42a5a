"""H.264 access units to MPEG-TS packets, in memory, with PyAV (imported lazily).

Each ``mux()`` returns exactly the TS packets of that frame: the muxer is told to flush after
every packet, so what comes out is always a whole number of 188-byte packets and the recorder may
insert null packets between any two calls. FFmpeg's muxer writes PAT and PMT before every
keyframe, which makes each keyframe a clean place to begin a new segment.

Thread rule: a TsMuxer belongs to the one thread that calls ``mux`` (the encoder's thread).
"""

from __future__ import annotations

import logging
from fractions import Fraction

from device.camera.base import TS_PACKET_SIZE, TsUnit
from device.errors import HardwareError

log = logging.getLogger(__name__)

MICROSECONDS = Fraction(1, 1_000_000)


class _Collector:
    """The file object PyAV writes into."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class TsMuxer:
    """Mux Annex-B H.264 access units into MPEG-TS. ``width``/``height``/``fps`` describe the stream."""

    def __init__(self, width: int, height: int, fps: float):
        import av  # lazily: the camera package must import without PyAV

        self._av = av
        self._out = _Collector()
        try:
            self._container = av.open(self._out, "w", format="mpegts", options={"flush_packets": "1"})
            self._stream = self._container.add_stream("h264", rate=Fraction(fps).limit_denominator(1001))
            self._stream.width = width
            self._stream.height = height
        except av.FFmpegError as exc:
            raise HardwareError(f"cannot set up the MPEG-TS muxer: {exc}") from exc
        self._last_us: int | None = None

    def mux(self, access_unit: bytes, keyframe: bool, timestamp_us: int, pts_us: int | None = None) -> TsUnit:
        """The TS packets for one access unit. ``timestamp_us`` is its decode time and must
        increase (a repeat is nudged by 1 µs); ``pts_us`` its presentation time if it differs
        (streams with B-frames; camera encoders send none)."""
        if self._last_us is not None and timestamp_us <= self._last_us:
            pts_us = None if pts_us is None else pts_us + self._last_us + 1 - timestamp_us
            timestamp_us = self._last_us + 1  # the muxer refuses non-monotonic DTS
        self._last_us = timestamp_us
        packet = self._av.Packet(access_unit)
        packet.dts = timestamp_us
        packet.pts = timestamp_us if pts_us is None else max(pts_us, timestamp_us)
        packet.time_base = MICROSECONDS
        packet.is_keyframe = keyframe
        packet.stream = self._stream
        self._container.mux(packet)
        data = self._out.take()
        if len(data) % TS_PACKET_SIZE:
            # Never seen with flush_packets; refuse rather than hand the recorder a torn packet.
            raise HardwareError(f"the muxer produced {len(data)} bytes, not whole TS packets")
        return TsUnit(data, keyframe, timestamp_us)

    def close(self) -> bytes:
        """Finish the stream; returns any last packets (usually none)."""
        try:
            self._container.close()
        except self._av.FFmpegError as exc:
            log.warning("closing the muxer: %s", exc)
        data = self._out.take()
        return data[: len(data) - len(data) % TS_PACKET_SIZE]
