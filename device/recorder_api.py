"""The interface between the controller (buttons, state machine) and the recorder (camera,
encrypting writer, outbox). The controller is the only caller of ``Recorder.start``.

Thread rule: every method is called on the controller's thread, from ``Controller.tick()``. A
recorder that runs an encoder thread must hand results back through ``poll()``, never by calling
into the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

TRIGGER_ANNOUNCED = "announced"
TRIGGER_EMERGENCY = "emergency"
TRIGGER_KINDS = (TRIGGER_ANNOUNCED, TRIGGER_EMERGENCY)

# Why a recording ended (the manifest's end reason).
STOP_OFFICER = "officer"
STOP_DOCKED = "docked"
STOP_STORAGE = "storage"
STOP_SHUTDOWN = "shutdown"
# A camera or write error ended the clip. The clip format (evidence_store.clip.manifest) knows no
# "error" end reason; "interrupted" is the one that says "not ended by anyone's decision", and
# the manifest's notes name the error. Never "shutdown": nobody shut the camera down.
STOP_ERROR = "interrupted"
STOP_REASONS = (STOP_OFFICER, STOP_DOCKED, STOP_STORAGE, STOP_SHUTDOWN, STOP_ERROR)

# Why a recording may not start (``Recorder.can_start``); each has its own LED pattern.
REFUSE_STORAGE = "storage reserve"
REFUSE_NOT_ENROLLED = "not enrolled"


@dataclass(frozen=True)
class Trigger:
    """How a recording came about: the manifest's trigger.

    ``kind`` is ``"announced"`` (the announcement ran its full time) or ``"emergency"`` (imminent
    danger: emergency button or a held record button). ``announced_at`` is when an announcement
    began: always set for ``announced``; for ``emergency`` set only if the emergency interrupted a
    running announcement, else None. ``started_at`` is when recording was ordered (the end of the
    announcement, or the emergency press / the moment the hold time was reached), UTC.

    ``resumed_at`` is set only when the controller resumes a recording that a crash interrupted
    (``Controller.resume_interrupted``): the new clip keeps the original trigger and times and
    links to the interrupted clip; ``resumed_at`` is when recording resumed.
    """

    kind: str  # one of TRIGGER_KINDS (checked below: a resumed trigger comes from a file)
    announced_at: datetime | None
    started_at: datetime
    resumed_at: datetime | None = None

    def __post_init__(self):
        if self.kind not in TRIGGER_KINDS:
            raise ValueError(f"trigger kind must be one of {TRIGGER_KINDS}, got {self.kind!r}")
        if self.kind == TRIGGER_ANNOUNCED and self.announced_at is None:
            raise ValueError("an announced trigger needs announced_at")
        for name in ("announced_at", "started_at", "resumed_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"trigger {name} must be timezone-aware")
        if self.announced_at is not None and self.announced_at > self.started_at:
            raise ValueError("a recording cannot start before its announcement began")


@runtime_checkable
class Recorder(Protocol):
    def can_start(self) -> str | None:
        """None if a recording may start now, else the reason (REFUSE_STORAGE, REFUSE_NOT_ENROLLED, ...)."""

    def warnings(self) -> tuple[str, ...]:
        """What the lights should warn of while the camera works on (low storage, a failed
        microphone); empty when all is well."""

    def start(self, trigger: Trigger) -> None:
        """Start the encoder and a new clip. The only way the encoder starts. Raises DeviceError."""

    def bookmark(self, at: datetime) -> None:
        """Add a bookmark to the running clip."""

    def set_homes(self, at: datetime) -> None:
        """Flag the running clip as made in a home (to be followed up by the officer in charge)."""

    def stop(self, reason: str) -> None:
        """Stop the encoder and seal the clip (manifest, signature). ``reason`` is one of STOP_REASONS."""

    def poll(self) -> str | None:
        """Called every tick while recording. A stop reason if the recorder had to stop (and seal)
        by itself, e.g. STOP_STORAGE before the disk fills; else None."""

    def dock(self) -> None:
        """Docked: stop using the outbox and expose the evidence partition (USB gadget)."""

    def undock(self) -> None:
        """Undocked: take the partition back, apply enrollment and clock, delete receipted clips."""
