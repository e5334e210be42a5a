"""The one fake clock of the test suite (evidence_store.clip.clock.Clock): moves only when told.

docs/ARCHITECTURE.md: inject the clock, never patch ``datetime``; a fake clock instead of sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evidence_store.clip.clock import CLOCK_UNSYNCHRONISED, aware_utc, check_source


class FakeClock:
    """``start`` (timezone-aware; default: the real time now, for tests whose clip factory dates
    clips from it). ``monotonic()`` starts at ``monotonic_start``, not 0, so that code which treats
    0 as "never" is caught out."""

    def __init__(self, start: datetime | None = None, *, monotonic_start: float = 1000.0,
                 clock_source: str = CLOCK_UNSYNCHRONISED):
        self._wall = aware_utc(start, "FakeClock start") if start is not None else datetime.now(UTC)
        self._mono = float(monotonic_start)
        self.clock_source = check_source(clock_source)

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        """Move both clocks forward by ``seconds`` plus ``timedelta(**kwargs)`` (days=, hours=, ...);
        returns the new wall time. Raises ValueError for a negative step (time never runs back)."""
        step = timedelta(seconds=seconds, **kwargs)
        if step < timedelta(0):
            raise ValueError(f"a clock cannot go back ({step.total_seconds()} s)")
        self._mono += step.total_seconds()
        self._wall += step
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall
