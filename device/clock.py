"""The camera's wall time, and when it may take the dock's.

The Pi has no battery clock. Its wall time is only as good as its last source: the dock writes
its time at every docking, NTP may set it, a real-time-clock hat may hold it, and ``--clock ISO``
sets it on the command line. ``clock_source`` travels into every manifest so the store can tell how
far to trust a clip's timestamps. Durations (announcement, holds, beeps) are always measured on
``monotonic()``, never on wall time, so setting the wall clock never shortens an announcement.

The clock protocol itself and the system clock live in ``evidence_store.clip.clock`` (the one
definition camera, dock and store share).

Trust: the dock's time reaches the camera as a note signed by the store key (``ClockStamp``), but
a signed time can still be wrong (a dock whose own clock failed) or old (a copy of an earlier
stamp). A wrong time is not harmless: 15 days back and the store deletes every new recording as a
late arrival; year 1 and the firmware cannot seal. So ``check_dock_time`` refuses a time before the
firmware was built, after ``LATEST_PLAUSIBLE``, or earlier than the camera's own last known time by
more than ``BACKWARD_TOLERANCE``; the camera then keeps its own clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evidence_store.clip.clock import CLOCK_CLI, CLOCK_DOCK, CLOCK_NTP, Clock, aware_utc, check_source

#: When this firmware was built: no genuine dock's clock is behind the software it runs.
FIRMWARE_BUILT = datetime(2026, 11, 1, tzinfo=UTC)
#: Far beyond any camera's service life; later means a broken clock, not the future.
LATEST_PLAUSIBLE = datetime(2100, 1, 1, tzinfo=UTC)
#: How far a dock's time may lie behind the camera's own last known time: the drift of a Pi's
#: crystal over a two-week deployment (seconds) and of two docks' NTP clocks, with room to spare.
BACKWARD_TOLERANCE = timedelta(minutes=10)


def check_dock_time(moment: datetime, last_known: datetime | None, *,
                    built: datetime = FIRMWARE_BUILT) -> str | None:
    """None if the camera may take ``moment`` as the time now, else why not (one line).

    ``last_known`` is the latest time the camera has trusted before (None: none yet)."""
    if moment < built:
        return f"{moment.isoformat()} is before this firmware was built ({built.date().isoformat()})"
    if moment >= LATEST_PLAUSIBLE:
        return f"{moment.isoformat()} is after {LATEST_PLAUSIBLE.year}: not a plausible year"
    if last_known is not None and moment < last_known - BACKWARD_TOLERANCE:
        return (f"{moment.isoformat()} is earlier than the camera's last known time "
                f"{last_known.isoformat()} by more than {int(BACKWARD_TOLERANCE.total_seconds() // 60)} minutes")
    return None


class SetClock:
    """Wall time set from outside: ``now_at_start`` at the moment of construction, then running on
    ``base_clock.monotonic()``. Used when ``--clock ISO`` sets the camera's clock.

    The system clock is never changed: we only keep an offset, so a wrong ``--clock`` cannot
    disturb other programs and durations stay monotonic.
    """

    def __init__(self, base_clock: Clock, now_at_start: datetime, *, clock_source: str = CLOCK_CLI):
        self._base = base_clock
        self._wall0 = aware_utc(now_at_start, "the clock's start time")
        self._mono0 = base_clock.monotonic()
        self.clock_source = check_source(clock_source)

    def monotonic(self) -> float:
        return self._base.monotonic()

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._base.monotonic() - self._mono0)


class DockClock:
    """A Clock whose wall time the dock can set (the Pi has no battery clock).

    Durations stay on ``base.monotonic()``; only an offset for ``now()`` changes. The dock's time
    is taken unless the base clock is synchronised by NTP, which is better. Whether a dock time is
    plausible is the caller's question (``check_dock_time``).
    """

    def __init__(self, base: Clock):
        self._base = base
        self._offset: timedelta | None = None
        self._source: str | None = None

    @property
    def clock_source(self) -> str:
        return self._source or self._base.clock_source

    def monotonic(self) -> float:
        return self._base.monotonic()

    def now(self) -> datetime:
        return self._base.now() + self._offset if self._offset is not None else self._base.now()

    def set_wall(self, moment: datetime, source: str = CLOCK_DOCK) -> bool:
        """Take ``moment`` as the time now. False (and nothing changes) if NTP knows better."""
        if self._base.clock_source == CLOCK_NTP:
            return False
        self._offset = aware_utc(moment, "the dock's time") - self._base.now()
        self._source = check_source(source)
        return True
