"""The camera's state machine: buttons and dock signal in, recorder calls and indicators out.

States: IDLE, ANNOUNCING, RECORDING, DOCKED. There are exactly two ways into RECORDING, as
§ 15c PolG NRW requires (open recording, announced first, except in imminent danger):

* **announce**: short press of the record button in IDLE -> ANNOUNCING (amber blinking, buzzer,
  optional announcement sound); after ``announcement_seconds`` -> RECORDING, trigger
  ``announced``. A short press during ANNOUNCING cancels it.
* **emergency**: the emergency button pressed, or the record button held for ``hold_seconds``,
  in IDLE or ANNOUNCING -> RECORDING at once, trigger ``emergency``.

Both end in ``_begin_recording``, the only place that calls ``Recorder.start``
(tests/device/test_controller.py checks this by reading the source). The one other caller of
``_begin_recording`` is ``resume_interrupted``, which continues a recording a crash (or a
recorder error, see below) cut off with its original trigger; it opens no third way in.

Gestures are classified from debounced, clock-stamped button edges: a short press acts on
release; a hold acts the moment the hold time is reached (found by ``tick()``), not on release.
A gesture belongs to the state it began in: if the state changes while the button is down (the
hold started a recording, the announcement ran out, the camera was docked), the rest of the
gesture is swallowed. So the hold that started a recording never stops it; stopping needs a new
press held for the hold time.

While RECORDING: red LED steady, a reminder beep every ``reminder_interval_seconds``, a short
press of record adds a bookmark, a hold stops and seals. The third button, or record and
emergency pressed together, sets the homes flag. A dock signal (the GPIO pin, or USB power read
through ``dock_signal``) seals and goes DOCKED from any state; undocking returns to IDLE. If the
recorder cannot take the partition back, the camera stays DOCKED (it could not record anyway),
shows the error pattern and tries again every ``UNDOCK_RETRY_SECONDS``.

If the recorder fails while recording (camera or write error, found by ``poll()``), the clip
is sealed by the recorder and the controller at once continues the recording in a new clip that
links to it (``resume_interrupted``): the officer ordered a recording and nobody ended it. After
``MAX_ERROR_RESTARTS`` failures in a row, each within ``ERROR_RESTART_RESET_SECONDS`` of its
start, it gives up and shows the error pattern.

Thread rule: ``tick()``, ``run_forever()``, ``resume_interrupted()`` and ``shutdown()`` run on one
thread, the controller's; all state and every recorder call lives there. gpiozero's callbacks run
on gpiozero's thread and only queue stamped edges inside ``Hardware`` (under its lock).
Nothing else crosses threads, so the state machine itself needs no locking.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from device import hardware as hw
from device.config import ControlsConfig
from device.errors import DeviceError
from device.recorder_api import (
    REFUSE_NOT_ENROLLED,
    REFUSE_STORAGE,
    STOP_DOCKED,
    STOP_OFFICER,
    STOP_SHUTDOWN,
    STOP_STORAGE,
    TRIGGER_ANNOUNCED,
    TRIGGER_EMERGENCY,
    Recorder,
    Trigger,
)
from evidence_store.clip.clock import Clock
from evidence_store.clip.sdnotify import SdNotifier

log = logging.getLogger(__name__)

TICK_SECONDS = 0.02  # 50 Hz: a hold or the end of an announcement is acted on within 20 ms
REFUSE_ERROR = "error"
UNDOCK_RETRY_SECONDS = 5.0  # fsck and mount take seconds; retrying at 50 Hz would only hammer them
MAX_ERROR_RESTARTS = 3
ERROR_RESTART_RESET_SECONDS = 30.0  # a clip that ran this long before failing was not a failing loop

_REFUSAL_PATTERNS = {
    REFUSE_STORAGE: hw.PATTERN_STORAGE,
    STOP_STORAGE: hw.PATTERN_STORAGE,
    REFUSE_NOT_ENROLLED: hw.PATTERN_NOT_ENROLLED,
}


class DockSignal(Protocol):
    def docked(self, now: float) -> bool:
        """Whether this signal says the camera is docked; ``now`` is the clock's monotonic time."""


class State(enum.Enum):
    IDLE = "idle"
    ANNOUNCING = "announcing"
    RECORDING = "recording"
    DOCKED = "docked"


