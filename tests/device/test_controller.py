"""The state machine, driven through gpiozero's MockFactory pins and a fake clock."""

from __future__ import annotations

import ast
import random
from datetime import timedelta
from pathlib import Path

import pytest

import device
from device.config import ControlsConfig, PinsConfig
from device.controller import Controller, State
from device.errors import DeviceError
from device.hardware import Hardware
from device.recorder_api import REFUSE_NOT_ENROLLED, REFUSE_STORAGE, Trigger
from tests.device.conftest import PINS, START
from tests.device.fakes import FakeEvent, FakeNotifier

MS = timedelta(milliseconds=1)


def close(a, b, tolerance=MS):
    return abs(a - b) <= tolerance


def start_emergency(rig):
    rig.tap("emergency")
    assert rig.state is State.RECORDING


# --- IDLE and ANNOUNCING ------------------------------------------------------------------

def test_controller_fresh_is_idle_with_green_steady(rig):
    assert rig.state is State.IDLE
    assert rig.pin("green").state and not rig.pin("red").state and not rig.pin("amber").state
    assert rig.recorder.actions() == []


def test_controller_short_press_in_idle_announces_on_release(rig):
    rig.down("record")
    rig.run(0.5)
    assert rig.state is State.IDLE  # a short press acts on release
    rig.up("record")
    rig.run(0.05)
    assert rig.state is State.ANNOUNCING
    assert rig.recorder.named("start") == []


def test_controller_announcing_blinks_amber_and_sounds_buzzer(rig):
    rig.tap("record")
    before_amber, before_buzzer = rig.rises("amber"), rig.rises("buzzer")
    rig.run(2.0)
    assert rig.rises("amber") - before_amber >= 3  # 0.25 s on / 0.25 s off
    assert rig.rises("buzzer") - before_buzzer >= 2  # a beep every second
    assert not rig.pin("red").state and not rig.pin("green").state


def test_controller_announcing_plays_configured_sound(make_rig):
    played = []
    rig = make_rig(controls=ControlsConfig(announcement_sound=Path("/snd/announce.wav")), sound_player=played.append)
    rig.tap("record")
    assert played == [Path("/snd/announce.wav")]


def test_controller_announcement_timeout_starts_recording_with_both_times(rig):
    rig.tap("record", seconds=0.2)
    released = START + timedelta(seconds=0.2)
    rig.run(2.9)
    assert rig.state is State.ANNOUNCING
    assert rig.recorder.named("start") == []
    rig.run(0.1)
    assert rig.state is State.RECORDING
    [trigger] = rig.recorder.named("start")
    assert trigger.kind == "announced"
    assert close(trigger.announced_at, released)
    assert close(trigger.started_at - trigger.announced_at, timedelta(seconds=3))


def test_controller_press_during_announcing_cancels(rig):
    rig.tap("record")
    rig.run(1.0)
    rig.tap("record")
    assert rig.state is State.IDLE
    rig.run(10)
    assert rig.state is State.IDLE
    assert rig.recorder.named("start") == []
    assert rig.pin("green").state and not rig.pin("amber").state


def test_controller_press_during_announcing_held_past_timeout_does_not_stop(rig):
    # Pressed to cancel but still down when the announcement runs out: the press belonged to
    # ANNOUNCING, so neither its release nor its hold acts on the recording that began meanwhile.
    rig.tap("record")
    rig.run(2.5)
    rig.hold("record", 2.0)
    rig.up("record")
    rig.run(0.5)
    assert rig.state is State.RECORDING
    assert rig.recorder.actions() == ["start"]


def test_controller_custom_announcement_seconds_are_honoured(make_rig):
    rig = make_rig(controls=ControlsConfig(announcement_seconds=5))
    rig.tap("record")
    rig.run(4.9)
    assert rig.state is State.ANNOUNCING
    rig.run(0.1)
    assert rig.state is State.RECORDING


# --- emergency ----------------------------------------------------------------------------

def test_controller_hold_in_idle_starts_emergency_at_hold_time(rig):
    rig.hold("record", 1.45)
    assert rig.state is State.IDLE
    rig.run(0.1)
    assert rig.state is State.RECORDING  # fired while the button is still down
    [trigger] = rig.recorder.named("start")
    assert trigger.kind == "emergency" and trigger.announced_at is None
    assert close(trigger.started_at, START + timedelta(seconds=1.5))


