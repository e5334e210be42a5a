"""The camera interface: H.264 (and, where the law allows, AAC sound) muxed to MPEG-TS, handed
to a sink.

Thread rule: ``open``, ``start``, ``stop``, ``close`` and ``set_sound`` are called from one thread
(the recorder's caller, i.e. the controller's thread). The sink is called on the backend's own
thread (the encoder thread), one ``TsUnit`` at a time, never concurrently, from ``start()`` until
``stop()`` returns; after ``stop()`` returns it is never called again. A sink must not block for
long: a stalled sink stalls the encoder, and a real encoder then drops frames.

Error contract: ``error`` is what stopped the picture (the recorder seals the clip and starts a
new one); ``sound_error`` is what stopped the sound while the picture goes on (the clip continues
with picture only, and the recorder says so in the manifest and on the lights). Both are written
on the encoder's or microphone's thread and read on the controller's: a single attribute
assignment, so no lock is needed.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

log = logging.getLogger(__name__)

TS_PACKET_SIZE = 188
TS_SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
# A null packet (ISO/IEC 13818-1 §2.4.3.2): PID 0x1FFF, payload only, 184 stuffing bytes.
# Demuxers and players discard it, so the recorder may insert any number of them between two
# packets to complete an age chunk without changing what plays.
NULL_PACKET = bytes([TS_SYNC_BYTE, 0x1F, 0xFF, 0x10]) + b"\xff" * (TS_PACKET_SIZE - 4)

# The sound every backend records: AAC-LC, mono, 48 kHz, 64 kbit/s. Speech needs far less; this
# keeps shouted words and background clearly intelligible at under 1 % of the video's bit rate.
AUDIO_RATE = 48_000
AUDIO_BITRATE = 64_000


@dataclass(frozen=True)
class TsUnit:
    """Whole 188-byte MPEG-TS packets: one encoded video frame (with any sound packets the muxer
    interleaved around it), or sound packets alone (``audio`` True).

    A keyframe unit begins with PAT and PMT, so a segment that starts with it plays on its own.
    ``timestamp_us`` is the decode time in microseconds on the encoder's time line (of the video
    frame; of the first sound frame for a sound-only unit). ``sound``: the unit carries sound
    packets (always, for a sound-only unit).
    """

    data: bytes
    keyframe: bool
    timestamp_us: int
    audio: bool = False
    sound: bool = False


Sink = Callable[[TsUnit], None]


class Camera(abc.ABC):
    """A source of H.264/MPEG-TS. ``open`` prepares (may be slow), ``start`` begins encoding
    into ``sink`` (must be fast: it runs on the emergency press), ``stop`` ends it."""

    width: int
    height: int
    fps: float
    # What stopped the picture / the sound (see the module docstring); None while all is well.
    # Read-only to the type checker: a backend keeps them as attributes or derives them from its
    # encoder (picamera2); at run time plain class attributes, so that a backend may assign them.
    if TYPE_CHECKING:
        @property
        def error(self) -> BaseException | None: ...

        @property
        def sound_error(self) -> str | None: ...
    else:
        error = None
        sound_error = None
    # Whether the next ``start`` records sound; the recorder sets it from the legal profile.
    sound: bool = False

    def open(self) -> None:  # noqa: B027 (a hook: a backend without slow set-up keeps this one)
        """Prepare the hardware and the encoder without producing frames. Idempotent."""

    def set_sound(self, enabled: bool) -> None:
        """Record sound from the next ``start`` on (True only where the effective profile allows
        it). A backend without a microphone keeps ``sound`` False, so the manifest never claims
        sound it did not capture."""
        self.sound = bool(enabled)

    @abc.abstractmethod
    def start(self, sink: Sink) -> None:
        """Begin encoding; the first unit is a keyframe. Raises HardwareError. A microphone that
        cannot be opened does not raise: it sets ``sound_error`` and the picture starts."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop encoding; returns once the sink will not be called again."""

    def close(self) -> None:  # noqa: B027 (a hook: a backend that holds nothing keeps this one)
        """Release the hardware."""
