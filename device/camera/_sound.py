"""Microphones: where a backend's sound comes from, as mono float32 PCM at 48 kHz.

``ClickTrack`` is the synthetic camera's: silence with a short click at every visual marker, so
that tests can find the click in the sound and the marker in the picture and measure the offset.
``AvMicrophone`` reads an ALSA or PulseAudio capture device through PyAV (FFmpeg's ``alsa`` and
``pulse`` inputs) and resamples it. PyAV and numpy are imported on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from device.camera.base import AUDIO_RATE
from device.errors import HardwareError

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

CLICK_S = 0.004
CLICK_HZ = 2000.0


def marker_frame(index: int, fps: float) -> bool:
    """Whether video frame ``index`` carries the visual marker: one frame a second, half a second
    in (never the first frame, and away from the keyframes where segments are cut)."""
    period = max(1, round(fps))
    return index % period == period // 2


class ClickTrack:
    """Silence with a click at the presentation time of every marker frame."""

    def __init__(self, fps: float):
        self.fps = fps
        self._sample = 0

    def samples_until(self, end_us: int):
        """The samples from where the last call ended up to ``end_us`` on the video time line."""
        import numpy as np

        end = end_us * AUDIO_RATE // 1_000_000
        count = max(0, end - self._sample)
        out = np.zeros(count, np.float32)
        first_frame = int(self._sample * self.fps // AUDIO_RATE)
        last_frame = int(end * self.fps // AUDIO_RATE) + 1
        wave = np.sin(2 * np.pi * CLICK_HZ * np.arange(int(CLICK_S * AUDIO_RATE)) / AUDIO_RATE)
        click = wave.astype(np.float32) * 0.8
        for index in range(first_frame, last_frame + 1):
            if not marker_frame(index, self.fps):
                continue
            at = round(index * AUDIO_RATE / self.fps) - self._sample
            lo, hi = max(0, at), min(count, at + len(click))
            if lo < hi:
                out[lo:hi] = click[lo - at:hi - at]
        self._sample = max(self._sample, end)
        return out


class AvMicrophone:
    """A capture device through FFmpeg (``format`` "alsa" or "pulse"). ``read()`` blocks until
    the next block of samples; raises HardwareError when the device fails or disappears."""

    def __init__(self, device: str, format: str):
        self.device, self.format = device, format
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.AudioFrame] | None = None
        self._resampler: av.AudioResampler | None = None

    def open(self) -> None:
        import av

        try:
            self._container = av.open(self.device, "r", format=self.format)
            stream = self._container.streams.audio[0]
            self._frames = self._container.decode(stream)
            self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
        except (av.FFmpegError, IndexError, OSError) as exc:
            self.close()
            raise HardwareError(f"cannot open the microphone {self.format}:{self.device}: {exc}") from exc

    def read(self):
        import av
        import numpy as np

        if self._frames is None or self._resampler is None:
            raise HardwareError(f"the microphone {self.format}:{self.device} is not open")
        try:
            frame = next(self._frames)
            blocks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        except StopIteration:
            raise HardwareError(f"the microphone {self.format}:{self.device} stopped delivering sound") from None
        except (av.FFmpegError, OSError) as exc:
            raise HardwareError(f"the microphone {self.format}:{self.device} failed: {exc}") from exc
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:  # closing a vanished device may fail; nothing to save
                log.warning("closing the microphone: %s", exc)
        self._container = None