def test_controller_hold_in_announcing_starts_emergency_keeping_announcement_time(rig):
    rig.tap("record")
    rig.run(0.5)
    rig.hold("record", 1.6)
    assert rig.state is State.RECORDING
    [trigger] = rig.recorder.named("start")
    assert trigger.kind == "emergency"
    assert close(trigger.announced_at, START + timedelta(seconds=0.2))
    assert trigger.started_at - trigger.announced_at < timedelta(seconds=3)


def test_controller_emergency_button_in_idle_starts_at_press(rig):
    rig.down("emergency")
    rig.run(0.05)
    assert rig.state is State.RECORDING
    [trigger] = rig.recorder.named("start")
    assert trigger.kind == "emergency" and trigger.announced_at is None
    assert close(trigger.started_at, START)


def test_controller_emergency_button_in_announcing_starts_emergency(rig):
    rig.tap("record")
    rig.run(1.0)
    rig.tap("emergency")
    assert rig.state is State.RECORDING
    [trigger] = rig.recorder.named("start")
    assert trigger.kind == "emergency" and trigger.announced_at is not None
    rig.run(5)
    assert rig.recorder.actions() == ["start"]  # the announcement timer is gone


def test_controller_emergency_button_while_recording_changes_nothing(rig):
    start_emergency(rig)
    rig.tap("emergency")
    rig.hold("emergency", 3.0)
    rig.up("emergency")
    rig.run(0.1)
    assert rig.state is State.RECORDING
    assert rig.recorder.actions() == ["start"]


def test_controller_hold_that_started_recording_never_stops_it(rig):
    rig.hold("record", 6.0)  # far beyond two hold times
    rig.up("record")
    rig.run(1.0)
    assert rig.state is State.RECORDING
    assert rig.recorder.actions() == ["start"]


def test_controller_emergency_press_and_release_between_ticks_keeps_timing(rig):
    # A late tick: press and release both happened before the controller looked.
    rig.down("record")
    rig.clock.advance(2.0)
    rig.up("record")
    rig.clock.advance(0.05)
    rig.controller.tick()
    assert rig.state is State.RECORDING
    [trigger] = rig.recorder.named("start")
    assert trigger.kind == "emergency"
    assert close(trigger.started_at, START + timedelta(seconds=1.5))


def test_controller_record_and_emergency_in_idle_start_emergency_not_homes(rig):
    rig.down("record")
    rig.run(0.1)
    rig.down("emergency")
    rig.run(0.1)
    rig.up("record")
    rig.up("emergency")
    rig.run(0.1)
    assert rig.state is State.RECORDING
    assert rig.recorder.actions() == ["start"]


# --- RECORDING ----------------------------------------------------------------------------

def test_controller_new_hold_while_recording_stops_at_hold_time(rig):
    start_emergency(rig)
    rig.run(2.0)
    rig.hold("record", 1.6)
    assert rig.state is State.IDLE  # stopped while still held
    assert rig.recorder.named("stop") == ["officer"]
    rig.run(1.0)
    rig.up("record")
    rig.run(5.0)
    assert rig.state is State.IDLE  # that release starts nothing
    assert rig.recorder.actions() == ["start", "stop"]


def test_controller_short_press_while_recording_bookmarks_at_press_time(rig):
    start_emergency(rig)
    rig.run(1.0)
    pressed = rig.wall()
    rig.tap("record", seconds=0.3)
    assert rig.state is State.RECORDING
    [at] = rig.recorder.named("bookmark")
    assert close(at, pressed)


def test_controller_recording_keeps_red_steady_and_other_leds_off(rig):
    start_emergency(rig)
    rises = rig.rises("red")
    rig.run(10.0)
    assert rig.pin("red").state
    assert rig.rises("red") == rises  # steady: no blinking
    assert not rig.pin("amber").state and not rig.pin("green").state


def test_controller_red_led_off_outside_recording(rig):
    rig.tap("record")
    rig.run(1.0)
    assert rig.rises("red") == 0
    rig.run(3.0)
    assert rig.pin("red").state
    rig.hold("record", 1.6)
    assert not rig.pin("red").state


