"""Buttons, LEDs, buzzer and dock signal, built from gpiozero devices.

Every device is constructed with ``pin_factory=`` (gpiozero's ``MockFactory`` in tests and in
``simulate``; None, meaning gpiozero's default, on a Pi).

Two decisions keep tests deterministic and timing honest:

* **Inputs** are stamped on the injected clock the moment gpiozero reports an edge, queued, and
  debounced in ``poll()`` on that same clock. gpiozero's ``bounce_time`` and ``when_held`` are not
  used: both run on real time. The buttons are ``DigitalInputDevice``, the base class of
  ``gpiozero.Button`` without its ``HoldMixin``, which would start one real-time hold thread per
  button (and block 0.1 s on close) only to do what the controller does on the injected clock.
* **Outputs** (LED blinking, beeps) are computed from the injected clock each time the controller
  calls ``render()``. gpiozero's ``blink()``/``beep()`` are not used: they run background threads
  whose timing tests cannot control.

Thread rule: gpiozero calls the edge callbacks on its own thread (with ``MockFactory``: the thread
that called ``drive_low()``). Those callbacks only append to a queue under ``self._lock``. Everything
else here is called from the controller's thread.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gpiozero import LED, Buzzer, DigitalInputDevice
from gpiozero.exc import GPIOZeroError

from device.config import PinsConfig
from device.errors import HardwareError
from evidence_store.clip.clock import Clock

log = logging.getLogger(__name__)

RECORD = "record"
EMERGENCY = "emergency"
HOMES = "homes"
DOCK = "dock"


@dataclass(frozen=True)
class Edge:
    """A debounced change of one input. ``active`` is True for pressed / docked. ``t`` is the
    injected clock's ``monotonic()`` when gpiozero reported the change."""

    input: str
    active: bool
    t: float


# --- indicator patterns -----------------------------------------------------------------------

@dataclass(frozen=True)
class Blink:
    """On for ``on`` seconds, then off for ``off`` seconds, repeating from the pattern's start."""

    on: float
    off: float

    def level(self, elapsed: float) -> bool:
        return (elapsed % (self.on + self.off)) < self.on


Channel = bool | Blink  # False = off, True = steady on


def _level(channel: Channel, elapsed: float) -> bool:
    return channel.level(elapsed) if isinstance(channel, Blink) else bool(channel)


@dataclass(frozen=True)
class Pattern:
    """What the LEDs (and the buzzer, for continuous sounds) show while a state lasts.

    Red means exactly one thing, recording, and is steady then: the person in front of the
    camera must be able to recognise an open recording. No other pattern uses red.
    """

    red: Channel = False
    amber: Channel = False
    green: Channel = False
    buzzer: Channel = False

    def levels(self, elapsed: float) -> dict[str, bool]:
        return {name: _level(getattr(self, name), elapsed) for name in ("red", "amber", "green", "buzzer")}


PATTERN_OFF = Pattern()
PATTERN_IDLE = Pattern(green=True)
PATTERN_ANNOUNCING = Pattern(amber=Blink(0.25, 0.25), buzzer=Blink(0.1, 0.9))
PATTERN_RECORDING = Pattern(red=True)
PATTERN_DOCKED = Pattern(green=Blink(1.0, 1.0))
PATTERN_STORAGE = Pattern(amber=True)
PATTERN_NOT_ENROLLED = Pattern(amber=Blink(0.5, 0.5))
PATTERN_ERROR = Pattern(amber=Blink(0.1, 0.1))
# Added to the idle or recording pattern while the recorder warns (low storage, a failed
# microphone): a short amber flash every two seconds. The camera works on; the officer should
# dock soon or report the fault.
WARNING_AMBER = Blink(0.2, 1.8)

# One-shot sounds: alternating on/off durations in seconds, starting with on.
BEEP_START = (0.3,)
BEEP_STOP = (0.1, 0.1, 0.1, 0.1, 0.1)
BEEP_REMINDER = (0.1,)
BEEP_BOOKMARK = (0.05,)
BEEP_HOMES = (0.05, 0.05, 0.05)
BEEP_REFUSE = (0.4, 0.1, 0.4, 0.1, 0.4)
BEEP_CANCEL = (0.1, 0.1, 0.1)


class _Debouncer:
    """Debounces one input on the injected clock.

    A change is accepted once the level has stayed for ``window`` seconds; a change that is undone
    within the window is a bounce and dropped in pairs. Accepted edges keep the time of the original
    change, so a press reported late by one tick is still timed from the moment it happened.
    """

    def __init__(self, name: str, level: bool, window: float):
        self.name = name
        self.level = level
        self.window = window
        self.pending: deque[tuple[float, bool]] = deque()

    def settle(self, now: float) -> tuple[list[Edge], float]:
        """Accepted edges, and the time up to which this input's history is final."""
        out: list[Edge] = []
        pending = self.pending
        while pending:
            t, level = pending[0]
            if level == self.level:
                pending.popleft()  # a repeated report of the level we already have
                continue
            if len(pending) >= 2:
                t2, level2 = pending[1]
                if level2 == level:
                    del pending[1]
                    continue
                if t2 - t < self.window:
                    pending.popleft()
                    pending.popleft()
                    continue
            elif now - t < self.window:
                return out, t
            pending.popleft()
            self.level = level
            out.append(Edge(self.name, level, t))
        return out, now


