from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gpiozero.pins.mock import MockFactory

from device.config import ControlsConfig, PinsConfig
from device.controller import Controller
from device.hardware import Hardware
from tests.clock import FakeClock
from tests.device.fakes import FakeRecorder

START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
PINS = PinsConfig(record=17, emergency=27, homes=22, dock=23, led_red=5, led_amber=6, led_green=13, buzzer=19)


@pytest.fixture
def mock_factory():
    """A fresh MockFactory per test; its pins and reservations are cleared afterwards."""
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


class Rig:
    """A camera on the bench: mock pins, a fake clock and a fake recorder around the real controller.

    ``run(seconds)`` moves the fake clock in small steps and ticks after each, as ``run_forever``
    would at 50 Hz; nothing sleeps.
    """

    STEP = 0.01

    def __init__(self, factory, clock, recorder, *, pins=PINS, controls=None, sound_player=None,
                 dock_signal=None):
        self.factory = factory
        self.clock = clock
        self.recorder = recorder
        controls = controls if controls is not None else ControlsConfig()
        self.controls = controls
        self.hardware = Hardware(pins, clock, pin_factory=factory, debounce_seconds=controls.debounce_seconds)
        self.controller = Controller(recorder, self.hardware, clock, controls, sound_player=sound_player,
                                     dock_signal=dock_signal)
        self.controller.tick()

    @property
    def state(self):
        return self.controller.state

    def pin(self, name: str):
        """The mock pin of an input ("record", ...) or an output ("red", "amber", "green", "buzzer")."""
        outputs = {"red": self.hardware.led_red, "amber": self.hardware.led_amber,
                   "green": self.hardware.led_green, "buzzer": self.hardware.buzzer}
        device = outputs.get(name) or self.hardware.buttons[name]
        return device.pin

    def run(self, seconds: float) -> None:
        steps = round(seconds / self.STEP)
        for _ in range(steps):
            self.clock.advance(self.STEP)
            self.controller.tick()

    def down(self, name: str) -> None:
        self.pin(name).drive_low()

    def up(self, name: str) -> None:
        self.pin(name).drive_high()

    def tap(self, name: str, seconds: float = 0.2, settle: float = 0.05) -> None:
        """A short press: down for ``seconds``, then released and given time to debounce."""
        self.down(name)
        self.run(seconds)
        self.up(name)
        self.run(settle)

    def hold(self, name: str, seconds: float) -> None:
        """Press and keep the button down for ``seconds`` (still down afterwards)."""
        self.down(name)
        self.run(seconds)

    def wall(self):
        return self.clock.now()

    def rises(self, name: str) -> int:
        """How many times an output pin went from low to high so far."""
        states = [s.state for s in self.pin(name).states]
        return sum(1 for a, b in zip(states, states[1:]) if not a and b)


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


@pytest.fixture
def rig(mock_factory, clock, recorder) -> Rig:
    rig = Rig(mock_factory, clock, recorder)
    yield rig
    rig.hardware.close()


@pytest.fixture
def make_rig(mock_factory, clock, recorder):
    """Build a Rig with other pins, controls or sound player."""
    made = []

    def make(**kwargs) -> Rig:
        r = Rig(mock_factory, clock, recorder, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.hardware.close()