_STATE_PATTERNS = {
    State.IDLE: hw.PATTERN_IDLE,
    State.ANNOUNCING: hw.PATTERN_ANNOUNCING,
    State.RECORDING: hw.PATTERN_RECORDING,
    State.DOCKED: hw.PATTERN_DOCKED,
}


@dataclass
class _Gesture:
    """One press of one button, from its press edge to its release edge."""

    input: str
    pressed_at: float  # monotonic
    state: State  # the state it began in
    consumed: bool = False  # acted on (or void): its release and hold do nothing more


class Controller:
    """The state machine.

    ``recorder`` is the Recorder (recorder_api); ``hardware`` the Hardware (buttons, dock, LEDs,
    buzzer); ``clock`` the same clock the hardware stamps edges with; ``controls`` the [controls]
    configuration. ``sound_player`` is called with ``controls.announcement_sound`` when an
    announcement begins (e.g. ``hardware.AplayPlayer()``); without one, no sound is played.
    ``dock_signal`` is a second dock signal besides the GPIO pin (e.g. ``docking.PowerDockSignal``
    for USB power), asked at every tick on the controller's thread.
    """

    def __init__(self, recorder: Recorder, hardware: hw.Hardware, clock: Clock, controls: ControlsConfig,
                 *, sound_player: Callable[[Path], None] | None = None, dock_signal: DockSignal | None = None):
        self._recorder = recorder
        self._hw = hardware
        self._clock = clock
        self._controls = controls
        self._sound_player = sound_player
        self._dock_signal = dock_signal
        self._undock_retry_at: float | None = None  # set while taking the partition back fails
        self._error_restarts = 0
        self._warnings: tuple[str, ...] = ()
        self._recording_since: float | None = None
        now = clock.monotonic()
        self._ref = (now, clock.now())
        self._state = State.IDLE
        self._state_since = now
        self._announce_t: float | None = None
        self._announced_at: datetime | None = None
        self._trigger: Trigger | None = None
        self._homes = False
        self._next_reminder: float | None = None
        self._gestures: dict[str, _Gesture] = {}
        self._overlay: tuple[hw.Pattern, float, float] | None = None  # pattern, since, until
        self.last_refusal: str | None = None

    # --- what others may read ----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def trigger(self) -> Trigger | None:
        """The trigger of the running (or last) recording."""
        return self._trigger

    @property
    def homes(self) -> bool:
        """Whether the running (or last) recording has the homes flag."""
        return self._homes

    # --- the loop ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Take in the inputs that arrived since the last tick, fire due timers (announcement end,
        holds, reminders) in time order, poll the recorder, and drive the indicators.

        Recorder DeviceErrors are logged and shown; any other exception propagates (the process
        dies, systemd restarts it, and the interrupted clip is recovered).
        """
        now = self._clock.monotonic()
        self._ref = (now, self._clock.now())
        edges, horizon = self._hw.poll(now)
        # The camera counts as docked if the pin or the second signal (USB power) says so.
        external = self._dock_signal is not None and self._dock_signal.docked(now)
        for edge in edges:
            # Timers that fell due before this edge happened come first.
            self._run_timers(edge.t)
            if edge.input == hw.DOCK:
                self._sync_dock(edge.t, edge.active or external)
            else:
                self._on_edge(edge)
        self._run_timers(horizon)
        self._sync_dock(horizon, self._hw.is_active(hw.DOCK) or external)
        if self._state is State.RECORDING:
            try:
                reason = self._recorder.poll()
            except DeviceError as exc:
                self._recording_failed(exc, now)
            else:
                if reason is not None:
                    log.warning("the recorder stopped by itself: %s", reason)
                    self._enter(State.IDLE, now)
                    self._show_refusal(reason, now)
        self._render(now)

    def run_forever(self, stop_event: threading.Event, *, interval: float = TICK_SECONDS,
                    notifier: SdNotifier | None = None) -> None:
        """Tick every ``interval`` seconds until ``stop_event`` is set, then shut down (a running
        recording is sealed with reason "shutdown"). Tells systemd READY after the first tick,
        WATCHDOG=1 at half of ``$WATCHDOG_USEC`` (only while ticks keep coming), STATUS on every
        state change and STOPPING at the end. ``notifier`` defaults to one from ``$NOTIFY_SOCKET``."""
        notifier = notifier if notifier is not None else SdNotifier()
        watchdog_every = notifier.watchdog_interval()
        try:
            self.tick()
            notifier.ready()
            notifier.status(self._state.value)
            last_state = self._state
            last_ping = self._clock.monotonic()
            if watchdog_every is not None:
                notifier.watchdog()
            while not stop_event.wait(interval):
                self.tick()
                if self._state is not last_state:
                    last_state = self._state
                    notifier.status(self._state.value)
                if watchdog_every is not None and self._clock.monotonic() - last_ping >= watchdog_every:
                    notifier.watchdog()
                    last_ping = self._clock.monotonic()
        finally:
            notifier.stopping()
            try:
                self.shutdown()
            except Exception:
                log.exception("shutting down the controller")

    def shutdown(self) -> None:
        """Seal a running recording (reason "shutdown"), drop an announcement, indicators off."""
        now = self._clock.monotonic()
        self._ref = (now, self._clock.now())
        if self._state is State.RECORDING:
            self._stop(STOP_SHUTDOWN, now)
        elif self._state is State.ANNOUNCING:
            self._enter(State.IDLE, now)
        self._hw.off()

    def resume_interrupted(self, trigger: Trigger) -> bool:
        """After a crash while recording: continue recording at once in a new clip, keeping the
        interrupted clip's ``trigger`` (its kind, announcement and start times) and stamping
        ``resumed_at``. Only in IDLE, before the officer has done anything. Returns whether the
        recorder started; raises DeviceError in any other state."""
        if self._state is not State.IDLE:
            raise DeviceError(f"cannot resume a recording while {self._state.value}")
        now = self._clock.monotonic()
        self._ref = (now, self._clock.now())
        log.warning("resuming the recording interrupted by a crash (%s trigger)", trigger.kind)
        return self._begin_recording(replace(trigger, resumed_at=self._wall(now)), now)

    # --- time --------------------------------------------------------------------------------

    def _wall(self, t: float) -> datetime:
        """Wall time of monotonic instant ``t``, using the reference taken at this tick."""
        ref_mono, ref_wall = self._ref
        return ref_wall - timedelta(seconds=ref_mono - t)

    def _run_timers(self, until: float) -> None:
        """Fire every timer due at or before ``until``, earliest first (one may arm another)."""
        while True:
            due: list[tuple[float, Callable[[float], None]]] = []
            if self._state is State.ANNOUNCING and self._announce_t is not None:
                due.append((self._announce_t + self._controls.announcement_seconds, self._announcement_elapsed))
            gesture = self._gestures.get(hw.RECORD)
            if gesture is not None and not gesture.consumed:
                due.append((gesture.pressed_at + self._controls.hold_seconds,
                            functools.partial(self._on_hold, gesture)))
            if self._state is State.RECORDING and self._next_reminder is not None:
                due.append((self._next_reminder, self._reminder))
            if not due:
                return
            at, fire = min(due, key=lambda d: d[0])
            if at > until:
                return
            fire(at)

    # --- gestures ----------------------------------------------------------------------------

    def _on_edge(self, edge: hw.Edge) -> None:
        if edge.active:
            gesture = _Gesture(edge.input, edge.t, self._state)
            self._gestures[edge.input] = gesture
            self._on_press(gesture)
        else:
            pressed = self._gestures.pop(edge.input, None)
            if pressed is not None and not pressed.consumed:
                self._on_release(pressed, edge.t)

    def _on_press(self, g: _Gesture) -> None:
        if self._state is State.DOCKED:
            g.consumed = True
            return
        other = {hw.RECORD: hw.EMERGENCY, hw.EMERGENCY: hw.RECORD}.get(g.input)
        if self._state is State.RECORDING and other in self._gestures:
            # Record and emergency down together while recording: the homes flag.
            g.consumed = self._gestures[other].consumed = True
            self._set_homes(g.pressed_at)
            return
        if g.input == hw.EMERGENCY:
            g.consumed = True  # acts on the press: no waiting in imminent danger
            if self._state in (State.IDLE, State.ANNOUNCING):
                self._emergency(g.pressed_at)
            else:
                log.info("emergency button while recording: already recording")
            return
        if g.input == hw.HOMES:
            g.consumed = True
            if self._state is State.RECORDING:
                self._set_homes(g.pressed_at)
            else:
                log.info("homes button while %s: ignored (only a recording can be flagged)", self._state.value)
            return
        # The record button: decided on release (short press) or by the hold timer.

    def _on_release(self, g: _Gesture, t: float) -> None:
        """A short press of the record button (it was not held for the hold time)."""
        if g.state is not self._state:
            return  # the state changed while the button was down: the gesture is void
        if self._state is State.IDLE:
            self._announce(t)
        elif self._state is State.ANNOUNCING:
            self._cancel_announcement(t)
        elif self._state is State.RECORDING:
            # Acted on at release, timed at the press: the moment the officer reacted.
            self._bookmark(g.pressed_at)

    def _on_hold(self, g: _Gesture, at: float) -> None:
        """The record button has been down for the hold time."""
        g.consumed = True  # its release is swallowed, whatever happens now
        if g.state is not self._state:
            return
        if self._state in (State.IDLE, State.ANNOUNCING):
            self._emergency(at)
        elif self._state is State.RECORDING:
            self._stop(STOP_OFFICER, at)

    # --- transitions -------------------------------------------------------------------------

    def _enter(self, state: State, t: float) -> None:
        if state is not self._state:
            log.info("%s -> %s", self._state.value, state.value)
        self._state = state
        self._state_since = t
        if state is not State.IDLE:
            self._overlay = None
        if state is not State.ANNOUNCING:
            self._announce_t = None
        if state is not State.RECORDING:
            self._next_reminder = None

    def _announce(self, t: float) -> None:
        reason = self._recorder.can_start()
        if reason is not None:
            self._refuse(reason, t)
            return
        self._enter(State.ANNOUNCING, t)
        self._announce_t = t
        self._announced_at = self._wall(t)
        sound = self._controls.announcement_sound
        if sound is not None and self._sound_player is not None:
            try:
                self._sound_player(sound)
            except OSError as exc:
                log.error("cannot play the announcement sound %s: %s", sound, exc)

    def _cancel_announcement(self, t: float) -> None:
        log.info("announcement cancelled by the officer")
        self._enter(State.IDLE, t)
        self._hw.beep(hw.BEEP_CANCEL, t)

    def _announcement_elapsed(self, at: float) -> None:
        """Way in no. 1: the announcement ran its full time."""
        trigger = Trigger(TRIGGER_ANNOUNCED, announced_at=self._announced_at, started_at=self._wall(at))
        self._begin_recording(trigger, at)

    def _emergency(self, at: float) -> None:
        """Way in no. 2: imminent danger, no announcement (or an interrupted one)."""
        announced_at = self._announced_at if self._state is State.ANNOUNCING else None
        trigger = Trigger(TRIGGER_EMERGENCY, announced_at=announced_at, started_at=self._wall(at))
        self._begin_recording(trigger, at)

    def _begin_recording(self, trigger: Trigger, at: float) -> bool:
        """The only call of Recorder.start in the firmware."""
        reason = self._recorder.can_start()
        if reason is not None:
            self._refuse(reason, at)
            return False
        try:
            self._recorder.start(trigger)
        except DeviceError as exc:
            log.error("the recorder could not start: %s", exc)
            self._refuse(REFUSE_ERROR, at)
            return False
        log.info("recording (%s)", trigger.kind)
        if trigger.resumed_at is None:
            self._error_restarts = 0  # a new recording the officer ordered
        self._recording_since = at
        self._enter(State.RECORDING, at)
        self._trigger = trigger
        self._homes = False
        self._next_reminder = at + self._controls.reminder_interval_seconds
        self._hw.beep(hw.BEEP_START, at)
        return True

    def _stop(self, reason: str, at: float) -> None:
        try:
            self._recorder.stop(reason)
        except DeviceError as exc:
            log.error("the recorder could not stop cleanly (%s): %s", reason, exc)
            self._enter(State.IDLE, at)
            self._show_refusal(REFUSE_ERROR, at)
            return
        log.info("recording stopped: %s", reason)
        self._enter(State.IDLE, at)
        self._hw.beep(hw.BEEP_STOP, at)

    def _recording_failed(self, exc: DeviceError, at: float) -> None:
        """``poll`` raised: the recorder has sealed what it had (or left it to recovery). Continue
        the recording in a new linked clip, unless that has already failed too often."""
        log.error("the recording failed: %s", exc)
        self._enter(State.IDLE, at)
        self._show_refusal(REFUSE_ERROR, at)
        if self._recording_since is not None and at - self._recording_since >= ERROR_RESTART_RESET_SECONDS:
            self._error_restarts = 0
        if self._trigger is None or self._error_restarts >= MAX_ERROR_RESTARTS:
            log.error("not restarting the recording: it failed %d times in a row", self._error_restarts)
            return
        self._error_restarts += 1
        homes = self._homes
        if self.resume_interrupted(self._trigger) and homes:
            # The place has not changed: the continuation is made in the same home.
            self._set_homes(at)

    def _bookmark(self, t: float) -> None:
        try:
            self._recorder.bookmark(self._wall(t))
        except DeviceError as exc:
            log.error("cannot add a bookmark: %s", exc)
            return
        self._hw.beep(hw.BEEP_BOOKMARK, t)

    def _set_homes(self, t: float) -> None:
        if self._homes:
            return
        try:
            self._recorder.set_homes(self._wall(t))
        except DeviceError as exc:
            log.error("cannot set the homes flag: %s", exc)
            return
        log.info("homes flag set: to be followed up by the officer in charge")
        self._homes = True
        self._hw.beep(hw.BEEP_HOMES, t)

    def _reminder(self, at: float) -> None:
        self._hw.beep(hw.BEEP_REMINDER, at)
        self._next_reminder = at + self._controls.reminder_interval_seconds

    def _refuse(self, reason: str, t: float) -> None:
        log.warning("recording refused: %s", reason)
        self._enter(State.IDLE, t)
        self._show_refusal(reason, t)

    def _show_refusal(self, reason: str, t: float) -> None:
        self.last_refusal = reason
        pattern = _REFUSAL_PATTERNS.get(reason, hw.PATTERN_ERROR)
        self._overlay = (pattern, t, t + self._controls.refusal_display_seconds)
        self._hw.beep(hw.BEEP_REFUSE, t)

    def _sync_dock(self, t: float, docked: bool) -> None:
        if docked and self._state is not State.DOCKED:
            if self._state is State.RECORDING:
                self._stop(STOP_DOCKED, t)
            for gesture in self._gestures.values():
                gesture.consumed = True
            try:
                self._recorder.dock()
            except DeviceError as exc:
                log.error("docking failed: %s", exc)
            self._enter(State.DOCKED, t)
        elif docked and self._state is State.DOCKED:
            self._undock_retry_at = None if self._undock_retry_at is None else t  # next undock: at once
        elif not docked and self._state is State.DOCKED:
            if self._undock_retry_at is not None and t < self._undock_retry_at:
                return
            try:
                self._recorder.undock()
            except DeviceError as exc:
                # The recorder still counts as docked and refuses to record: showing IDLE (green)
                # would promise a camera that cannot record. Stay DOCKED, show the error, retry.
                log.error("undocking failed (retrying in %.0f s): %s", UNDOCK_RETRY_SECONDS, exc)
                if self._undock_retry_at is None:
                    self._hw.beep(hw.BEEP_REFUSE, t)
                self._undock_retry_at = t + UNDOCK_RETRY_SECONDS
                return
            if self._undock_retry_at is not None:
                log.info("undocked after an earlier failure")
            self._undock_retry_at = None
            self._enter(State.IDLE, t)

    @property
    def undock_failed(self) -> bool:
        """True while DOCKED because taking the partition back failed (retried)."""
        return self._state is State.DOCKED and self._undock_retry_at is not None

    def _render(self, now: float) -> None:
        pattern, since = _STATE_PATTERNS[self._state], self._state_since
        if self.undock_failed:
            pattern = hw.PATTERN_ERROR
        if self._state is State.IDLE and self._overlay is not None:
            overlay, overlay_since, until = self._overlay
            if now < until:
                pattern, since = overlay, overlay_since
            else:
                self._overlay = None
        if self._state in (State.IDLE, State.RECORDING) and pattern in (hw.PATTERN_IDLE, hw.PATTERN_RECORDING):
            warnings = self._recorder.warnings()
            if warnings != self._warnings:
                if warnings:
                    log.warning("warning on the lights: %s", ", ".join(warnings))
                self._warnings = warnings
            if warnings:
                pattern = dataclasses.replace(pattern, amber=hw.WARNING_AMBER)
        self._hw.render(pattern, max(0.0, now - since), now)
