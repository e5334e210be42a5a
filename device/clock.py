"""Clocks: the one seam through which the firmware learns the time.

The Pi has no battery clock. Its wall time is only as good as its last source: the dock writes
its time at every docking, NTP may set it, a real-time-clock hat may hold it, and ``--clock ISO``
sets it on the command line. ``clock_source`` travels into every manifest so the store can tell how
far to trust a clip's timestamps. Durations (announcement, holds, beeps) are always measured on
``monotonic()``, never on wall time, so setting the wall clock never shortens an announcement.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

CLOCK_DOCK = "dock"
CLOCK_NTP = "ntp"
CLOCK_RTC = "rtc"
CLOCK_CLI = "cli"
CLOCK_UNSYNCHRONISED = "unsynchronised"
CLOCK_SOURCES = (CLOCK_DOCK, CLOCK_NTP, CLOCK_RTC, CLOCK_CLI, CLOCK_UNSYNCHRONISED)

# systemd-timesyncd creates this file once it has synchronised the system clock.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


@runtime_checkable
class Clock(Protocol):
    """``monotonic()`` for durations (seconds, arbitrary origin); ``now()`` is UTC-aware wall time."""

    clock_source: str

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


def _check_source(source: str) -> str:
    if source not in CLOCK_SOURCES:
        raise ValueError(f"unknown clock source {source!r}; expected one of {', '.join(CLOCK_SOURCES)}")
    return source


def _aware_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(timezone.utc)


def system_clock_source(timesync_flag: Path = TIMESYNC_FLAG) -> str:
    """``"ntp"`` if systemd-timesyncd says the system clock is synchronised, else ``"unsynchronised"``."""
    return CLOCK_NTP if timesync_flag.exists() else CLOCK_UNSYNCHRONISED


class SystemClock:
    """The operating system's clocks. ``clock_source`` defaults to what timesyncd reports."""

    def __init__(self, clock_source: str | None = None):
        self.clock_source = _check_source(clock_source if clock_source is not None else system_clock_source())

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FakeClock:
    """A clock that moves only when told to, for tests and ``simulate``.

    ``start`` must be timezone-aware. ``monotonic()`` starts at ``monotonic_start`` (not 0, so that
    code which treats 0 as "never" is caught out).
    """

    def __init__(self, start: datetime, *, monotonic_start: float = 1000.0,
                 clock_source: str = CLOCK_UNSYNCHRONISED):
        self._wall = _aware_utc(start, "FakeClock start")
        self._mono = float(monotonic_start)
        self.clock_source = _check_source(clock_source)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward. Raises ValueError for a negative step (time never runs back)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall


class SetClock:
    """Wall time set from outside: ``now_at_start`` at the moment of construction, then running on
    ``base_clock.monotonic()``. Used when the dock's time or ``--clock ISO`` sets the camera's clock.

    The system clock is never changed: we only keep an offset, so a wrong ``--clock`` cannot
    disturb other programs and durations stay monotonic.
    """

    def __init__(self, base_clock: Clock, now_at_start: datetime, *, clock_source: str = CLOCK_CLI):
        self._base = base_clock
        self._wall0 = _aware_utc(now_at_start, "the clock's start time")
        self._mono0 = base_clock.monotonic()
        self.clock_source = _check_source(clock_source)

    def monotonic(self) -> float:
        return self._base.monotonic()

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._base.monotonic() - self._mono0)
