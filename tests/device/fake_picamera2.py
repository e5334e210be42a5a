"""A stand-in for picamera2 off a Pi, honouring the parts of its interface our backend uses.

As in picamera2: ``Picamera2().start_encoder(encoder, output)`` sets the encoder's output, starts
it (which calls ``output.start()``), and the encoder then calls
``output.outputframe(frame, keyframe, timestamp, packet, audio)`` on its own thread for every
encoded frame, ``timestamp`` in microseconds since the first frame; ``stop_encoder`` stops and
joins that thread and calls ``output.stop()``. ``H264Encoder(bitrate, repeat, iperiod)`` here
encodes a test pattern with libx264 (the real one drives the Pi's hardware encoder).

Sound as in picamera2: with ``encoder.audio`` True, ``start()`` opens
``av.open(**encoder.audio_input)`` (on a Pi an ALSA or PulseAudio device; in tests a WAV file
with ``format="wav"``), creates the encoded stream with ``add_stream(**encoder.audio_output)``,
tells each output ``output._add_stream(stream, **audio_output)``, and an audio thread calls
``outputframe(None, True, timestamp_us, packet, True)`` with each encoded PyAV packet, paced as
the video is. A failing ``av.open`` makes ``start()`` raise, as picamera2 does.

``install()`` puts the modules into ``sys.modules`` as picamera2, picamera2.encoders and
picamera2.outputs; ``uninstall()`` removes them.
"""

from __future__ import annotations

import sys
import threading
import types
from fractions import Fraction


class Output:
    """picamera2.outputs.Output."""

    def __init__(self, pts=None):
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False

    def start(self):
        self.recording = True

    def stop(self):
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        pass

    def _add_stream(self, encoder_stream, codec_name, **kwargs):
        pass


class Encoder:
    """picamera2.encoders.Encoder: the output setter insists on Output instances."""

    def __init__(self):
        self._output = []
        self._running = False
        self.width = self.height = 0
        self.framerate = 25.0
        self.audio = False
        self.audio_input = {"file": "default", "format": "pulse"}
        self.audio_output = {"codec_name": "aac"}
        self.audio_sync = 0
        self._audio_thread = None

    @property
    def output(self):
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value):
        outs = value if isinstance(value, list) else [value]
        if not all(isinstance(o, Output) for o in outs):
            raise RuntimeError("Must pass Output")
        self._output = outs

    def start(self):
        if self._running:
            raise RuntimeError("Encoder already running")
        if self.audio:
            import av

            self._audio_in = av.open(**self.audio_input)  # raises as in picamera2: no start
            self._audio_null = av.open("/dev/null", "w", format="null")
            self._audio_stream = self._audio_null.add_stream(**self.audio_output)
        self._running = True
        for out in self._output:
            out.start()
            if self.audio:
                out._add_stream(self._audio_stream, **self.audio_output)
        self._start()
        if self.audio:
            self._audio_thread = threading.Thread(target=self._audio_run, name="fake-audio", daemon=True)
            self._audio_thread.start()

    def _audio_run(self):
        # picamera2's audio thread: decode the input, encode, hand packets to the outputs with
        # their timestamp in µs (the stream's pts scaled), paced like the video.
        import time

        t0 = time.monotonic()

        def send(packet):
            # as picamera2: the time base is known once the encoder has opened, at the first packet
            scale = self._audio_stream.codec_context.time_base * 1_000_000
            if packet.pts is not None and packet.pts >= 0:
                self.outputframe(None, True, int(packet.pts * scale), packet, True)

        audio = self._audio_in.streams.audio[0]
        sent = 0
        for frame in self._audio_in.decode(audio):
            if not self._running:
                break
            frame.pts = sent
            frame.time_base = Fraction(1, frame.sample_rate)
            sent += frame.samples
            for packet in self._audio_stream.encode(frame):
                send(packet)
            ahead = sent / frame.sample_rate / 4 - (time.monotonic() - t0)  # as fast as the video
            if ahead > 0:
                time.sleep(ahead)
        for packet in self._audio_stream.encode(None):
            send(packet)

    def stop(self):
        if not self._running:
            raise RuntimeError("Encoder already stopped")
        self._running = False
        self._stop()
        if self.audio:
            self._audio_thread.join()
            self._audio_in.close()
            self._audio_null.close()
        for out in self._output:
            out.stop()

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        for out in self._output:
            out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _start(self):
        pass

    def _stop(self):
        pass