def test_controller_reminder_beeps_at_interval(make_rig):
    rig = make_rig(controls=ControlsConfig(reminder_interval_seconds=10))
    rig.down("emergency")
    rig.run(0.05)
    rig.up("emergency")
    rig.run(1.0)
    after_start = rig.rises("buzzer")  # the start beep
    rig.run(8.5)
    assert rig.rises("buzzer") == after_start
    rig.run(1.0)
    assert rig.rises("buzzer") == after_start + 1
    rig.run(20.0)
    assert rig.rises("buzzer") == after_start + 3


def test_controller_homes_button_while_recording_sets_flag_once(rig):
    start_emergency(rig)
    pressed = rig.wall()
    rig.tap("homes")
    rig.tap("homes")
    [at] = rig.recorder.named("set_homes")
    assert close(at, pressed)
    assert rig.controller.homes
    assert rig.state is State.RECORDING


def test_controller_record_and_emergency_while_recording_set_homes(rig):
    start_emergency(rig)
    rig.down("emergency")
    rig.run(0.1)
    rig.down("record")
    rig.run(2.0)  # longer than a hold: the combination is not a stop
    rig.up("record")
    rig.up("emergency")
    rig.run(0.1)
    assert rig.state is State.RECORDING
    assert rig.recorder.actions() == ["start", "set_homes"]


def test_controller_homes_button_outside_recording_is_ignored(rig):
    rig.tap("homes")
    rig.tap("record")
    rig.tap("homes")
    assert rig.recorder.named("set_homes") == []
    assert rig.state is State.ANNOUNCING


def test_controller_recorder_stopping_itself_returns_idle_with_storage_pattern(rig):
    start_emergency(rig)
    rig.recorder.poll_reason = "storage"
    rig.run(0.05)
    assert rig.state is State.IDLE
    assert rig.recorder.named("stop") == []  # it already stopped and sealed
    assert rig.pin("amber").state and not rig.pin("green").state and not rig.pin("red").state


# --- docking ------------------------------------------------------------------------------

def test_controller_dock_in_idle_docks_and_undock_returns_idle(rig):
    rig.down("dock")
    rig.run(0.05)
    assert rig.state is State.DOCKED
    rig.up("dock")
    rig.run(0.05)
    assert rig.state is State.IDLE
    assert rig.recorder.actions() == ["dock", "undock"]


def test_controller_dock_in_announcing_cancels_without_recording(rig):
    rig.tap("record")
    rig.down("dock")
    rig.run(5.0)
    assert rig.state is State.DOCKED
    assert rig.recorder.actions() == ["dock"]


def test_controller_dock_in_recording_seals_then_docks(rig):
    start_emergency(rig)
    rig.down("dock")
    rig.run(0.05)
    assert rig.state is State.DOCKED
    assert rig.recorder.calls[-2:] == [("stop", "docked"), ("dock", None)]


def test_controller_dock_while_record_held_swallows_the_gesture(rig):
    rig.down("record")
    rig.run(0.5)
    rig.down("dock")
    rig.run(0.5)
    rig.up("dock")
    rig.run(2.0)
    rig.up("record")
    rig.run(5.0)
    assert rig.state is State.IDLE
    assert rig.recorder.actions() == ["dock", "undock"]


def test_controller_buttons_while_docked_are_ignored(rig):
    rig.down("dock")
    rig.run(0.05)
    rig.tap("record")
    rig.tap("emergency")
    rig.tap("homes")
    rig.hold("record", 2.0)
    rig.up("record")
    rig.run(5.0)
    assert rig.state is State.DOCKED
    assert rig.recorder.actions() == ["dock"]
    assert not rig.pin("red").state


def test_controller_docked_before_first_tick_docks_at_first_tick(mock_factory, clock, recorder):
    # The camera already sits in the dock when the firmware starts.
    hardware = Hardware(PINS, clock, pin_factory=mock_factory)
    try:
        hardware.buttons["dock"].pin.drive_low()
        clock.advance(0.05)
        controller = Controller(recorder, hardware, clock, ControlsConfig())
        assert controller.state is State.IDLE
        controller.tick()
        assert controller.state is State.DOCKED
        assert recorder.actions() == ["dock"]
    finally:
        hardware.close()


def test_controller_docked_led_blinks_green(rig):
    rig.down("dock")
    rig.run(0.05)
    rises = rig.rises("green")
    rig.run(6.0)
    assert rig.rises("green") - rises >= 2


