"""H.264 access units and AAC sound to MPEG-TS packets, in memory, with PyAV (imported lazily).

The muxer is told to flush after every packet, so what comes out is always a whole number of
188-byte packets and the recorder may insert null packets between any two calls. FFmpeg's muxer
writes PAT and PMT before every video keyframe, which makes each keyframe a clean place to begin
a new segment.

With sound, FFmpeg's interleaver holds a packet back until the other stream has caught up, so the
bytes one call returns are not necessarily those of the packet just given. The muxer therefore
describes its output itself: it cuts the bytes into units at each video PES start (with the PAT/PMT
that precede it), marks a unit a keyframe by the random-access flag FFmpeg sets on a keyframe's
first packet, and reads each unit's time from its PES header. Both streams share the one time
line in microseconds that the backends stamp, so sound and picture stay in sync by construction.
Each sound frame is a PES of its own (``pes_payload_size`` 0), so no sound waits in the muxer for
a fuller packet and a cut file holds sound up to the same instant as picture.

Thread rule: a TsMuxer belongs to one thread at a time (the backends that feed it from two
threads hold a lock around every call).
"""

from __future__ import annotations

import logging
from fractions import Fraction

from device.camera.base import AUDIO_BITRATE, AUDIO_RATE, TS_PACKET_SIZE, TsUnit
from device.errors import HardwareError

log = logging.getLogger(__name__)

MICROSECONDS = Fraction(1, 1_000_000)
PAT_PID, SDT_PID, PMT_PID = 0x0000, 0x0011, 0x1000  # FFmpeg's defaults
VIDEO_PID, AUDIO_PID = 0x0100, 0x0101
PTS_WRAP = 1 << 33


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


def _pes_time(packet: bytes) -> int | None:
    """The decode time (90 kHz: the DTS, or the PTS where they agree) of the PES that starts in
    this TS packet, or None. Decode times increase, so units stay in order with B-frames too."""
    offset = 4
    if packet[3] & 0x20:  # adaptation field
        offset += 1 + packet[4]
    pes = packet[offset:offset + 19]
    if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
        return None
    p = pes[14:19] if pes[7] & 0x40 and len(pes) == 19 else pes[9:14]
    return ((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1


def _random_access(packet: bytes) -> bool:
    return bool(packet[3] & 0x20) and packet[4] > 0 and bool(packet[5] & 0x40)


def pes_starts(data: bytes) -> list[tuple[int, int]]:
    """(packet index, PID) of every TS packet in ``data`` that starts a PES or a table. Reads the
    header bytes with strided slices (in C): a 10 Mbit/s stream is thousands of packets a second."""
    flags, low = data[1::TS_PACKET_SIZE], data[2::TS_PACKET_SIZE]
    return [(i, (f & 0x1F) << 8 | low[i]) for i, f in enumerate(flags) if f & 0x40]


class TsMuxer:
    """Mux Annex-B H.264 access units (and, with ``sound``, AAC-LC mono 48 kHz) into MPEG-TS.
    ``width``/``height``/``fps`` describe the video stream."""

    def __init__(self, width: int, height: int, fps: float, *, sound: bool = False):
        import av  # lazily: the camera package must import without PyAV

        self._av = av
        self._out = _Collector()
        self.sound = sound
        self._audio = None
        options = {"flush_packets": "1"}
        if sound:
            # A microphone that dies leaves the interleaver waiting for sound that never comes:
            # past 0.1 s it lets the picture through alone.
            options.update(pes_payload_size="0", max_interleave_delta="100000")
        try:
            self._container = av.open(self._out, "w", format="mpegts", options=options)
            self._stream = self._container.add_stream("h264", rate=Fraction(fps).limit_denominator(1001))
            self._stream.width = width
            self._stream.height = height
            if sound:
                # The muxer's own AAC encoder: its parameters (AudioSpecificConfig) describe the
                # stream, and backends that get PCM encode through it.
                self._audio = self._container.add_stream("aac", rate=AUDIO_RATE)
                ctx = self._audio.codec_context
                ctx.layout = "mono"
                ctx.format = "fltp"
                ctx.bit_rate = AUDIO_BITRATE
                ctx.time_base = Fraction(1, AUDIO_RATE)
                ctx.open()
        except av.FFmpegError as exc:
            raise HardwareError(f"cannot set up the MPEG-TS muxer: {exc}") from exc
        self._last_us: dict[str, int] = {}
        self._last_key = False
        self._origin: int | None = None  # 90 kHz PTS of microsecond 0 in the muxer's output
        self._first_video_us: int | None = None
        self._last_unit_us = 0
        self._samples = 0  # PCM samples given to encode_pcm since the first one
        self._pcm_start_us: int | None = None

    # --- input ---------------------------------------------------------------------------------

    def _monotonic(self, kind: str, timestamp_us: int) -> int:
        last = self._last_us.get(kind)
        if last is not None and timestamp_us <= last:
            timestamp_us = last + 1  # the muxer refuses non-monotonic DTS
        self._last_us[kind] = timestamp_us
        return timestamp_us

    def mux(self, access_unit: bytes, keyframe: bool, timestamp_us: int, pts_us: int | None = None) -> list[TsUnit]:
        """Mux one access unit; returns the units now complete (see the module docstring; video
        only: exactly this frame). ``timestamp_us`` is its decode time and must increase (a
        repeat is nudged by 1 µs); ``pts_us`` its presentation time if it differs."""
        nudged = self._monotonic("video", timestamp_us)
        if pts_us is not None:
            pts_us += nudged - timestamp_us
        if self._first_video_us is None:
            self._first_video_us = nudged
        packet = self._av.Packet(access_unit)
        packet.dts = nudged
        packet.pts = nudged if pts_us is None else max(pts_us, nudged)
        packet.time_base = MICROSECONDS
        packet.is_keyframe = keyframe
        packet.stream = self._stream
        self._last_key = keyframe
        return self._write(packet)

    def mux_audio(self, aac_frame: bytes, timestamp_us: int) -> list[TsUnit]:
        """Mux one encoded AAC frame (raw, as an AAC encoder emits it) stamped on the video's
        time line."""
        if self._audio is None:
            raise HardwareError("this muxer has no sound stream")
        ts = self._monotonic("audio", timestamp_us)
        packet = self._av.Packet(aac_frame)
        packet.dts = packet.pts = ts
        packet.time_base = MICROSECONDS
        packet.stream = self._audio
        return self._write(packet)

    def encode_pcm(self, samples, start_us: int | None = None) -> list[TsUnit]:
        """Encode mono float32 samples at 48 kHz and mux them. The first call fixes the time of
        sample 0 (``start_us``); later samples follow on without gaps, so the sound's clock is
        its sample count, anchored once to the video's time line."""
        if self._audio is None:
            raise HardwareError("this muxer has no sound stream")
        import numpy as np

        pcm = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(1, -1))
        if pcm.shape[1] == 0:
            return []
        if self._pcm_start_us is None:
            self._pcm_start_us = int(start_us or 0)
        frame = self._av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._samples += pcm.shape[1]
        units = []
        for packet in self._audio.codec_context.encode(frame):
            units += self._mux_encoded(packet)
        return units

    def _mux_encoded(self, packet) -> list[TsUnit]:
        # encode_pcm anchors the sound before it encodes the first frame.
        at = (self._pcm_start_us or 0) + int(packet.pts * 1_000_000 // AUDIO_RATE)
        return self.mux_audio(bytes(packet), at)

    def _write(self, packet) -> list[TsUnit]:
        try:
            self._container.mux(packet)
        except self._av.FFmpegError as exc:
            raise HardwareError(f"the MPEG-TS muxer refused a packet: {exc}") from exc
        return self._units(self._out.take())

    # --- output --------------------------------------------------------------------------------

    def _micros(self, pts: int) -> int:
        if self._origin is None:
            self._origin = (pts - (self._first_video_us or 0) * 9 // 100) % PTS_WRAP
        return ((pts - self._origin) % PTS_WRAP) * 100 // 9

    def _units(self, data: bytes) -> list[TsUnit]:
        if len(data) % TS_PACKET_SIZE:
            # Never seen with flush_packets; refuse rather than hand the recorder a torn packet.
            raise HardwareError(f"the muxer produced {len(data)} bytes, not whole TS packets")
        if not data:
            return []
        if self._audio is None:
            # One stream: no interleaving, the bytes are exactly the frame just given.
            return [TsUnit(data, self._last_key, self._last_us["video"])]
        starts = pes_starts(data)
        cuts = []  # (packet index where a video unit starts, keyframe, decode time)
        for n, (i, pid) in enumerate(starts):
            if pid != VIDEO_PID:
                continue
            first, back = i, n
            while back > 0 and starts[back - 1][1] in (PAT_PID, SDT_PID, PMT_PID) and starts[back - 1][0] == first - 1:
                first, back = first - 1, back - 1  # the PAT/PMT just before a keyframe belong to it
            packet = data[i * TS_PACKET_SIZE:(i + 1) * TS_PACKET_SIZE]
            cuts.append((first, _random_access(packet), _pes_time(packet)))
        count = len(data) // TS_PACKET_SIZE
        units = []
        if not cuts or cuts[0][0] > 0:
            end = cuts[0][0] if cuts else count
            first_audio = next((i for i, pid in starts if pid == AUDIO_PID and i < end), None)
            at = self._last_unit_us
            if first_audio is not None:
                ts = _pes_time(data[first_audio * TS_PACKET_SIZE:(first_audio + 1) * TS_PACKET_SIZE])
                at = self._micros(ts) if ts is not None else at
            units.append(TsUnit(data[:end * TS_PACKET_SIZE], False, at, audio=True, sound=True))
        for n, (first, key, ts) in enumerate(cuts):
            end = cuts[n + 1][0] if n + 1 < len(cuts) else count
            at = self._micros(ts) if ts is not None else self._last_unit_us
            self._last_unit_us = at
            chunk = data[first * TS_PACKET_SIZE:end * TS_PACKET_SIZE]
            # A PES is written whole, so sound in this chunk starts in it.
            units.append(TsUnit(chunk, key, at, sound=any(pid == AUDIO_PID and first <= i < end for i, pid in starts)))
        return units

    def close(self) -> list[TsUnit]:
        """Finish the streams (the sound encoder's last frames, the interleaver's held packets);
        returns the last units."""
        units = []
        try:
            if self._audio is not None and self._pcm_start_us is not None:
                for packet in self._audio.codec_context.encode(None):
                    units += self._mux_encoded(packet)
            self._container.close()
        except (self._av.FFmpegError, HardwareError) as exc:
            log.warning("closing the muxer: %s", exc)
        data = self._out.take()
        return units + self._units(data[: len(data) - len(data) % TS_PACKET_SIZE])
