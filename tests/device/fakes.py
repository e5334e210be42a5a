"""Fakes that record what was asked of them (preferred over mocks: see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from datetime import datetime

from device.errors import RecorderError
from device.recorder_api import Trigger
from evidence_store.clip.sdnotify import SdNotifier


class FakeRecorder:
    """A Recorder that records every call as ``(method, argument)`` in ``calls``.

    ``refuse`` is what ``can_start`` answers; ``poll_reason`` what the next ``poll`` answers (once);
    ``fail`` names methods that raise RecorderError. ``poll_failures`` is how many of the next
    polls raise RecorderError (as the real recorder does after sealing a clip a camera or write
    error ended).
    """

    def __init__(self, *, refuse: str | None = None):
        self.calls: list[tuple[str, object]] = []
        self.refuse = refuse
        self.poll_reason: str | None = None
        self.fail: set[str] = set()
        self.poll_failures = 0
        self.recording = False
        self.warn: tuple[str, ...] = ()  # what warnings() answers

    def _call(self, name: str, arg: object = None) -> None:
        self.calls.append((name, arg))
        if name in self.fail:
            raise RecorderError(f"{name} failed (as the test asked)")

    def can_start(self) -> str | None:
        self.calls.append(("can_start", None))
        return self.refuse

    def warnings(self) -> tuple[str, ...]:
        return self.warn

    def start(self, trigger: Trigger) -> None:
        assert not self.recording, "start while already recording"
        self._call("start", trigger)
        self.recording = True

    def bookmark(self, at: datetime) -> None:
        assert self.recording, "bookmark while not recording"
        self._call("bookmark", at)

    def set_homes(self, at: datetime) -> None:
        assert self.recording, "homes flag while not recording"
        self._call("set_homes", at)

    def stop(self, reason: str) -> None:
        assert self.recording, "stop while not recording"
        self.recording = False
        self._call("stop", reason)

    def poll(self) -> str | None:
        assert self.recording, "poll while not recording"
        if self.poll_failures > 0:
            self.poll_failures -= 1
            self.recording = False  # the recorder sealed the failed clip itself
            self.calls.append(("poll_error", None))
            raise RecorderError("recording stopped: camera failed (as the test asked)")
        reason, self.poll_reason = self.poll_reason, None
        if reason is not None:
            self.recording = False
        return reason

    def dock(self) -> None:
        assert not self.recording, "docked while recording: the clip must be sealed first"
        self._call("dock")

    def undock(self) -> None:
        self._call("undock")

    # --- helpers for assertions ---

    def named(self, name: str) -> list[object]:
        return [arg for method, arg in self.calls if method == name]

    def actions(self) -> list[str]:
        """Every call but the queries (can_start, poll), in order."""
        return [method for method, _ in self.calls if method not in ("can_start", "poll")]


class FakeGadget:
    """A UsbGadget (device.docking) that records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.attached_serial: str | None = None

    def attach(self, serial: str) -> None:
        self.calls.append(("attach", serial))
        self.attached_serial = serial

    def detach(self) -> None:
        self.calls.append(("detach",))
        self.attached_serial = None


class FakeNotifier(SdNotifier):
    """The real SdNotifier's messages, kept instead of sent to a socket."""

    def __init__(self, watchdog_every: float | None = 1.0):
        super().__init__(None, environ={})
        self.sent: list[str] = []
        self._every = watchdog_every

    def watchdog_interval(self) -> float | None:
        return self._every

    def notify(self, *fields: str) -> bool:
        self.sent.extend(fields)
        return True


class FakeEvent:
    """A stop event for ``run_forever``: each ``wait`` advances the fake clock instead of
    sleeping, and reports "set" after ``ticks`` waits (or once ``set()`` is called)."""

    def __init__(self, clock, ticks: int, on_wait=None):
        self._clock = clock
        self._left = ticks
        self._on_wait = on_wait
        self._set = False
        self.waits = 0

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self._on_wait is not None:
            self._on_wait(self.waits)
        if self._set or self._left <= 0:
            return True
        self._left -= 1
        self._clock.advance(timeout or 0.0)
        return False
