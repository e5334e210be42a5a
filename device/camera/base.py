"""The camera interface: H.264 access units muxed to MPEG-TS, handed to a sink.

Thread rule: ``open``, ``start``, ``stop`` and ``close`` are called from one thread (the
recorder's caller, i.e. the controller's thread). The sink is called on the backend's own thread
(the encoder thread), one ``TsUnit`` at a time, never concurrently, from ``start()`` until
``stop()`` returns; after ``stop()`` returns it is never called again. A sink must not block for
long: a stalled sink stalls the encoder, and a real encoder then drops frames.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import Callable

from device.errors import ConfigError

log = logging.getLogger(__name__)

TS_PACKET_SIZE = 188
TS_SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
# A null packet (ISO/IEC 13818-1 §2.4.3.2): PID 0x1FFF, payload only, 184 stuffing bytes.
# Demuxers and players discard it, so the recorder may insert any number of them between two
# packets to complete an age chunk without changing what plays.
NULL_PACKET = bytes([TS_SYNC_BYTE, 0x1F, 0xFF, 0x10]) + b"\xff" * (TS_PACKET_SIZE - 4)


@dataclass(frozen=True)
class TsUnit:
    """One encoded video frame as whole 188-byte MPEG-TS packets.

    A keyframe unit begins with PAT and PMT, so a segment that starts with it plays on its own.
    ``timestamp_us`` is the presentation time in microseconds on the encoder's time line.
    """

    data: bytes
    keyframe: bool
    timestamp_us: int


Sink = Callable[[TsUnit], None]


class Camera(abc.ABC):
    """A source of H.264/MPEG-TS. ``open`` prepares (may be slow), ``start`` begins encoding
    into ``sink`` (must be fast: it runs on the emergency press), ``stop`` ends it."""

    width: int
    height: int
    fps: float

    def open(self) -> None:
        """Prepare the hardware and the encoder without producing frames. Idempotent."""

    @abc.abstractmethod
    def start(self, sink: Sink) -> None:
        """Begin encoding; the first unit is a keyframe. Raises HardwareError."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop encoding; returns once the sink will not be called again."""

    def close(self) -> None:
        """Release the hardware."""


def open_camera(config, clock) -> Camera:
    """The backend that ``config`` (a ``device.config.CameraConfig``) names, not yet opened."""
    if config.backend == "synthetic":
        from device.camera.synthetic import SyntheticCamera

        return SyntheticCamera(clock, width=config.width, height=config.height, fps=config.fps,
                               bitrate=config.bitrate)
    if config.backend == "picamera2":
        from device.camera.picamera2_backend import Picamera2Camera

        return Picamera2Camera(width=config.width, height=config.height, fps=config.fps, bitrate=config.bitrate)
    if config.backend == "v4l2":
        from device.camera.v4l2 import V4l2Camera

        return V4l2Camera(clock, device=config.device, width=config.width, height=config.height,
                          fps=config.fps, bitrate=config.bitrate)
    raise ConfigError(f"unknown camera backend {config.backend!r}", key="camera.backend")
