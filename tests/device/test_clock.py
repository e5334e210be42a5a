from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from device.clock import FIRMWARE_BUILT, SetClock, check_dock_time
from evidence_store.clip.clock import CLOCK_CLI, CLOCK_DOCK, Clock, SystemClock, system_clock_source
from tests.clock import FakeClock

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_fakeclock_advance_moves_both_clocks():
    clock = FakeClock(START)
    m0 = clock.monotonic()
    clock.advance(2.5)
    assert clock.monotonic() - m0 == 2.5
    assert clock.now() == START + timedelta(seconds=2.5)


def test_fakeclock_negative_advance_raises():
    with pytest.raises(ValueError, match="cannot go back"):
        FakeClock(START).advance(-1)


def test_fakeclock_naive_start_raises():
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2024, 5, 1))


def test_fakeclock_other_zone_is_converted_to_utc():
    berlin = timezone(timedelta(hours=2))
    clock = FakeClock(datetime(2024, 5, 1, 12, 0, tzinfo=berlin))
    assert clock.now() == START and clock.now().tzinfo == UTC


def test_setclock_runs_on_base_monotonic_from_set_time():
    base = FakeClock(START)
    dock_time = datetime(2025, 1, 1, tzinfo=UTC)
    clock = SetClock(base, dock_time, clock_source=CLOCK_DOCK)
    base.advance(10)
    assert clock.now() == dock_time + timedelta(seconds=10)
    assert clock.monotonic() == base.monotonic()
    assert clock.clock_source == CLOCK_DOCK


def test_setclock_default_source_is_cli_and_unknown_source_raises():
    assert SetClock(FakeClock(START), START).clock_source == CLOCK_CLI
    with pytest.raises(ValueError, match="unknown clock source"):
        SetClock(FakeClock(START), START, clock_source="gps")


def test_systemclock_is_aware_and_follows_timesync_flag(tmp_path):
    clock = SystemClock(clock_source="rtc")
    assert isinstance(clock, Clock)
    assert clock.now().tzinfo is not None
    flag = tmp_path / "synchronized"
    assert system_clock_source(flag) == "unsynchronised"
    flag.touch()
    assert system_clock_source(flag) == "ntp"


def test_check_dock_time_before_firmware_build_refused():
    assert "before this firmware was built" in check_dock_time(FIRMWARE_BUILT - timedelta(days=1), None)
    assert "before this firmware was built" in check_dock_time(datetime(1, 1, 1, tzinfo=UTC), None)


def test_check_dock_time_far_future_year_refused():
    assert "not a plausible year" in check_dock_time(datetime(9999, 12, 31, tzinfo=UTC), None)


def test_check_dock_time_behind_last_known_beyond_tolerance_refused():
    known = FIRMWARE_BUILT + timedelta(days=30)
    assert check_dock_time(known - timedelta(minutes=5), known) is None  # drift within the tolerance
    assert "earlier than the camera's last known time" in check_dock_time(known - timedelta(days=15), known)
    assert check_dock_time(known + timedelta(days=3), known) is None


def test_fakeclock_advance_takes_timedelta_fields():
    clock = FakeClock(START)
    assert clock.advance(days=1, hours=2) == START + timedelta(days=1, hours=2)
    assert clock.monotonic() == 1000.0 + 26 * 3600
