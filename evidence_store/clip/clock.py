"""The one clock seam of camera, dock and store: ``monotonic()`` for durations, ``now()`` for the
time written into records, and ``clock_source`` saying how far that time can be trusted.

Lives in the clip package because the camera may import only this package (the dependency rule),
and the clock source is a field of the manifest. Nothing of ours calls ``datetime.now`` directly:
tests inject a fake (tests/clock.py), never patch ``datetime``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

# The manifest's clock_source values (docs/FORMAT.md).
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
    """``monotonic()``: seconds from an arbitrary origin, for durations; ``now()``: UTC-aware wall
    time; ``clock_source``: one of CLOCK_SOURCES."""

    # Read-only here: a clock whose source changes (the camera's DockClock) computes it.
    @property
    def clock_source(self) -> str: ...

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


def check_source(source: str) -> str:
    """``source`` if it is one of CLOCK_SOURCES; ValueError otherwise."""
    if source not in CLOCK_SOURCES:
        raise ValueError(f"unknown clock source {source!r}; expected one of {', '.join(CLOCK_SOURCES)}")
    return source


def aware_utc(value: datetime, what: str) -> datetime:
    """``value`` in UTC; ValueError for a naive datetime (whose zone nobody knows)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def system_clock_source(timesync_flag: Path = TIMESYNC_FLAG) -> str:
    """``"ntp"`` if systemd-timesyncd says the system clock is synchronised, else ``"unsynchronised"``."""
    return CLOCK_NTP if timesync_flag.exists() else CLOCK_UNSYNCHRONISED


class SystemClock:
    """The operating system's clocks. ``clock_source`` defaults to what timesyncd reports."""

    def __init__(self, clock_source: str | None = None):
        self.clock_source = check_source(clock_source if clock_source is not None else system_clock_source())

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)