def test_controller_without_dock_or_homes_pins_works(make_rig):
    rig = make_rig(pins=PinsConfig(homes=None, dock=None))
    rig.tap("record")
    rig.run(3.0)
    assert rig.state is State.RECORDING


# --- refusals and failures ----------------------------------------------------------------

def test_controller_storage_refusal_on_press_stays_idle_with_amber_steady(rig):
    rig.recorder.refuse = REFUSE_STORAGE
    rig.tap("record")
    rig.run(5.0 - 0.3)
    assert rig.state is State.IDLE
    assert rig.recorder.named("start") == []
    assert rig.pin("amber").state and not rig.pin("green").state and not rig.pin("red").state
    assert rig.rises("buzzer") >= 3  # the refusal beeps
    assert rig.controller.last_refusal == REFUSE_STORAGE
    rig.run(0.5)
    assert rig.pin("green").state and not rig.pin("amber").state  # shown for refusal_display_seconds


def test_controller_not_enrolled_refusal_on_emergency_blinks_amber(rig):
    rig.recorder.refuse = REFUSE_NOT_ENROLLED
    rig.tap("emergency")
    rises = rig.rises("amber")
    rig.run(2.0)
    assert rig.state is State.IDLE
    assert rig.rises("amber") - rises >= 1
    assert rig.recorder.named("start") == []


def test_controller_refusal_at_end_of_announcement_stays_idle(rig):
    rig.tap("record")
    rig.recorder.refuse = REFUSE_STORAGE  # the disk filled while announcing
    rig.run(3.5)
    assert rig.state is State.IDLE
    assert rig.recorder.named("start") == []


def test_controller_recorder_start_failure_returns_idle_with_error_pattern(rig):
    rig.recorder.fail.add("start")
    rig.tap("emergency")
    assert rig.state is State.IDLE
    assert rig.controller.last_refusal == "error"
    assert not rig.pin("red").state


def test_controller_recorder_stop_failure_returns_idle_with_error_pattern(rig):
    start_emergency(rig)
    rig.recorder.fail.add("stop")
    rig.hold("record", 1.6)
    assert rig.state is State.IDLE
    assert rig.controller.last_refusal == "error"
    assert not rig.pin("red").state and not rig.pin("green").state
    rises = rig.rises("amber")
    rig.run(1.0)
    assert rig.rises("amber") - rises >= 4  # the fast amber blink of the error pattern


def test_controller_recorder_poll_error_restarts_recording_linked(rig):
    start_emergency(rig)
    [first] = rig.recorder.named("start")
    rig.run(2.0)
    rig.recorder.poll_failures = 1
    failed_at = rig.wall() + timedelta(seconds=rig.STEP)
    rig.run(rig.STEP)
    assert rig.state is State.RECORDING  # the officer's recording goes on, in a new clip
    assert rig.recorder.actions() == ["start", "poll_error", "start"]
    second = rig.recorder.named("start")[1]
    assert (second.kind, second.started_at) == (first.kind, first.started_at)
    assert close(second.resumed_at, failed_at)
    assert rig.pin("red").state


def test_controller_recorder_poll_error_repeated_gives_up_with_error_pattern(rig):
    start_emergency(rig)
    rig.recorder.poll_failures = 10
    rig.run(0.5)
    assert rig.state is State.IDLE
    assert rig.recorder.named("start")[1:] and len(rig.recorder.named("start")) == 1 + 3  # MAX_ERROR_RESTARTS
    assert rig.controller.last_refusal == "error" and not rig.pin("red").state
    rig.recorder.poll_failures = 0
    rig.tap("emergency")  # a new press still records
    assert rig.state is State.RECORDING


def test_controller_undock_failure_stays_docked_with_error_and_retries(rig):
    rig.down("dock")
    rig.run(0.05)
    rig.recorder.fail.add("undock")
    rig.up("dock")
    rig.run(1.0)
    assert rig.state is State.DOCKED and rig.controller.undock_failed
    assert rig.recorder.actions() == ["dock", "undock"]  # not retried at every tick
    rises = rig.rises("amber")
    rig.run(1.0)
    assert rig.rises("amber") - rises >= 4 and not rig.pin("green").state  # error, not "ready"
    rig.tap("emergency")
    assert rig.recorder.named("start") == []
    rig.recorder.fail.discard("undock")
    rig.run(4.0)
    assert rig.state is State.IDLE and not rig.controller.undock_failed
    assert rig.recorder.actions()[-2:] == ["undock", "undock"]
    assert rig.pin("green").state