class Hardware:
    """The camera's buttons, dock signal, LEDs and buzzer.

    ``pins`` says which GPIO pins; ``homes`` and ``dock`` may be None (not fitted). ``clock`` stamps
    edges and times patterns. ``pin_factory`` is passed to every gpiozero device (None: gpiozero's
    default). Raises HardwareError if a pin cannot be claimed.
    """

    def __init__(self, pins: PinsConfig, clock: Clock, *, pin_factory=None, debounce_seconds: float = 0.02):
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: list = []
        try:
            self.buttons: dict[str, DigitalInputDevice] = {}
            for name, pin in ((RECORD, pins.record), (EMERGENCY, pins.emergency), (HOMES, pins.homes)):
                if pin is not None:
                    # Buttons switch to ground against the internal pull-up: pressed = low.
                    self.buttons[name] = self._add(DigitalInputDevice(pin, pull_up=True, bounce_time=None,
                                                                      pin_factory=pin_factory))
            if pins.dock is not None:
                # The dock shorts its contact to ground: docked = low.
                self.buttons[DOCK] = self._add(DigitalInputDevice(pins.dock, pull_up=True, bounce_time=None,
                                                                  pin_factory=pin_factory))
            self.led_red = self._add(LED(pins.led_red, pin_factory=pin_factory))
            self.led_amber = self._add(LED(pins.led_amber, pin_factory=pin_factory))
            self.led_green = self._add(LED(pins.led_green, pin_factory=pin_factory))
            self.buzzer = self._add(Buzzer(pins.buzzer, pin_factory=pin_factory))
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise HardwareError(f"cannot set up the GPIO pins: {exc}",
                                "check [pins] in the configuration and that no other program uses them") from exc
        self._debouncers: dict[str, _Debouncer] = {}
        for name, device in self.buttons.items():
            self._debouncers[name] = _Debouncer(name, bool(device.is_active), debounce_seconds)
            device.when_activated = self._callback(name, True)
            device.when_deactivated = self._callback(name, False)
        self._outputs = {"red": self.led_red, "amber": self.led_amber, "green": self.led_green, "buzzer": self.buzzer}
        self._written: dict[str, bool | None] = {name: None for name in self._outputs}
        self._beep: tuple[float, tuple[float, ...]] | None = None

    def _add(self, device):
        self._devices.append(device)
        return device

    def _callback(self, name: str, active: bool):
        def on_edge():
            # gpiozero's thread: stamp and queue, nothing else.
            t = self._clock.monotonic()
            with self._lock:
                self._debouncers[name].pending.append((t, active))
        return on_edge

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs fitted: some of "record", "emergency", "homes", "dock"."""
        return tuple(self.buttons)

    def poll(self, now: float) -> tuple[list[Edge], float]:
        """Debounced edges of all inputs, oldest first, and the horizon: the time up to which every
        input's history is final (``now`` unless a change is still inside its debounce window)."""
        edges: list[Edge] = []
        horizon = now
        with self._lock:
            for debouncer in self._debouncers.values():
                accepted, settled = debouncer.settle(now)
                edges.extend(accepted)
                horizon = min(horizon, settled)
        edges.sort(key=lambda e: e.t)
        return edges, horizon

    def is_active(self, name: str) -> bool:
        """The debounced level of an input (False for an input that is not fitted)."""
        debouncer = self._debouncers.get(name)
        return debouncer.level if debouncer is not None else False

    def beep(self, durations: tuple[float, ...], now: float) -> None:
        """Start a one-shot sound (alternating on/off seconds), replacing one still playing."""
        self._beep = (now, durations)

    def render(self, pattern: Pattern, elapsed: float, now: float) -> None:
        """Drive the outputs: ``pattern`` at ``elapsed`` seconds since it began, plus any beep.
        Pins are written only when their level changes, so a pin's history shows real changes."""
        levels = pattern.levels(elapsed)
        if self._beep is not None:
            start, durations = self._beep
            offset = now - start
            if offset >= sum(durations):
                self._beep = None
            else:
                for i, d in enumerate(durations):
                    if offset < d:
                        levels["buzzer"] = levels["buzzer"] or i % 2 == 0
                        break
                    offset -= d
        for name, level in levels.items():
            if self._written[name] != level:
                self._outputs[name].value = level
                self._written[name] = level

    def off(self) -> None:
        """Every output off, any beep cut short."""
        self._beep = None
        for name, device in self._outputs.items():
            device.value = False
            self._written[name] = False

    def close(self) -> None:
        """Release every pin (outputs off)."""
        for device in reversed(self._devices):
            try:
                device.close()
            except GPIOZeroError:
                log.exception("closing %r", device)
        self._devices.clear()


class AplayPlayer:
    """Plays the announcement sound with ALSA's ``aplay`` without waiting for it to finish."""

    def __init__(self, command: tuple[str, ...] = ("aplay", "-q")):
        self._command = command
        self._process: subprocess.Popen | None = None

    def __call__(self, path: Path) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
        self._process = subprocess.Popen([*self._command, str(path)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