class H264Encoder(Encoder):
    frames_limit = None  # tests may bound the number of frames

    def __init__(self, bitrate=None, repeat=True, iperiod=30, framerate=None, enable_sps_framerate=False,
                 qp=None, profile=None):
        super().__init__()
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
        self._thread = None
        self._halt = threading.Event()
        self.frames_sent = 0

    def _start(self):
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="fake-encoder", daemon=True)
        self._thread.start()

    def _run(self):
        import av
        import numpy as np

        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base = Fraction(1, 1_000_000)
        codec.gop_size = self.iperiod
        codec.options = {"preset": "ultrafast", "tune": "zerolatency"}
        codec.open()
        interval = 1 / self.framerate
        i = 0
        while not self._halt.is_set() and (self.frames_limit is None or i < self.frames_limit):
            image = np.full((self.height, self.width, 3), (i * 9) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = round(i * 1_000_000 * interval)
            for packet in codec.encode(frame):
                # As picamera2's encoders: a buffer, the keyframe flag, µs since the first frame.
                self.outputframe(memoryview(bytes(packet)), bool(packet.is_keyframe), int(packet.pts))
                self.frames_sent += 1
            i += 1
            self._halt.wait(interval / 4)  # faster than real time: tests stay short

    def _stop(self):
        self._halt.set()
        self._thread.join()


class Picamera2:
    instances: list[Picamera2] = []

    def __init__(self, camera_num=0):
        self.started = False
        self.config = None
        self.encoders = []
        self.calls: list[str] = []
        Picamera2.instances.append(self)

    def create_video_configuration(self, main=None, controls=None, **kwargs):
        return {"main": dict(main or {}), "controls": dict(controls or {})}

    def configure(self, config):
        self.calls.append("configure")
        self.config = config

    def start(self):
        self.calls.append("start")
        self.started = True

    def stop(self):
        self.calls.append("stop")
        self.started = False

    def close(self):
        self.calls.append("close")

    def start_encoder(self, encoder, output=None, pts=None, quality=None, name="main"):
        if not self.started:
            raise RuntimeError("Camera must be started before the encoder")
        self.calls.append("start_encoder")
        encoder.width, encoder.height = self.config["main"]["size"]
        encoder.framerate = self.config["controls"].get("FrameRate", 25.0)
        if output is not None:
            encoder.output = output
        encoder.start()
        self.encoders.append(encoder)

    def stop_encoder(self, encoders=None):
        self.calls.append("stop_encoder")
        for encoder in list(self.encoders if encoders is None else [encoders]):
            encoder.stop()
            self.encoders.remove(encoder)


NAMES = ("picamera2", "picamera2.encoders", "picamera2.outputs")


def install() -> None:
    root = types.ModuleType("picamera2")
    encoders = types.ModuleType("picamera2.encoders")
    outputs = types.ModuleType("picamera2.outputs")
    root.Picamera2 = Picamera2
    encoders.Encoder, encoders.H264Encoder = Encoder, H264Encoder
    outputs.Output = Output
    root.encoders, root.outputs = encoders, outputs
    sys.modules.update({"picamera2": root, "picamera2.encoders": encoders, "picamera2.outputs": outputs})


def uninstall() -> None:
    for name in NAMES:
        sys.modules.pop(name, None)
    Picamera2.instances.clear()