def test_controller_usb_power_dock_signal_docks_and_undocks(make_rig, tmp_path):
    from device.docking import PowerDockSignal

    online = tmp_path / "power_supply" / "usb" / "online"
    online.parent.mkdir(parents=True)
    online.write_text("0\n")
    rig = make_rig(dock_signal=PowerDockSignal(tmp_path / "power_supply" / "*" / "online"))
    start_emergency(rig)
    online.write_text("1\n")
    rig.run(1.0)
    assert rig.state is State.DOCKED
    assert rig.recorder.actions() == ["start", "stop", "dock"]
    assert rig.recorder.named("stop") == ["docked"]
    online.write_text("0\n")
    rig.run(1.0)
    assert rig.state is State.IDLE and rig.recorder.actions()[-1] == "undock"


def test_controller_button_bounce_is_ignored(rig):
    for _ in range(5):
        rig.down("record")
        rig.clock.advance(0.005)
        rig.up("record")
        rig.clock.advance(0.005)
    rig.run(1.0)
    assert rig.state is State.IDLE
    assert rig.recorder.calls == []


# --- resume, shutdown, run_forever --------------------------------------------------------

def test_controller_resume_interrupted_keeps_trigger_and_stamps_resume(rig):
    original = Trigger("announced", announced_at=START - timedelta(minutes=5),
                       started_at=START - timedelta(minutes=5) + timedelta(seconds=3))
    rig.run(1.0)
    assert rig.controller.resume_interrupted(original)
    [trigger] = rig.recorder.named("start")
    assert (trigger.kind, trigger.announced_at, trigger.started_at) == ("announced", original.announced_at,
                                                                       original.started_at)
    assert close(trigger.resumed_at, START + timedelta(seconds=1))
    assert rig.state is State.RECORDING


def test_controller_resume_interrupted_outside_idle_raises(rig):
    start_emergency(rig)
    with pytest.raises(DeviceError, match="cannot resume"):
        rig.controller.resume_interrupted(rig.recorder.named("start")[0])


def test_controller_shutdown_while_recording_seals(rig):
    start_emergency(rig)
    rig.controller.shutdown()
    assert rig.recorder.named("stop") == ["shutdown"]
    assert not any(rig.pin(name).state for name in ("red", "amber", "green", "buzzer"))


def test_controller_run_forever_notifies_systemd_and_seals_at_the_end(rig):
    notifier = FakeNotifier(watchdog_every=1.0)

    def officer(waits):
        if waits == 10:
            rig.down("emergency")

    event = FakeEvent(rig.clock, ticks=200, on_wait=officer)
    rig.controller.run_forever(event, interval=0.02, notifier=notifier)
    assert rig.recorder.actions() == ["start", "stop"]
    assert rig.recorder.named("stop") == ["shutdown"]
    assert notifier.sent[0] == "READY=1"
    assert "STATUS=recording" in notifier.sent
    assert notifier.sent.count("WATCHDOG=1") >= 4  # 4 s of ticks, a ping each second
    assert notifier.sent[-1] == "STOPPING=1"


def test_controller_run_forever_without_systemd_runs(rig):
    event = FakeEvent(rig.clock, ticks=5)
    rig.controller.run_forever(event)
    assert event.waits == 6
    assert rig.state is State.IDLE


# --- no other way into RECORDING ----------------------------------------------------------

DEVICE_DIR = Path(device.__file__).parent
WAYS_IN = {"_announcement_elapsed", "_emergency", "resume_interrupted"}


def _functions_with_calls(tree):
    """(enclosing class, function name, call node) for every call in the module."""
    out = []

    def visit(node, cls, fn):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, child.name, fn)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, cls, child.name)
            else:
                if isinstance(child, ast.Call):
                    out.append((cls, fn, child))
                visit(child, cls, fn)

    visit(tree, None, None)
    return out


