"""The clock seam: ``monotonic()`` for intervals, ``now()`` for the time written onto cameras and
into the store. Tests inject a fake; nothing in the dock calls ``datetime.now`` directly."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    """The dock machine's clocks (NTP-disciplined: the dock is the cameras' time source)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)
