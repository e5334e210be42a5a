"""Hardware: gpiozero devices on MockFactory pins, debouncing and patterns on a fake clock."""

from __future__ import annotations

import threading

import pytest

from device.config import PinsConfig
from device.errors import HardwareError
from device.hardware import (
    BEEP_STOP,
    PATTERN_ANNOUNCING,
    PATTERN_RECORDING,
    Blink,
    Edge,
    Hardware,
    Pattern,
)
from tests.device.conftest import PINS


@pytest.fixture
def hardware(mock_factory, clock):
    hardware = Hardware(PINS, clock, pin_factory=mock_factory, debounce_seconds=0.02)
    yield hardware
    hardware.close()


def test_hardware_mock_pins_start_released_with_outputs_off(hardware, mock_factory):
    assert hardware.inputs == ("record", "emergency", "homes", "dock")
    assert mock_factory.pin(17).state  # pulled up: released
    assert not any(hardware.is_active(name) for name in hardware.inputs)
    assert not any(mock_factory.pin(p).state for p in (5, 6, 13, 19))


def test_hardware_optional_inputs_missing_are_not_fitted(mock_factory, clock):
    hardware = Hardware(PinsConfig(homes=None, dock=None), clock, pin_factory=mock_factory)
    try:
        assert hardware.inputs == ("record", "emergency")
        assert not hardware.is_active("dock")
    finally:
        hardware.close()


def test_hardware_pin_in_use_raises_hardware_error(mock_factory, clock, hardware):
    with pytest.raises(HardwareError, match="cannot set up the GPIO pins") as info:
        Hardware(PINS, clock, pin_factory=mock_factory)
    assert isinstance(info.value, OSError)


def test_hardware_edge_is_accepted_after_debounce_with_original_time(hardware, mock_factory, clock):
    pressed_at = clock.monotonic()
    mock_factory.pin(17).drive_low()
    clock.advance(0.01)
    edges, horizon = hardware.poll(clock.monotonic())
    assert edges == [] and horizon == pressed_at  # still inside the debounce window
    clock.advance(0.015)
    edges, horizon = hardware.poll(clock.monotonic())
    assert edges == [Edge("record", True, pressed_at)]
    assert horizon == clock.monotonic()
    assert hardware.is_active("record")


def test_hardware_bounce_within_window_is_dropped(hardware, mock_factory, clock):
    pin = mock_factory.pin(27)
    for _ in range(3):
        pin.drive_low()
        clock.advance(0.005)
        pin.drive_high()
        clock.advance(0.005)
    clock.advance(0.1)
    assert hardware.poll(clock.monotonic()) == ([], clock.monotonic())
    assert not hardware.is_active("emergency")


def test_hardware_press_and_release_between_polls_yield_both_edges(hardware, mock_factory, clock):
    pin = mock_factory.pin(17)
    t0 = clock.monotonic()
    pin.drive_low()
    clock.advance(0.3)
    pin.drive_high()
    clock.advance(0.05)
    edges, _ = hardware.poll(clock.monotonic())
    assert edges == [Edge("record", True, t0), Edge("record", False, t0 + 0.3)]


def test_hardware_edges_from_another_thread_are_queued(hardware, mock_factory, clock):
    # On a Pi gpiozero reports edges on its own thread; the callbacks only queue.
    thread = threading.Thread(target=mock_factory.pin(23).drive_low)
    thread.start()
    thread.join()
    clock.advance(0.05)
    edges, _ = hardware.poll(clock.monotonic())
    assert [(e.input, e.active) for e in edges] == [("dock", True)]


def test_hardware_edges_of_several_inputs_come_oldest_first(hardware, mock_factory, clock):
    mock_factory.pin(27).drive_low()
    clock.advance(0.001)
    mock_factory.pin(17).drive_low()
    clock.advance(0.05)
    edges, _ = hardware.poll(clock.monotonic())
    assert [e.input for e in edges] == ["emergency", "record"]


def test_hardware_blink_level_follows_elapsed_time():
    blink = Blink(0.25, 0.75)
    assert [blink.level(t) for t in (0.0, 0.2, 0.3, 0.9, 1.0, 1.1)] == [True, True, False, False, True, True]


def test_hardware_pattern_levels_combine_steady_and_blinking():
    assert PATTERN_RECORDING.levels(12.3) == {"red": True, "amber": False, "green": False, "buzzer": False}
    assert PATTERN_ANNOUNCING.levels(0.3)["amber"] is False
    assert PATTERN_ANNOUNCING.levels(0.05)["buzzer"] is True


def test_hardware_render_writes_pins_only_on_change(hardware, mock_factory, clock):
    red = mock_factory.pin(5)
    for i in range(20):
        hardware.render(PATTERN_RECORDING, i * 0.5, clock.monotonic())
    assert red.state
    assert [s.state for s in red.states] == [False, True]


def test_hardware_render_blinks_amber_on_the_pattern(hardware, mock_factory, clock):
    amber = mock_factory.pin(6)
    levels = []
    for i in range(8):
        hardware.render(Pattern(amber=Blink(0.25, 0.25)), i * 0.125, clock.monotonic())
        levels.append(amber.state)
    assert levels == [True, True, False, False, True, True, False, False]


def test_hardware_beep_plays_its_sequence_then_stops(hardware, mock_factory, clock):
    buzzer = mock_factory.pin(19)
    start = clock.monotonic()
    hardware.beep(BEEP_STOP, start)  # 0.1 on, 0.1 off, 0.1 on, 0.1 off, 0.1 on
    levels = []
    for i in range(7):
        hardware.render(Pattern(), 0.0, start + i * 0.1 + 0.05)
        levels.append(buzzer.state)
    assert levels == [True, False, True, False, True, False, False]


def test_hardware_off_cuts_beeps_and_leds(hardware, mock_factory, clock):
    hardware.beep((5.0,), clock.monotonic())
    hardware.render(PATTERN_RECORDING, 0.0, clock.monotonic())
    hardware.off()
    hardware.render(Pattern(), 0.0, clock.monotonic())
    assert not mock_factory.pin(19).state and not mock_factory.pin(5).state