def _scan_starts(sources):
    """For ``(file name, source)`` pairs: where a recorder's ``start`` is called, and where
    ``_begin_recording`` is called, each as (file, class, function)."""
    starts, begins = [], []
    for name, source in sources:
        tree = ast.parse(source, filename=name)
        recorder_classes = {
            node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and {"start", "can_start"} <= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        }
        for cls, fn, call in _functions_with_calls(tree):
            func = call.func
            if not isinstance(func, ast.Attribute):
                continue
            receiver = ast.unparse(func.value)
            # recorder.start(...), self._recorder.start(...), or a Recorder class starting itself
            if func.attr == "start" and ("recorder" in receiver.lower()
                                         or (cls in recorder_classes and receiver == "self")):
                starts.append((name, cls, fn))
            if func.attr == "_begin_recording":
                begins.append((name, cls, fn))
    return starts, begins


def test_controller_source_only_begin_recording_calls_recorder_start():
    """Read every module of the device package: a recorder's ``start`` is called in exactly one
    place, Controller._begin_recording, which only the two ways in (and crash resume) call; and no
    recorder implementation starts itself."""
    sources = [(str(p.relative_to(DEVICE_DIR)), p.read_text()) for p in sorted(DEVICE_DIR.rglob("*.py"))]
    starts, begins = _scan_starts(sources)
    assert starts == [("controller.py", "Controller", "_begin_recording")]
    assert {fn for _, _, fn in begins} == WAYS_IN
    assert all((name, cls) == ("controller.py", "Controller") for name, cls, _ in begins)


# Calls that can start the camera or its encoder, each (file, class, function). Anything else
# that calls camera.start / start_encoder / _start_camera fails the test below.
ENCODER_START_ALLOWED = {
    # Recorder.start: the recording the controller's _begin_recording asked for.
    ("recorder.py", "EncryptingRecorder", "start"),
    # Pre-recording, only when the enrolled profile allows it (never NRW: see the runtime test).
    ("recorder.py", "EncryptingRecorder", "_apply_profile"),
    # The one helper both of the above go through.
    ("recorder.py", "EncryptingRecorder", "_start_camera"),
    # The picamera2 backend: open() starts the sensor pipeline (no encoder), start() is
    # Camera.start itself, which is what the three lines above call.
    ("camera/picamera2_backend.py", "Picamera2Camera", "open"),
    ("camera/picamera2_backend.py", "Picamera2Camera", "start"),
    # ... and the helper start() alone calls (with sound, then without if the microphone fails).
    ("camera/picamera2_backend.py", "Picamera2Camera", "_start_encoder"),
}
ENCODER_START_NAMES = {"start_encoder", "_start_camera", "start_recording"}


def _scan_encoder_starts(sources):
    """Where the camera or its encoder may be started: ``X.start(...)`` on a receiver naming a
    camera or encoder, and any call of ENCODER_START_NAMES; each as (file, class, function)."""
    found = []
    for name, source in sources:
        for cls, fn, call in _functions_with_calls(ast.parse(source, filename=name)):
            func = call.func
            attr = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if attr in ENCODER_START_NAMES:
                found.append((name, cls, fn))
            elif attr == "start" and isinstance(func, ast.Attribute):
                receiver = ast.unparse(func.value).lower()
                if "cam" in receiver or "encoder" in receiver:
                    found.append((name, cls, fn))
    return found


def test_controller_source_encoder_started_only_from_allowed_places():
    sources = [(str(p.relative_to(DEVICE_DIR)), p.read_text()) for p in sorted(DEVICE_DIR.rglob("*.py"))]
    found = set(_scan_encoder_starts(sources))
    assert found <= ENCODER_START_ALLOWED, found - ENCODER_START_ALLOWED
    assert ("recorder.py", "EncryptingRecorder", "_start_camera") in found  # the scan does see them


def test_controller_encoder_scan_finds_planted_starts():
    planted = (
        "class Dock:\n"
        "    def undock(self):\n"
        "        self._camera.start(None)\n"
        "        self._start_camera()\n"
        "def wake(picam, enc):\n"
        "    picam.start_encoder(enc, None)\n"
        "    worker_thread.start()\n"
    )
    assert _scan_encoder_starts([("planted.py", planted)]) == [
        ("planted.py", "Dock", "undock"), ("planted.py", "Dock", "undock"), ("planted.py", None, "wake")]


