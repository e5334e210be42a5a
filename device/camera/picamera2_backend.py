"""The Raspberry Pi camera through picamera2: its hardware H.264 encoder feeds our Output.

picamera2's encoder calls ``Output.outputframe(frame, keyframe, timestamp, packet, audio)`` on
the encoder's thread for every encoded frame (``timestamp`` in microseconds since the first
frame). Our output muxes the access unit to MPEG-TS and hands it to the recorder's sink on that
same thread; the sink only queues, so the encoder is never held up by the disk.

picamera2 (and libcamera) exist only on a Pi: they are imported in ``open()``, never at module
import, and off a Pi the tests put tests/device/fake_picamera2.py in their place.
"""

from __future__ import annotations

import logging
import threading

from device.camera.base import Camera, Sink
from device.camera._tsmux import TsMuxer
from device.errors import HardwareError

log = logging.getLogger(__name__)


def _output_class(output_base):
    """Our Output subclass, built once picamera2 is imported (its encoder insists on an Output)."""

    class TsSinkOutput(output_base):
        """Mux each encoded frame to MPEG-TS and pass it to the sink. Runs on the encoder's thread."""

        def __init__(self, muxer: TsMuxer, sink: Sink):
            super().__init__()
            self._muxer = muxer
            self._sink = sink
            self._lock = threading.Lock()  # outputframe vs. detach(): the only shared state
            self.frames = 0
            self.error: BaseException | None = None

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            if audio or frame is None:
                return  # no audio: the camera records pictures only
            with self._lock:
                if not self.recording or self._sink is None:
                    return
                try:
                    ts = int(timestamp) if timestamp is not None else self.frames * 40_000
                    self._sink(self._muxer.mux(bytes(frame), bool(keyframe), ts))
                    self.frames += 1
                except Exception as exc:  # an exception here would kill picamera2's thread
                    log.exception("cannot pass an encoded frame on")
                    self.error = exc

        def detach(self) -> None:
            with self._lock:
                self._sink = None

    return TsSinkOutput


class Picamera2Camera(Camera):
    """The camera module with picamera2's H264Encoder (hardware on a Pi 4, software on a Pi 5)."""

    def __init__(self, *, width: int = 1920, height: int = 1080, fps: float = 25.0, bitrate: int = 10_000_000):
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self._picam = None
        self._encoder = None
        self._output = None
        self._muxer: TsMuxer | None = None
        self._modules = None

    def open(self) -> None:
        """Configure the sensor and start it streaming into picamera2's buffers. Frames that no
        encoder takes are recycled at once: nothing is kept, so this is not pre-recording; it
        only spares the emergency press the sensor's start-up time."""
        if self._picam is not None:
            return
        try:
            from picamera2 import Picamera2
            from picamera2.encoders import H264Encoder
            from picamera2.outputs import Output
        except ImportError as exc:
            raise HardwareError("picamera2 is not installed (it comes with Raspberry Pi OS: python3-picamera2)",
                                "use [camera] backend = \"v4l2\" or \"synthetic\" off a Pi") from exc
        self._modules = (H264Encoder, _output_class(Output))
        try:
            picam = Picamera2()
            config = picam.create_video_configuration(main={"size": (self.width, self.height)},
                                                      controls={"FrameRate": self.fps})
            picam.configure(config)
            picam.start()
        except Exception as exc:  # picamera2 raises bare RuntimeErrors
            raise HardwareError(f"cannot start the camera: {exc}") from exc
        self._picam = picam

    def start(self, sink: Sink) -> None:
        self.open()
        if self._encoder is not None:
            raise HardwareError("the camera is already encoding")
        encoder_cls, output_cls = self._modules
        self._muxer = TsMuxer(self.width, self.height, self.fps)
        # repeat=True puts SPS/PPS before every keyframe and iperiod a keyframe every second, so
        # every segment (rotated on a keyframe) decodes on its own.
        encoder = encoder_cls(bitrate=self.bitrate, repeat=True, iperiod=max(1, round(self.fps)))
        self._output = output_cls(self._muxer, sink)
        try:
            self._picam.start_encoder(encoder, self._output)
        except Exception as exc:
            self._output = None
            raise HardwareError(f"cannot start the H.264 encoder: {exc}") from exc
        self._encoder = encoder

    @property
    def error(self) -> BaseException | None:
        return None if self._output is None else self._output.error

    def stop(self) -> None:
        if self._encoder is None:
            return
        try:
            self._picam.stop_encoder(self._encoder)
        except Exception as exc:
            log.error("stopping the encoder: %s", exc)
        finally:
            # stop_encoder joins the encoder's thread; detach anyway, so that a late frame from a
            # misbehaving encoder can never reach a sealed clip.
            self._output.detach()
            self._encoder = None
            self._output = None
            self._muxer.close()
            self._muxer = None

    def close(self) -> None:
        self.stop()
        if self._picam is not None:
            try:
                self._picam.stop()
                self._picam.close()
            except Exception as exc:
                log.warning("closing the camera: %s", exc)
            self._picam = None
