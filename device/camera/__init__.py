"""Camera backends: each produces H.264 (and AAC sound where allowed) in MPEG-TS, one unit at a
time, to a sink.

``open_camera(config, clock)`` picks the backend named by the configuration. Heavy libraries
(PyAV, picamera2, OpenCV) are imported inside the backends that need them, so that importing this
package costs nothing and a missing library only matters for the backend that uses it. The
backends import ``device.camera.base``, never this module, so there is no import circle.
"""

from __future__ import annotations

from pathlib import Path

from device.camera.base import AUDIO_BITRATE, AUDIO_RATE, NULL_PACKET, TS_PACKET_SIZE, Camera, Sink, TsUnit
from device.errors import ConfigError

__all__ = ["Camera", "Sink", "TsUnit", "NULL_PACKET", "TS_PACKET_SIZE", "AUDIO_RATE", "AUDIO_BITRATE",
           "open_camera", "BACKENDS"]

BACKENDS = ("synthetic", "picamera2", "v4l2", "replay")


def open_camera(config, clock, *, realtime: bool = True) -> Camera:
    """The backend that ``config`` (a ``device.config.CameraConfig``) names, not yet opened.
    ``replay`` plays ``config.device`` (a file). Raises ConfigError for an unknown backend."""
    if config.backend == "synthetic":
        from device.camera.synthetic import SyntheticCamera

        return SyntheticCamera(clock, width=config.width, height=config.height, fps=config.fps,
                               bitrate=config.bitrate, realtime=realtime)
    if config.backend == "picamera2":
        from device.camera.picamera2_backend import Picamera2Camera

        return Picamera2Camera(width=config.width, height=config.height, fps=config.fps, bitrate=config.bitrate,
                               audio_device=config.audio_device, audio_format=config.audio_format)
    if config.backend == "v4l2":
        from device.camera.v4l2 import V4l2Camera

        return V4l2Camera(clock, device=config.device, width=config.width, height=config.height,
                          fps=config.fps, bitrate=config.bitrate, audio_device=config.audio_device,
                          audio_format=config.audio_format)
    if config.backend == "replay":
        from device.camera.replay import ReplayCamera

        return ReplayCamera.from_file(clock, Path(config.device), realtime=realtime)
    raise ConfigError(f"unknown camera backend {config.backend!r} (one of {', '.join(BACKENDS)})",
                      key="camera.backend")