def test_controller_nrw_dock_undock_enrollment_change_never_start_camera(mock_factory, clock, tmp_path):
    from evidence_store.clip import note
    from evidence_store.clip.outbox import Profile
    from tests.device._kit import make_camera
    from tests.device.conftest import Rig
    from tests.device.fakes import FakeGadget
    from tests.device.test_recorder import make_recorder

    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, gadget=FakeGadget(), local_prerecord=30)
    rig = Rig(mock_factory, clock, recorder)
    try:
        for enroll in (lambda: cam.enroll(officer="PK-2002"),
                       # a forged pre-recording profile: not applied
                       lambda: cam.enroll(Profile("BW", prerecord_max_seconds=60),
                                          signer=note.generate_signer("bodycam-store")),
                       lambda: None):
            rig.down("dock")
            rig.run(0.1)
            assert rig.state is State.DOCKED
            enroll()
            rig.up("dock")
            rig.run(0.1)
            assert rig.state is State.IDLE
            rig.run(2.0)
        assert recorder.enrollment.officer == "PK-2002"
        assert camera.starts == 0 and recorder._prerecord is None
    finally:
        rig.hardware.close()
        recorder.close()


def test_controller_source_scan_finds_a_planted_start():
    planted = (
        "class Camera:\n"
        "    def can_start(self): return None\n"
        "    def start(self, trigger): ...\n"
        "    def recover(self): self.start(None)\n"
        "def on_usb(app):\n"
        "    app.recorder.start(None)\n"
        "    app.encoder_thread.start()\n"
    )
    starts, _ = _scan_starts([("planted.py", planted)])
    assert starts == [("planted.py", "Camera", "recover"), ("planted.py", None, "on_usb")]


INPUTS_THAT_NEVER_START = [
    "homes tap", "dock", "undock", "external dock", "external undock", "wait",
    "announce and cancel", "record tap while docked", "record hold while docked",
    "emergency while docked", "bounce",
]


class SwitchedDockSignal:
    """The second dock signal (USB power, docking.PowerDockSignal in the firmware), switched by hand."""

    def __init__(self):
        self.on = False

    def docked(self, now: float) -> bool:
        return self.on


@pytest.mark.parametrize("seed", range(40))
def test_controller_other_inputs_never_start_recording(make_rig, seed):
    rng = random.Random(seed)
    usb_power = SwitchedDockSignal()
    rig = make_rig(dock_signal=usb_power)
    rig.STEP = 0.02
    for _ in range(25):
        action = rng.choice(INPUTS_THAT_NEVER_START)
        if action == "homes tap":
            rig.tap("homes", seconds=rng.uniform(0.05, 3.0))
        elif action in ("dock", "undock"):
            (rig.down if action == "dock" else rig.up)("dock")
            rig.run(0.06)
        elif action == "external dock":
            usb_power.on = True
            rig.run(0.04)
        elif action == "external undock":
            usb_power.on = False
            rig.run(0.04)
        elif action == "wait":
            rig.run(rng.uniform(0, 10))
        elif action == "announce and cancel":
            if rig.state is State.IDLE:
                rig.tap("record", seconds=rng.uniform(0.05, 1.0))
                rig.run(rng.uniform(0, 1.0))
                rig.tap("record", seconds=rng.uniform(0.05, 0.5))
        elif action == "bounce":
            rig.down("record")
            rig.clock.advance(0.004)
            rig.up("record")
            rig.run(0.1)
        elif rig.state is State.DOCKED:
            button = "emergency" if action.startswith("emergency") else "record"
            rig.tap(button, seconds=3.0 if "hold" in action else 0.2)
        assert rig.state is not State.RECORDING, action
        assert rig.recorder.named("start") == [], action


def test_controller_recorder_warning_flashes_amber_beside_green_and_red(rig):
    rig.recorder.warn = ("low storage",)
    rises = rig.rises("amber")
    rig.run(4.1)
    assert rig.state is State.IDLE and rig.pin("green").state
    assert rig.rises("amber") - rises >= 2  # a short flash every two seconds
    rig.recorder.warn = ("microphone",)
    rig.tap("emergency")
    rig.run(0.1)
    assert rig.state is State.RECORDING
    rises = rig.rises("amber")
    rig.run(4.1)
    assert rig.pin("red").state and rig.rises("amber") - rises >= 2
    rig.recorder.warn = ()
    rig.run(2.1)
    assert not rig.pin("amber").state
