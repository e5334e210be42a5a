"""Ingest and quarantine: objects copied first, then one transaction per clip (index rows, gap
events, the ingest event, a signed checkpoint); material that fails a check is kept apart."""

from __future__ import annotations

import json
import logging
from typing import BinaryIO

from evidence_store import events as ev
from evidence_store import logstate, retention
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.clip.manifest import EMERGENCY, Manifest, manifest_hash, parse_manifest
from evidence_store.clip.outbox import Receipt
from evidence_store.errors import EvidenceError, IntegrityError
from evidence_store.objects import ObjectRef
from evidence_store.store.base import StoreBase
from evidence_store.store.records import (
    JUSTIFICATION_PENDING,
    QUARANTINED,
    STORED,
    DeviceInfo,
    Holdings,
    IngestResult,
    _sha,
)

log = logging.getLogger(__name__)


class IngestMixin(StoreBase):
    """The store's ingest methods (mixed into evidence_store.store.Store)."""

    def put_object(self, src: BinaryIO, max_bytes: int) -> ObjectRef:
        """Stream ``src`` into objects/ab/<sha256> (see objects.LocalObjects.put; on S3 with the
        short arrival retention, which the ingest extends to the clip's deadline, see locks.py)."""
        return self.objects.put(src, max_bytes)

    def manifest_status(self, manifest_sha256: str) -> str | None:
        """"stored" (also after expiry: the clip was stored), "quarantined", or None."""
        if self.index.manifest_stored(manifest_sha256):
            return STORED
        if self.index.manifest_quarantined(manifest_sha256):
            return QUARANTINED
        return None

    def ingest(self, manifest_bytes: bytes, journal_bytes: bytes, manifest: Manifest,
               segments: dict[str, ObjectRef], *, segment_states: dict[str, str],
               flags: list[str]) -> IngestResult:
        """Index a verified clip whose segments are already objects: clip and segment rows, the
        signed manifest and journal as objects, gap events, the ingest event and a checkpoint,
        all in one transaction.

        Idempotent on the manifest hash (IngestResult(already=True)). Raises IntegrityError if the
        clip id is stored with another manifest, the device is unknown or revoked, the manifest
        signature or a segment reference does not match, or the device chain is broken (the dock
        then quarantines it).
        """
        mhash = manifest_hash(manifest_bytes)
        where = f"clip {manifest.clip_id}"
        # Objects first (outside the transaction: copying is slow; an object without an index row
        # is harmless and the rerun finds it).
        manifest_ref = self.objects.put_bytes(manifest_bytes)
        journal_ref = self.objects.put_bytes(journal_bytes)
        with self._command() as tx:
            row = self.index.clip_manifest(manifest.clip_id)
            if row is not None:
                if row[0] == mhash:
                    # A rerun wrote new versions (with the short arrival retention): lock them too.
                    self._relock_rerun(manifest.clip_id)
                    return IngestResult(manifest.clip_id, mhash, already=True)
                raise IntegrityError(f"clip {manifest.clip_id} is already stored with another manifest",
                                     "hint: the newcomer is quarantined; compare both with 'bodycam-evidence show'",
                                     where=where)
            device = self.device(manifest.device_id)
            if device is None or device.revoked:
                state = "revoked" if device else "not enrolled"
                raise IntegrityError(f"{where}: device {manifest.device_id} is {state}", where=where)
            logged = self._check_device_row(device, where)
            parse_manifest(manifest_bytes, DevicePublicKey.parse(device.public_key))  # defence in depth
            names = [s.name for s in manifest.segments]
            if sorted(segments) != sorted(names):
                raise IntegrityError(f"{where}: segments {sorted(segments)} differ from the manifest's {names}",
                                     where=where)
            for seg in manifest.segments:
                ref = segments[seg.name]
                if (ref.sha256, ref.size) != (seg.sha256, seg.bytes) or not self.objects.exists(ref.sha256):
                    raise IntegrityError(f"{where}: segment {seg.name} is not the stored object the manifest names",
                                         where=f"{where} {seg.name}")
            gaps = self._check_chain(device, manifest, mhash, where)
            for missing in gaps:
                tx.append(ev.Event(ev.GAP, tx.time, f"device:{device.device_id}", device=device.device_id,
                                   personal={"actor": self.actor},
                                   data={"sequence": missing, "cause": "missing from the device chain"}))
            claimed = parse_time(manifest.started_at, "manifest started_at")
            # The deadline counts from the start, but never from later than now (retention.basis)
            # and never from a start the chain proves impossible (retention.earliest_start): the
            # corrected start is what the index and the leaf hold, the claim stays in the leaf.
            docked = parse_time(logged.last_docking) if logged.last_docking else None
            started = retention.earliest_start(claimed, docked, tx.now)
            due = retention.deadline(retention.basis(started, tx.now), self.policy)
            late = tx.now > due
            # Before the commit (see locks.py): a stored clip's objects are never unlocked.
            self.lock_objects([manifest_ref.sha256, journal_ref.sha256, *(r.sha256 for r in segments.values())], due)
            all_flags = sorted(set(flags) | ({"late"} if late else set())
                               | ({retention.FLAG_START_CORRECTED} if started != claimed else set()))
            officer = manifest.officer or device.officer
            self.index.add_clip(
                clip_id=manifest.clip_id, device_id=manifest.device_id, sequence=manifest.sequence, officer=officer,
                trigger=manifest.trigger, started_at=format_time(started), ended_at=manifest.ended_at,
                homes=int(manifest.homes), manifest_sha256=mhash, journal_sha256=journal_ref.sha256,
                ingested_at=tx.time, flags=json.dumps(all_flags), state=STORED,
                justification=JUSTIFICATION_PENDING if manifest.trigger == EMERGENCY else None, late=int(late))
            self.index.add_segments(
                [(manifest.clip_id, s.name, s.bytes, s.sha256, s.plaintext_bytes, s.plaintext_sha256,
                  s.duration_ms, int(s.cut), segment_states.get(s.name, "cut" if s.cut else "whole"))
                 for s in manifest.segments])
            tx.index_object(manifest_ref, "manifest")
            tx.index_object(journal_ref, "journal")
            for seg in manifest.segments:
                tx.index_object(segments[seg.name], "segment")
            self.index.advance_device_chain(device.device_id, manifest.sequence, mhash)
            personal = {"actor": self.actor}
            if officer:
                personal["officer"] = officer
            appended = tx.append(ev.Event(
                ev.INGEST, tx.time, manifest.clip_id, clip=manifest.clip_id, device=device.device_id,
                personal=personal,
                data={"sequence": manifest.sequence, "manifest": mhash, "journal": journal_ref.sha256,
                      "trigger": manifest.trigger, "started_at": format_time(started),
                      **({"claimed_started_at": format_time(claimed)} if started != claimed else {}),
                      "objects": [{"name": s.name, "sha256": s.sha256, "bytes": s.bytes,
                                   "state": segment_states.get(s.name, "cut" if s.cut else "whole")}
                                  for s in manifest.segments],
                      "flags": all_flags}))
        if started != claimed:
            log.warning("clip %s (device %s, sequence %d) claims to start at %s, before the camera's previous "
                        "docking at %s: its deadline counts from the docking", manifest.clip_id, manifest.device_id,
                        manifest.sequence, format_time(claimed), format_time(started))
        log.info("ingested clip %s (device %s, sequence %d)%s", manifest.clip_id, manifest.device_id,
                 manifest.sequence, " late" if late else "")
        return IngestResult(manifest.clip_id, mhash, already=False, event_index=appended.index, gaps=gaps, late=late)

    def _check_device_row(self, device: DeviceInfo, where: str) -> logstate.DeviceFacts:
        """The device row's key, revocation, chain position and last docking, against its events
        in the log: an edited row must not let a revoked camera, another key or a replayed
        sequence in, nor move a deadline. Returns what the log says."""
        facts = self._logged_device(device.device_id)
        row_docking = format_time(device.last_docking) if device.last_docking else None
        if facts is None or (facts.public_key, facts.revoked, facts.last_sequence, facts.last_manifest) != (
                device.public_key, device.revoked, device.last_sequence, device.last_manifest_sha256) \
                or not facts.docking_row_agrees(row_docking):
            raise IntegrityError(f"{where}: the index row of device {device.device_id} differs from its events "
                                 "in the log", "hint: run 'bodycam-evidence verify'", where=where)
        return facts

    def _check_chain(self, device: DeviceInfo, manifest: Manifest, mhash: str, where: str) -> list[int]:
        """The per-device chain rule of the contract; returns the missing sequence numbers."""
        last = device.last_sequence
        seq = manifest.sequence
        if last is None:
            if seq == 0 and manifest.previous_manifest is not None:
                raise IntegrityError(f"{where}: sequence 0 names a previous manifest", where=where)
            return list(range(0, seq))
        if seq <= last:
            raise IntegrityError(f"{where}: out-of-order or replayed sequence {seq} (last stored {last})",
                                 where=where)
        if seq == last + 1 and manifest.previous_manifest != device.last_manifest_sha256:
            raise IntegrityError(f"{where}: previous_manifest does not name the device's last stored manifest",
                                 where=where)
        return list(range(last + 1, seq))

    def quarantine(self, *, reason: str, device_id: str | None, clip_id: str | None,
                   manifest_bytes: bytes | None, journal_bytes: bytes | None,
                   objects: dict[str, ObjectRef]) -> str:
        """Keep rejected material under its content hashes with the reason (quarantine event).
        Returns the quarantine id; idempotent on (manifest hash, reason, objects)."""
        mref = self.objects.put_bytes(manifest_bytes) if manifest_bytes is not None else None
        jref = self.objects.put_bytes(journal_bytes) if journal_bytes is not None else None
        # The clip id and camera belong to the key: the same bytes found in two folders are two
        # findings, and each folder's holdings (see holdings) must name them.
        key = "\n".join([clip_id or "", device_id or "", mref.sha256 if mref else "", reason,
                         *sorted(f"{n}={r.sha256}" for n, r in objects.items())])
        qid = "q-" + _sha(key.encode())[:24]
        started_at = None
        if manifest_bytes is not None:
            try:
                started_at = parse_time(parse_manifest(manifest_bytes, None).started_at)
            except (EvidenceError, ValueError):
                started_at = None
        with self._command() as tx:
            if self.index.quarantine_exists(qid):
                self._relock_rerun(qid)
                return qid
            # Untrusted material: its claimed start may be a lie, so never later than its arrival.
            start = min(started_at, tx.now) if started_at else tx.now
            due = retention.deadline(start, self.policy)
            late = tx.now > due
            # Quarantined material follows the same deadline, and is locked before the commit too.
            self.lock_objects([r.sha256 for r in (mref, jref, *objects.values()) if r is not None], due)
            self.index.add_quarantine(
                qid=qid, clip_id=clip_id, device_id=device_id, manifest_sha256=mref.sha256 if mref else None,
                journal_sha256=jref.sha256 if jref else None, reason=reason, at=tx.time,
                started_at=format_time(start), state=QUARANTINED, late=int(late))
            self.index.add_quarantine_objects([(qid, n, r.sha256, r.size) for n, r in sorted(objects.items())])
            for ref, kind in ([(mref, "manifest")] if mref else []) + ([(jref, "journal")] if jref else []):
                tx.index_object(ref, kind)
            for ref in objects.values():
                tx.index_object(ref, "quarantine")
            tx.append(ev.Event(
                ev.QUARANTINE, tx.time, qid, device=device_id, personal={"actor": self.actor},
                data={"quarantine": qid, "claimed_clip": clip_id, "cause": reason, "started_at": format_time(start),
                      "manifest": mref.sha256 if mref else None, "journal": jref.sha256 if jref else None,
                      "objects": [{"name": n, "sha256": r.sha256, "bytes": r.size} for n, r in sorted(objects.items())]}))
        log.warning("quarantined %s (clip %s, device %s): %s", qid, clip_id, device_id, reason)
        return qid

    def _relock_rerun(self, item_id: str) -> None:
        """Lock the versions a rerun of an ingest or quarantine added to a stored item: its
        retention, and its legal hold if it is held (the dock may lack that right, see the
        README's permission model: then verify names the version, and an officer's
        'hold' or migrate's apply_lock sets it)."""
        hashes, deadline, held = self.item_objects(item_id)
        self.lock_objects(hashes, deadline)
        if held:
            try:
                self.lock_objects(hashes, deadline, held=True)
            except EvidenceError as exc:
                log.warning("%s is held, but its objects' legal hold could not be set again: %s", item_id, exc)

    def holdings(self, clip_id: str, device_id: str) -> Holdings:
        """Every object recorded for clip ``clip_id`` of camera ``device_id``: the stored clip's
        manifest, journal and segments, and each quarantine recorded under that clip id from that
        camera (its manifest, journal and kept files). A copy of another clip's files in this
        folder matches nothing here, so it is never taken for stored."""
        hashes: set[str] = set()
        row = self.index.clip_of_device(clip_id, device_id)
        manifest_sha = sequence = None
        if row is not None:
            manifest_sha, journal_sha, sequence = row
            hashes.update((manifest_sha, journal_sha))
            hashes.update(self.index.segment_hashes(clip_id))
        for qid, mq, jq in self.index.quarantines_of(clip_id, device_id):
            hashes.update(h for h in (mq, jq) if h)
            hashes.update(self.index.quarantine_object_hashes(qid))
        return Holdings(manifest_sha, sequence, frozenset(hashes))

    def sign_receipt(self, receipt: Receipt) -> bytes:
        """The receipt note signed by the store key."""
        return receipt.sign(self.signer)
