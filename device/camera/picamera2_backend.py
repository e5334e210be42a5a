"""The Raspberry Pi camera through picamera2: its hardware H.264 encoder feeds our Output.

picamera2's encoder calls ``Output.outputframe(frame, keyframe, timestamp, packet, audio)`` on
the encoder's thread for every encoded frame (``timestamp`` in microseconds since the first
frame). Our output muxes the access unit to MPEG-TS and hands it to the recorder's sink on that
same thread; the sink only queues, so the encoder is never held up by the disk.

Sound, as picamera2 does it: with ``encoder.audio`` True the encoder opens
``av.open(**audio_input)`` (``{"file": device, "format": "alsa"|"pulse"}``), encodes AAC with
``add_stream(**audio_output)`` on its own audio thread and calls ``outputframe(None, True,
timestamp, packet, audio=True)`` with each PyAV packet, ``timestamp`` in µs on the video's time
line. Our output muxes those into the same MPEG-TS. picamera2's ``audio_sync`` (by default it
delays the sound by 100 ms, measured on Pis to match the camera pipeline's latency) is left as
picamera2 tunes it. A microphone that cannot be opened makes
picamera2's ``start_encoder`` fail: we then start again without sound (the picture must not wait
for a microphone); one that goes quiet while the video runs is noticed by the output.

picamera2 (and libcamera) exist only on a Pi: they are imported in ``open()``, never at module
import, and off a Pi the tests put tests/device/fake_picamera2.py in their place.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from device.camera._tsmux import TsMuxer
from device.camera.base import AUDIO_BITRATE, AUDIO_RATE, Camera, Sink
from device.errors import HardwareError

log = logging.getLogger(__name__)

SOUND_SILENCE_US = 1_000_000  # video this far ahead of the last sound packet: the microphone has stopped


def _output_class(output_base: Any) -> Any:  # picamera2 is untyped
    """Our Output subclass, built once picamera2 is imported (its encoder insists on an Output)."""

    class TsSinkOutput(output_base):
        """Mux each encoded frame to MPEG-TS and pass it to the sink. Runs on the encoder's thread."""

        def __init__(self, muxer: TsMuxer, sink: Sink):
            super().__init__()
            self._muxer = muxer
            self._sink: Sink | None = sink
            # outputframe from the video and the audio thread vs. detach(): one lock for the muxer
            self._lock = threading.Lock()
            self.frames = 0
            self.sound_packets = 0
            self._last_sound_us: int | None = None
            self._last_video_us = 0
            self.error: BaseException | None = None
            self.sound_error: str | None = None

        def _add_stream(self, encoder_stream, codec_name, **kwargs):
            """picamera2 announces its audio stream; ours was set up with the same parameters."""
            if codec_name != "aac":
                self.sound_error = f"the encoder offers {codec_name} sound, not AAC"

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            with self._lock:
                if not self.recording or self._sink is None:
                    return
                try:
                    if audio:
                        if packet is None or not self._muxer.sound or self.sound_error:
                            return
                        ts = int(timestamp) if timestamp is not None else self._last_video_us
                        units = self._muxer.mux_audio(bytes(packet), ts)
                        self.sound_packets += 1
                        self._last_sound_us = ts
                    else:
                        if frame is None:
                            return
                        ts = int(timestamp) if timestamp is not None else self.frames * 40_000
                        units = self._muxer.mux(bytes(frame), bool(keyframe), ts)
                        self.frames += 1
                        self._last_video_us = ts
                        self._check_sound(ts)
                    for unit in units:
                        self._sink(unit)
                except Exception as exc:  # an exception here would kill picamera2's thread
                    log.exception("cannot pass an encoded frame on")
                    if audio:
                        self.sound_error = f"sound: {exc}"
                    else:
                        self.error = exc

        def _check_sound(self, video_us: int) -> None:
            if not self._muxer.sound or self.sound_error is not None:
                return
            heard = self._last_sound_us if self._last_sound_us is not None else 0
            if video_us - heard > SOUND_SILENCE_US:
                log.error("the microphone has stopped delivering sound: recording picture only")
                self.sound_error = "the microphone stopped delivering sound"

        def detach(self):
            """Stop passing frames on; returns the sink it had (for the muxer's last units)."""
            with self._lock:
                sink, self._sink = self._sink, None
            return sink

    return TsSinkOutput


class Picamera2Camera(Camera):
    """The camera module with picamera2's H264Encoder (hardware on a Pi 4, software on a Pi 5)."""

    def __init__(self, *, width: int = 1920, height: int = 1080, fps: float = 25.0, bitrate: int = 10_000_000,
                 audio_device: str = "default", audio_format: str = "alsa"):
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self.audio_device, self.audio_format = audio_device, audio_format
        self._start_sound_error: str | None = None
        # picamera2's objects (untyped) and our Output subclass, built on open()
        self._picam: Any = None
        self._encoder: Any = None
        self._output: Any = None
        self._muxer: TsMuxer | None = None
        self._modules: tuple[Any, Any] | None = None

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
        self._start_sound_error = None
        try:
            self._start_encoder(sink, self.sound)
        except HardwareError as exc:
            if not self.sound:
                raise
            # Most likely the microphone: the picture must not wait for it.
            log.error("cannot start with sound (%s): recording picture only", exc)
            self._start_sound_error = f"no sound: {exc}"
            self._start_encoder(sink, False)

    def _start_encoder(self, sink: Sink, sound: bool) -> None:
        if self._modules is None:
            raise HardwareError("the camera is not open")
        encoder_cls, output_cls = self._modules
        self._muxer = TsMuxer(self.width, self.height, self.fps, sound=sound)
        # repeat=True puts SPS/PPS before every keyframe and iperiod a keyframe every second, so
        # every segment (rotated on a keyframe) decodes on its own.
        encoder = encoder_cls(bitrate=self.bitrate, repeat=True, iperiod=max(1, round(self.fps)))
        if sound:
            encoder.audio = True
            encoder.audio_input = {"file": self.audio_device, "format": self.audio_format}
            encoder.audio_output = {"codec_name": "aac", "rate": AUDIO_RATE, "layout": "mono",
                                    "bit_rate": AUDIO_BITRATE}
        self._output = output_cls(self._muxer, sink)
        try:
            self._picam.start_encoder(encoder, self._output)
        except Exception as exc:
            self._output = None
            self._muxer = None
            raise HardwareError(f"cannot start the H.264 encoder: {exc}") from exc
        self._encoder = encoder

    @property
    def error(self) -> BaseException | None:
        return None if self._output is None else self._output.error

    @property
    def sound_error(self) -> str | None:
        if self._start_sound_error is not None:
            return self._start_sound_error
        return None if self._output is None else self._output.sound_error

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
            sink = self._output.detach()
            self._encoder = None
            self._output = None
            try:
                for unit in self._muxer.close() if self._muxer is not None else []:  # what the interleaver held
                    if sink is not None:
                        sink(unit)
            finally:
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
