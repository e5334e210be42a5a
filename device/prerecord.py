"""A RAM-only ring buffer of encoded frames for profiles that allow pre-recording.

Like picamera2's CircularOutput2 it is sized in milliseconds and keeps each frame's timestamp,
so its length is a duration, whatever the bitrate. It exists only when the effective legal
profile allows pre-recording (never in NRW, where the recorder does not construct one at all),
lives only in memory, and reaches the disk only when a recording starts.

Thread rule: ``add`` runs on the encoder's thread and ``drain`` on the recorder's, so both take
the buffer's lock.
"""

from __future__ import annotations

import threading
from collections import deque

from device.camera.base import TsUnit


class PrerecordBuffer:
    """Keeps at most ``seconds`` of frames, starting at a keyframe."""

    def __init__(self, seconds: int):
        if seconds <= 0:
            raise ValueError("a pre-recording buffer needs a positive length")
        self.window_us = int(seconds * 1_000_000)
        self._units: deque[TsUnit] = deque()
        self._lock = threading.Lock()

    def add(self, unit: TsUnit) -> None:
        with self._lock:
            self._units.append(unit)
            # Drop the oldest GOP while the buffer spans more than the window: the profile's
            # limit is a legal maximum, so the buffer may be shorter than it, never longer.
            while self._units and unit.timestamp_us - self._units[0].timestamp_us > self.window_us:
                self._units.popleft()
                while self._units and not self._units[0].keyframe:
                    self._units.popleft()

    def drain(self) -> list[TsUnit]:
        """Everything buffered from its first keyframe on, oldest first; the buffer is emptied."""
        with self._lock:
            units = list(self._units)
            self._units.clear()
        first = next((i for i, u in enumerate(units) if u.keyframe), len(units))
        return units[first:]

    def clear(self) -> None:
        with self._lock:
            self._units.clear()

    def __len__(self) -> int:
        return len(self._units)
