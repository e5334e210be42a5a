"""Devices and their chain: enrollment, assignment, revocation, the signed notes the dock hands a
camera, and the last docking of each."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from evidence_store import events as ev
from evidence_store import logstate
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.ids import check_device_id, format_time, parse_time
from evidence_store.clip.outbox import NRW, ClockStamp, Enrollment, Profile
from evidence_store.errors import IntegrityError, UsageError
from evidence_store.store.base import StoreBase
from evidence_store.store.records import DeviceInfo, _require_reason


class DevicesMixin(StoreBase):
    """The store's devices methods (mixed into evidence_store.store.Store)."""

    def devices(self) -> list[DeviceInfo]:
        return [self._device_info(r) for r in self.index.device_rows()]

    def device(self, device_id: str) -> DeviceInfo | None:
        row = self.index.device_row(device_id)
        return None if row is None else self._device_info(row)

    def _device_info(self, row) -> DeviceInfo:
        (device_id, public_key, profile, officer, revoked, revoked_reason, enrolled_at,
         last_docking, last_sequence, last_manifest) = row
        try:
            return DeviceInfo(device_id, public_key, officer, bool(revoked), revoked_reason,
                              parse_time(enrolled_at), parse_time(last_docking) if last_docking else None,
                              last_sequence, last_manifest, Profile(**json.loads(profile)))
        except (TypeError, ValueError):
            raise IntegrityError(f"device {device_id}: its index row is damaged (profile or times)",
                                 "hint: run 'bodycam-evidence verify'", where=f"device {device_id}") from None

    def enroll(self, device_id: str, public_key: str, *, profile: Profile = NRW) -> bytes:
        """Register a camera's key (enroll event) and return its signed enrollment note.

        Enrolling the same key again only returns a fresh note. Raises UsageError if the id is
        enrolled with another key (a replaced camera gets a new id; the old one is revoked).
        """
        check_device_id(device_id)
        DevicePublicKey.parse(public_key)
        with self._command() as tx:
            enrolled_key = self.index.device_key(device_id)
            if enrolled_key is not None and enrolled_key != public_key:
                raise UsageError(f"device {device_id} is enrolled with another key",
                                 "hint: revoke it and enroll the new camera under a new device id")
            if enrolled_key is None:
                self.index.add_device(device_id, public_key, json.dumps(asdict(profile)), tx.time)
                tx.append(ev.Event(ev.ENROLL, tx.time, f"device:{device_id}", device=device_id,
                                   personal={"actor": self.actor},
                                   data={"public_key": public_key, "profile": asdict(profile)}))
        return self.enrollment_note(device_id)

    def _require_device(self, device_id: str) -> DeviceInfo:
        info = self.device(device_id)
        if info is None:
            raise UsageError(f"unknown device {device_id}", "hint: enroll it with 'bodycam-dock enroll'")
        return info

    def assign(self, device_id: str, officer: str) -> None:
        """Assign the camera to an officer (assign event); reaches the camera at the next docking."""
        if not officer.strip():
            raise UsageError("the officer id is empty")
        with self._command() as tx:
            self._require_device(device_id)
            self.index.assign_officer(device_id, officer)
            tx.append(ev.Event(ev.ASSIGN, tx.time, f"device:{device_id}", device=device_id,
                               personal={"actor": self.actor, "officer": officer}))

    def revoke(self, device_id: str, reason: str) -> None:
        """Revoke a lost or retired camera (revoke event): its manifests are quarantined from now on."""
        _require_reason(reason)
        with self._command() as tx:
            self._require_device(device_id)
            self.index.revoke_device(device_id, reason)
            tx.append(ev.Event(ev.REVOKE, tx.time, f"device:{device_id}", device=device_id,
                               personal={"actor": self.actor, "reason": reason}))

    def enrollment_note(self, device_id: str) -> bytes:
        """The current signed enrollment (recipients, profile, officer, verifier key). Raises
        IntegrityError if recipients or the verifier key are not the ones the log recorded: a
        replaced recipients file would make the camera encrypt to an insider's key."""
        self.check_config()
        info = self._require_device(device_id)
        return Enrollment(device_id, info.public_key, self.recipients, info.profile, info.officer,
                          self.verifier_key, format_time(self.now())).sign(self.signer)

    def clock_note(self, device_id: str, at: datetime) -> bytes:
        """The dock's time ``at`` for camera ``device_id``, signed by the store key: the camera
        takes no time that the store did not sign (outbox.ClockStamp)."""
        self._require_device(device_id)
        return ClockStamp(device_id, format_time(at)).sign(self.signer)

    def record_docking(self, device_id: str, at: datetime) -> datetime | None:
        """Log a docking (docking event, and the index row for ``status``); returns the previous
        one. The dock flags manifests older than it, and ingest counts no deadline from earlier."""
        with self._command() as tx:
            self._require_device(device_id)
            previous = self.last_docking(device_id)
            self.index.set_last_docking(device_id, format_time(at))
            tx.append(ev.Event(ev.DOCKING, tx.time, f"device:{device_id}", device=device_id,
                               personal={"actor": self.actor}, data={"at": format_time(at)}))
        return previous

    def last_docking(self, device_id: str) -> datetime | None:
        """The camera's last docking as the log records it, never as the index row alone says:
        the row is a member of bodycam-store's to edit, and it would move deadlines."""
        facts = self._logged_device(device_id)
        at = facts.last_docking if facts is not None else None
        return parse_time(at) if at else None

    def _logged_device(self, device_id: str) -> logstate.DeviceFacts | None:
        """What the log says of a device: its own events (enroll, assign, revoke, docking) and the
        ingest of its highest stored sequence. Read from the events table, whose rows verify
        proves against the signed tree."""
        try:
            bodies = [(idx, ev.load_leaf(bytes(leaf))) for idx, leaf in self.index.event_leaves_about(f"device:{device_id}")]
            row = self.index.last_ingest_of_device(device_id, ev.INGEST)
            if row is not None:
                bodies.append((row[0], ev.load_leaf(bytes(row[1]))))
        except ValueError:
            raise IntegrityError(f"device {device_id}: an event about it in the log is damaged",
                                 "hint: run 'bodycam-evidence verify'", where=f"device {device_id}") from None
        return logstate.derive(sorted(bodies, key=lambda b: b[0]), lambda i: "").devices.get(device_id)
