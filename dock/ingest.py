"""Ingest one docked camera: verify every sealed clip, store it durably, then receipt and clear it.

The order per clip never changes, because it is what makes a crash at any instant harmless:

    1. read    manifest (capped, no links), parse it untrusted for its sequence number (scan.py)
    2. check   clip id and device id, enrolled and not revoked, manifest signature by the enrolled
               key, journal signatures, sequence not at or below the device's last stored one
    3. copy    each segment named in the manifest into the store (temp, fsync, rename, fsync dir),
               hashing it and checking it against the journal in the same single read; compare
               size/mtime/inode before and after so a file that changed is not trusted
    4. commit  store.ingest: clip, segments, gap events, ingest event, in ONE transaction
    5. prove   every file in the clip folder is held by the store for exactly this clip of this
               camera (store.holdings); anything not held is quarantined first
    6. receipt store.sign_receipt, written onto the camera atomically (the camera deletes
               receipted folders too, so only after the proof)
    7. clear   delete exactly the proven entries, the manifest last
    8. expire  after a docking that brought new material, the clips that arrived past their
               deadline (a camera left undocked for two weeks) are deleted at once, as the law
               requires, not up to an hour later by the timer

A crash before 4 leaves at most unreferenced objects (content-addressed, so a rerun reuses them);
a crash between 4 and 7 leaves a stored clip on the camera, which the rerun recognises (the store
holds its manifest under that clip id and camera) and only proves, receipts and clears; a folder
whose every file a quarantine of that clip already holds is likewise only receipted, so a kill at
any point of a quarantine or a clearing never records the same material twice. A clip that fails a check
in 2 or 3 is quarantined (its bytes kept under their content hash with the reason), then
receipted as quarantined and cleared. An I/O error (a camera unplugged mid-copy) is never taken
for a failed check: such a clip is left on the camera for the next docking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dock._copy import copy_and_check
from dock.errors import DockError, NotEnrolledError
from dock.lock import DeviceLocks
from dock.scan import Candidate, outbox_present, read_device_hint, scan_outbox
from evidence_store.clip.clock import Clock, SystemClock
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.fsutil import UnsafeFileError, atomic_write, fsync_dir, open_regular, read_regular
from evidence_store.clip.ids import SEGMENT_RE, format_time, parse_time
from evidence_store.clip.journal import CUT, JOURNAL_FILE, MAX_JOURNAL_BYTES, TAMPERED, WHOLE, Journal, parse_journal
from evidence_store.clip.manifest import MANIFEST_FILE, Manifest, SegmentRecord, manifest_hash, parse_manifest
from evidence_store.clip.outbox import QUARANTINED, STORED, DeviceRecord, Outbox, Receipt
from evidence_store.errors import EvidenceError, IntegrityError
from evidence_store.objects import LocalObjects, ObjectTooLarge

if TYPE_CHECKING:  # the store is heavy (SQLite, the log); the caller's open_store loads it
    from evidence_store.store import Store

log = logging.getLogger(__name__)

# Outcomes of one clip.
OUT_STORED = "stored"  # verified, stored, receipted, cleared
OUT_ALREADY = "already-stored"  # stored by an earlier run: only receipted and cleared
OUT_QUARANTINED = "quarantined"  # failed a check: kept in quarantine, receipted, cleared
OUT_SKIPPED = "skipped"  # I/O failure: left on the camera for the next docking

# Flags recorded with the ingest event (the store keeps them; reviewers see them).
FLAG_BEFORE_DOCKING = "dated-before-last-docking"
FLAG_FUTURE = "dated-in-future"
FLAG_CUT = "cut"
FLAG_EXTRA_FILES = "extra-files"

FUTURE_TOLERANCE = timedelta(minutes=5)  # camera clocks are set at each docking; minutes of drift are normal
QUARANTINE_MAX_FILE = 8 * 2**30  # a quarantined file larger than any real segment is named, not kept
FaultHook = Callable[[str, "str | None"], None]
#: Segments copied side by side into a store whose objects are remote (see Ingester._copies).
REMOTE_COPIES = 2


class _Skip(Exception):
    """Leave this clip on the camera (I/O failure, a file changed under us)."""


class _Quarantine(Exception):
    def __init__(self, reason: str, *, journal_bytes: bytes | None = None, objects: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.journal_bytes = journal_bytes
        self.objects = objects


@dataclass
class ClipResult:
    clip_id: str
    outcome: str
    sequence: int | None = None
    manifest_sha256: str | None = None
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)
    bytes: int = 0
    cleared: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (OUT_STORED, OUT_ALREADY) and self.cleared


@dataclass
class IngestReport:
    outbox: str
    device_id: str | None = None
    clips: list[ClipResult] = field(default_factory=list)
    unsealed: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # deleted at once by the post-docking expiry run
    notes: list[str] = field(default_factory=list)  # warnings that do not stop the docking
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def ok(self) -> bool:
        """True only if every clip on the camera was stored and cleared and nothing was left."""
        return not self.errors and not self.unsealed and not self.rejected and all(c.ok for c in self.clips)

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.clips if c.outcome == outcome)

    def to_json(self) -> dict:
        out = asdict(self)
        out["rejected"] = [{"name": n, "reason": r} for n, r in self.rejected]
        out["ok"] = self.ok
        out["counts"] = {o: self.count(o) for o in (OUT_STORED, OUT_ALREADY, OUT_QUARANTINED, OUT_SKIPPED)}
        return out

    def summary(self) -> str:
        parts = [f"{self.count(o)} {o}" for o in (OUT_STORED, OUT_ALREADY, OUT_QUARANTINED, OUT_SKIPPED) if self.count(o)]
        if self.unsealed:
            parts.append(f"{len(self.unsealed)} unsealed")
        if self.rejected:
            parts.append(f"{len(self.rejected)} refused")
        if self.errors:
            parts.append(f"{len(self.errors)} error(s)")
        if self.expired:
            parts.append(f"{len(self.expired)} deleted at once (past their deadline)")
        return f"camera {self.device_id or '?'} at {self.outbox}: " + (", ".join(parts) or "nothing to ingest")


class _Unplugged(Exception):
    """The outbox vanished: stop this docking. ``result`` is the clip being worked on, if known."""

    def __init__(self, message: str, result: ClipResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass
class _Docking:
    store: Store
    outbox: Outbox
    device_id: str
    previous_docking: datetime | None
    report: IngestReport
    total_bytes: int = 0
    done_bytes: int = 0
    # SHA-256 of camera files read whole in this docking, by (device, inode, size, mtime, ctime):
    # the clearing proves a copied segment is held without reading it a second time.
    seen: dict = field(default_factory=dict)
    progress_lock: threading.Lock = field(default_factory=threading.Lock)


class Ingester:
    """Ingests outboxes into the store that ``open_store()`` opens (once per ingest: an SQLite
    connection belongs to one thread). Thread-safe: cameras are ingested in parallel, each under
    its own lock (``locks``). ``fault(step, clip_id)`` is called at every step boundary (tests
    inject crashes there); ``progress(done, total, label)`` reports copied bytes."""

    def __init__(self, open_store: Callable[[], Store], *, locks: DeviceLocks, clock: Clock | None = None,
                 fault: FaultHook | None = None, progress: Callable[[int, int, str], None] | None = None,
                 state_dir: str | os.PathLike | None = None):
        self.open_store = open_store
        self.locks = locks
        self.clock = clock or SystemClock()
        self._fault = fault or (lambda step, clip_id: None)
        self.progress = progress
        self.state_dir = Path(state_dir) if state_dir else None

    # -- one camera ---------------------------------------------------------------------------

    def ingest(self, outbox_path: str | os.PathLike, *, expect_device: str | None = None) -> IngestReport:
        """Ingest every sealed clip of the outbox at ``outbox_path``.

        ``expect_device`` is the serial a docked partition announced; it names the camera
        (device.json is an unsigned hint, see _identify).
        Returns the report (``report.ok`` tells whether everything was stored and cleared).
        Raises NotEnrolledError for a camera the store does not know (nothing is touched) and
        DockError when the folder is not an outbox.
        """
        store = self.open_store()
        try:
            return self._ingest(store, Outbox(outbox_path), expect_device)
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()

    def _ingest(self, store, outbox: Outbox, expect_device: str | None) -> IngestReport:
        outbox_path = outbox.root
        report = IngestReport(outbox=str(outbox_path), started_at=format_time(self.clock.now()))
        hint, why = read_device_hint(outbox)
        device_id = self._identify(store, outbox, hint, why, expect_device, report)
        report.device_id = device_id
        info = store.device(device_id)
        if info is None:
            raise NotEnrolledError(f"camera {device_id} is not enrolled in this store; its clips were not touched",
                                   f"hint: bodycam-dock --store DIR enroll {outbox_path} --device-id {device_id}")
        if hint is not None and hint.device_id == device_id and info.public_key != hint.public_key:
            # device.json is only informational: verification always uses the enrolled key.
            log.warning("camera %s: device.json carries a public key other than the enrolled one; "
                        "the enrolled key is used", device_id)
        waited = []

        def waiting(holder: str) -> None:
            waited.append(holder)
            log.warning("camera %s: another dock is docking it (%s); waiting until it has finished", device_id, holder)

        # The dock's own lock orders its threads and the docks of this machine; the store's orders
        # every dock of the store (another machine shown the same camera would otherwise verify
        # the same clips at the same time, take them for replays and delete under the other).
        with self.locks.hold(device_id), store.hold_camera(device_id, waiting):
            if waited:
                log.info("camera %s: the other dock has finished; docking what it left", device_id)
            info = store.device(device_id)  # re-read under the lock
            docking = _Docking(store, outbox, device_id, store.last_docking(device_id), report)
            self._run(docking, revoked=info.revoked)
        if report.count(OUT_STORED) or report.count(OUT_QUARANTINED):
            self._expire(store, report)
        report.finished_at = format_time(self.clock.now())
        self._save_report(report)
        log.log(logging.INFO if report.ok else logging.WARNING, "%s", report.summary())
        return report

    def _identify(self, store, outbox: Outbox, hint: DeviceRecord | None, why: str | None,
                  expect_device: str | None, report: IngestReport) -> str:
        """Which camera this is, from what cannot be planted: the partition's USB serial, else
        the enrolled key that signs its clips. device.json is unsigned, so anyone with the cable
        can replace it; it decides only when nothing signed says anything (an empty outbox)."""
        if why:
            log.warning("%s: %s (ignored: the camera is known by its serial or its signed clips)", outbox.root, why)
        signed = _signed_devices(store, scan_outbox(outbox))
        if expect_device is not None:
            device_id = expect_device
            source = "the partition's serial"
            if signed and device_id not in signed:
                others = ", ".join(sorted(signed))
                raise DockError(f"{outbox.root}: the partition's serial is {device_id!r} but its clips are signed by {others}, "
                                "none by that camera; nothing was touched",
                                "hint: a partition that lies about its camera is not ingested; check the device")
        elif (noted := _enrolled_by_note(store, outbox)) is not None:
            device_id, source = noted, "the store-signed enrollment on it"
        elif signed:
            hinted = hint.device_id if hint is not None else None
            device_id = max(signed, key=lambda d: (signed[d], d == hinted, d))
            source = "the signatures of its clips"
        elif hint is not None:
            return hint.device_id
        else:
            raise DockError(f"{outbox.root}: cannot tell which camera this is ({why}) and nothing on it is signed "
                            "for an enrolled camera; nothing was touched",
                            "hint: is this a camera's evidence partition? dock it by USB so its serial names it")
        if hint is not None and hint.device_id != device_id:
            note = f"device.json names {hint.device_id!r}, but {source} say(s) {device_id!r}; device.json is ignored"
            report.notes.append(note)
            log.warning("%s: %s", outbox.root, note)
        return device_id

    def _run(self, dk: _Docking, *, revoked: bool) -> None:
        report = dk.report
        scan = scan_outbox(dk.outbox)
        # The time first: the camera adds the time it has spent docked (its own monotonic clock)
        # to this stamp, so a stamp written after a long ingest would set its clock fast. Signed
        # by the store key and bound to this camera: the camera takes no other time.
        try:
            dk.outbox.write_clock(dk.store.clock_note(dk.device_id, self.clock.now()))
            self._fault("clock-written", None)
        except (OSError, EvidenceError) as exc:
            report.errors.append(f"cannot write the clock onto the camera: {getattr(exc, 'strerror', None) or exc}")
            log.error("camera %s: %s", dk.device_id, report.errors[-1])
        for clip_id in list(scan.unsealed):
            # A clearing cut off after the manifest went: the clip is stored and receipted, only
            # its empty folder is left. Finish the job instead of reporting it as unsealed.
            if dk.outbox.is_empty_clip(clip_id) and clip_id in dk.outbox.receipt_ids():
                dk.outbox.delete_clip(clip_id)
                scan.unsealed.remove(clip_id)
                log.info("clip %s: removed the empty folder an interrupted clearing left", clip_id)
        report.unsealed = list(scan.unsealed)
        report.rejected = list(scan.rejected)
        dk.total_bytes = scan.total_bytes
        self._fault("scanned", None)
        waiting_for: ClipResult | None = None
        scanned_bytes = 0  # what the scan counted for the clips handled so far
        for index, cand in enumerate(scan.candidates):
            scanned_bytes += sum(s.bytes for s in cand.manifest.segments) if cand.manifest else 0
            if waiting_for is not None and cand.manifest is not None:
                # A clip that could not be read this time must not become a gap: storing the
                # clips after it would move the device's chain past it, and at the next docking
                # the genuine clip would look like a replay. Leave the rest for the next docking.
                reason = f"waits for clip {waiting_for.clip_id} (sequence {waiting_for.sequence}), which could not be read"
                report.clips.append(ClipResult(cand.clip_id, OUT_SKIPPED, sequence=cand.manifest.sequence, reason=reason))
                log.warning("clip %s: %s; left on the camera for the next docking", cand.clip_id, reason)
                continue
            try:
                result = self._clip(dk, cand)
            except _Unplugged as exc:
                report.errors.append(str(exc))
                log.error("camera %s: %s; %d clip(s) left for the next docking", dk.device_id, exc, len(scan.candidates) - index)
                if exc.result is not None:
                    report.clips.append(exc.result)
                for rest in scan.candidates[index + (exc.result is not None):]:
                    report.clips.append(ClipResult(rest.clip_id, OUT_SKIPPED, reason=str(exc)))
                return
            report.clips.append(result)
            if result.outcome == OUT_SKIPPED and result.sequence is not None:
                waiting_for = result
            # Clips already stored, quarantined or skipped copy fewer bytes than the scan counted:
            # catch up, so the progress bar ends at 100 %.
            dk.done_bytes = max(dk.done_bytes, scanned_bytes)
            if self.progress and dk.total_bytes:
                self.progress(dk.done_bytes, dk.total_bytes, cand.clip_id[:13])
        self._finish(dk, revoked=revoked)

    def _finish(self, dk: _Docking, *, revoked: bool) -> None:
        """Each docking gives the camera the enrollment note (the time went first), and is recorded."""
        now = self.clock.now()
        try:
            if revoked:
                log.warning("camera %s is revoked: no enrollment note written", dk.device_id)
            else:
                dk.outbox.write_enrollment(dk.store.enrollment_note(dk.device_id))
                self._fault("enrollment-written", None)
        except OSError as exc:
            dk.report.errors.append(f"cannot write the enrollment onto the camera: {exc.strerror or exc}")
            log.error("camera %s: %s", dk.device_id, dk.report.errors[-1])
        except EvidenceError as exc:  # recipients or verifier key differ from the logged ones
            dk.report.errors.append(f"enrollment not written: {exc}")
            log.error("camera %s: %s", dk.device_id, dk.report.errors[-1])
        # The previous docking dates the "recorded before the last docking" flag, and the store
        # counts a clip's deadline from no earlier than it (retention.earliest_start): so it is
        # recorded only when every clip begun before it is in the store. A docking that left
        # clips behind (skipped, or still unsealed: a recording in progress in a watched folder)
        # is not recorded, so a rerun flags exactly as the first run would have.
        if (not dk.report.errors and not dk.report.unsealed
                and all(c.outcome != OUT_SKIPPED for c in dk.report.clips)):
            dk.store.record_docking(dk.device_id, now)
            self._fault("docking-recorded", None)

    def _expire(self, store, report: IngestReport) -> None:
        """Step 7: delete late arrivals now, so that they never wait for the hourly timer.

        It runs after the receipts, so a failure here never leaves a stored clip on the camera;
        the timer is the backstop if it fails."""
        try:
            result = store.expire(late_only=True)
        except (EvidenceError, OSError) as exc:
            log.error("camera %s: expiry after docking failed (the hourly timer will retry): %s", report.device_id, exc)
            return
        for fault in result.faults:
            log.error("camera %s: expiry kept an item whose index disagrees with the log: %s", report.device_id, fault)
        mine = {c.clip_id for c in report.clips}
        for decision in result.deleted:
            # The run may also catch another camera's late arrival docked at the same moment.
            if decision.item_id in mine:
                report.expired.append(decision.item_id)
            log.info("%s deleted at once: %s", decision.item_id, decision.reason)

    # -- one clip -----------------------------------------------------------------------------

    def _clip(self, dk: _Docking, cand: Candidate) -> ClipResult:
        res = ClipResult(cand.clip_id, OUT_SKIPPED, sequence=cand.manifest.sequence if cand.manifest else None)
        if cand.manifest_bytes is not None:
            res.manifest_sha256 = manifest_hash(cand.manifest_bytes)
        self._fault("clip-start", cand.clip_id)
        try:
            try:
                if cand.transient:
                    raise _Skip(cand.transient)
                # Known to the store under exactly this clip id from exactly this camera (a
                # rerun after a crash, or a clearing cut off): finish the job, record nothing twice.
                if self._settle_known(dk, cand, res):
                    return res
                if cand.problem:
                    raise _Quarantine(cand.problem)
                self._verify_and_store(dk, cand, res)
                res.outcome = OUT_STORED
                log.info("clip %s (sequence %d): stored%s", cand.clip_id, res.sequence,
                         f" [{', '.join(res.flags)}]" if res.flags else "")
                self._settle(dk, cand, res, STORED)
            except _Quarantine as q:
                self._quarantine(dk, cand, res, q)
        except _Skip as exc:
            self._skip(dk, res, str(exc))
        except OSError as exc:
            self._skip(dk, res, f"I/O error: {exc.strerror or exc}")
        except EvidenceError as exc:
            # The store refused (full disk, locked database, ...): the clip stays on the camera.
            self._skip(dk, res, f"store: {exc}")
        except Exception as exc:  # noqa: BLE001
            # A bug of ours must not stop an unattended dock or cost a recording: the clip stays
            # on the camera (never quarantined on a guess), the traceback goes to the journal.
            log.exception("clip %s: unexpected error", res.clip_id)
            self._skip(dk, res, f"internal error ({type(exc).__name__}: {exc}); please report it")
        return res

    def _skip(self, dk: _Docking, res: ClipResult, reason: str) -> None:
        if res.outcome in (OUT_STORED, OUT_ALREADY, OUT_QUARANTINED):
            # Already committed in the store; only the receipt or the clearing failed. The next
            # docking recognises the manifest hash and finishes the job.
            res.reason = f"not cleared: {reason}"
            log.error("clip %s: %s but %s; the next docking will finish it", res.clip_id, res.outcome, res.reason)
            if not outbox_present(dk.outbox):
                raise _Unplugged(f"the camera went away ({reason})", res)
            return
        res.outcome = OUT_SKIPPED
        res.reason = reason
        log.error("clip %s: %s; left on the camera for the next docking", res.clip_id, reason)
        if not outbox_present(dk.outbox):
            raise _Unplugged(f"the camera went away ({reason})", res)

    def _verify_and_store(self, dk: _Docking, cand: Candidate, res: ClipResult) -> None:
        manifest = cand.manifest
        assert manifest is not None and cand.manifest_bytes is not None
        # Step 2: who says this clip is what.
        if manifest.clip_id != cand.clip_id:
            raise _Quarantine(f"manifest names clip {manifest.clip_id} but lies in folder {cand.clip_id}")
        if manifest.device_id != dk.device_id:
            raise _Quarantine(f"manifest of device {manifest.device_id} found on camera {dk.device_id}")
        info = dk.store.device(dk.device_id)  # fresh: last_sequence moves as clips are stored
        if info is None or info.revoked:
            raise _Quarantine(f"camera {dk.device_id} is revoked")
        try:
            manifest = parse_manifest(cand.manifest_bytes, DevicePublicKey.parse(info.public_key))
        except EvidenceError as exc:
            raise _Quarantine(f"manifest signature: {exc}") from None
        journal_bytes, journal = self._journal(cand, DevicePublicKey.parse(info.public_key))
        if info.last_sequence is not None and manifest.sequence <= info.last_sequence:
            raise _Quarantine(f"out-of-order or replayed sequence {manifest.sequence} (last stored {info.last_sequence})",
                              journal_bytes=journal_bytes)
        unlisted = self._unlisted_names(cand, manifest)
        res.extra_files = [_shown(n) for n in unlisted]
        if res.extra_files:
            log.warning("clip %s: files not named in the manifest are kept in quarantine: %s", cand.clip_id,
                        ", ".join(res.extra_files))
        self._fault("checked", cand.clip_id)
        # Step 3: copy, hash and journal-check in one read.
        objects: dict = {}
        states: dict[str, str] = {}
        problems: list[str] = []
        for seg, (ref, state, problem) in zip(manifest.segments, self._copies(dk, cand, manifest.segments, journal)):
            if ref is not None:
                objects[seg.name] = ref
            if problem:
                problems.append(problem)
            else:
                states[seg.name] = state
            self._fault("segment-copied", cand.clip_id)
            res.bytes += ref.size if ref is not None else 0
        if problems:
            raise _Quarantine("; ".join(problems), journal_bytes=journal_bytes, objects=objects)
        res.flags = self._flags(dk, manifest, states, res.extra_files)
        if unlisted:
            self._keep_extras(dk, cand, unlisted)
        # Step 4: one transaction in the store (gap events included).
        try:
            dk.store.ingest(cand.manifest_bytes, journal_bytes, manifest, objects, segment_states=states, flags=res.flags)
        except IntegrityError as exc:
            # For example the clip id is already stored with another manifest: the newcomer is
            # quarantined and can never block the genuine clip.
            raise _Quarantine(f"store refused: {exc}", journal_bytes=journal_bytes, objects=objects) from None
        self._fault("ingested", cand.clip_id)

    def _copies(self, dk: _Docking, cand: Candidate, segments: list[SegmentRecord], journal: Journal) -> Iterator[tuple]:
        """The result of _copy_segment for each segment, in the manifest's order. Into a store
        whose objects are remote (S3) up to REMOTE_COPIES run side by side, so that reading and
        hashing one segment overlaps the upload of another (measured: 0.8x of boto3's upload_file
        with one at a time, 0.96x with two; bench_docks); into a folder one at a time (one disk:
        nothing to overlap), each handed on as soon as it is done, so a crash finds the same steps.
        The commit waits for all of them either way."""
        workers = 1 if isinstance(dk.store.objects, LocalObjects) else min(REMOTE_COPIES, len(segments))
        if workers <= 1:
            for seg in segments:
                yield self._copy_segment(dk, cand, seg, journal)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dock-copy") as pool:
            futures = [pool.submit(self._copy_segment, dk, cand, seg, journal) for seg in segments]
            try:
                for future in futures:
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()  # a failed copy ends the clip: the ones not yet begun are not

    def _journal(self, cand: Candidate, key: DevicePublicKey) -> tuple[bytes, Journal]:
        path = cand.path / JOURNAL_FILE
        try:
            data = read_regular(path, MAX_JOURNAL_BYTES)
        except UnsafeFileError as exc:
            raise _Quarantine(f"journal: {_rel(exc, cand.path)}") from None
        except FileNotFoundError:
            if cand.path.is_dir():
                raise _Quarantine("journal: missing") from None
            raise
        try:
            journal = parse_journal(data, key, cand.clip_id)
        except EvidenceError as exc:
            raise _Quarantine(f"journal: {exc}", journal_bytes=data) from None
        if journal.torn_tail:
            log.warning("clip %s: the journal's last line was torn by a crash (ignored)", cand.clip_id)
        return data, journal

    def _copy_segment(self, dk: _Docking, cand: Candidate, seg: SegmentRecord, journal: Journal):
        """Returns (ObjectRef or None, segment state, problem or None); raises _Skip or OSError."""
        path = cand.path / seg.name
        try:
            fd = open_regular(path)
        except UnsafeFileError as exc:
            return None, None, f"{seg.name}: {_rel(exc, cand.path)}"
        except FileNotFoundError:
            if cand.path.is_dir() and outbox_present(dk.outbox):
                return None, None, f"{seg.name}: missing"
            raise
        try:
            before = os.fstat(fd)
            if before.st_size != seg.bytes:
                # Keep what is there for the quarantine (one plain read), but never more than the
                # file claimed when opened and never a monster.
                ref = None
                if before.st_size <= QUARANTINE_MAX_FILE:
                    ref = self._put_plain(dk, fd, before.st_size)
                more = "larger" if before.st_size > seg.bytes else "smaller"
                return ref, None, f"{seg.name}: {before.st_size} bytes, {more} than the {seg.bytes} the manifest says"
            label = f"{cand.clip_id[:13]} {seg.name}"

            def on_bytes(n: int) -> None:
                with dk.progress_lock:  # copies may run side by side (_copies)
                    dk.done_bytes += n
                    if self.progress:
                        self.progress(dk.done_bytes, dk.total_bytes, label)

            try:
                result = copy_and_check(dk.store.put_object, fd, seg.name, journal.entries, seg.bytes, on_bytes)
            except ObjectTooLarge as exc:
                # The size was checked before the copy: more bytes arriving means the file grew.
                raise _Skip(f"{seg.name}: changed during ingest ({exc})") from None
            after = os.fstat(fd)
            try:
                now = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                raise _Skip(f"{seg.name}: vanished during ingest") from None
            if _identity(before) != _identity(after) or _identity(before) != _identity(now) or result.ref.size != before.st_size:
                raise _Skip(f"{seg.name}: changed during ingest (size, mtime or inode differ before and after the copy)")
            dk.seen[_identity(now)] = result.ref.sha256
        finally:
            os.close(fd)
        ref = result.ref
        if ref.size != seg.bytes or ref.sha256 != seg.sha256:
            return ref, None, f"{seg.name}: SHA-256 differs from the manifest (file altered)"
        check = result.check
        if check is None or check.status == TAMPERED:
            return ref, None, f"{seg.name}: journal check failed: {check.detail if check else 'no result'}"
        # The manifest is signed after the journal, so the two must tell the same story: a journal
        # truncated or emptied on the camera would otherwise turn a sealed segment into a "cut"
        # one in the store, hiding where the recording really ended.
        expected = CUT if seg.cut else WHOLE
        if check.status != expected or check.committed != seg.committed_bytes:
            return ref, None, (f"{seg.name}: the journal commits {check.committed} bytes ({check.status}) but the "
                               f"manifest seals {seg.committed_bytes} ({expected}): journal altered")
        if not seg.cut and (check.plaintext_bytes, check.plaintext_sha256) != (seg.plaintext_bytes, seg.plaintext_sha256):
            return ref, None, f"{seg.name}: the journal's plaintext hash differs from the manifest's: journal altered"
        if check.status == CUT:
            log.info("clip %s: %s", cand.clip_id, check.detail)
        return ref, check.status, None

    def _keep_extras(self, dk: _Docking, cand: Candidate, names: list[str]) -> None:
        """Files in the clip folder that the manifest does not name are deleted with the folder
        after the receipt, so keep them first: quarantined beside the clip (same deadline), as a
        firmware or recovery bug could have left a real segment out of the manifest. Before the
        ingest commit, so that a crash in between cannot lose them (quarantine is idempotent)."""
        objects = self._keep_files(dk, cand, names)
        if objects:
            dk.store.quarantine(reason=f"files beside clip {cand.clip_id} that its manifest does not name",
                                device_id=dk.device_id, clip_id=cand.clip_id, manifest_bytes=cand.manifest_bytes,
                                journal_bytes=None, objects=objects)

    def _keep_files(self, dk: _Docking, cand: Candidate, names: list[str]) -> dict:
        """Store the regular files ``names`` of the clip folder as objects (for a quarantine)."""
        objects = {}
        for name in names:
            try:
                fd = open_regular(cand.path / name, max_bytes=QUARANTINE_MAX_FILE)
            except UnsafeFileError:
                continue  # links, fifos, devices, monsters: named in the reason or flag, never read
            try:
                ref = self._put_plain(dk, fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            if ref is not None:
                objects[_shown(name)] = ref
        return objects

    def _put_plain(self, dk: _Docking, fd: int, size: int):
        with os.fdopen(os.dup(fd), "rb", buffering=0) as src:
            try:
                return dk.store.put_object(src, size)
            except ObjectTooLarge:
                return None  # grew while read; the reason already says the size is wrong

    def _unlisted_names(self, cand: Candidate, manifest: Manifest) -> list[str]:
        expected = {MANIFEST_FILE, JOURNAL_FILE} | {s.name for s in manifest.segments}
        try:
            names = os.listdir(cand.path)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n not in expected)

    def _flags(self, dk: _Docking, manifest: Manifest, states: dict[str, str], extra: list[str]) -> list[str]:
        flags = []
        started = parse_time(manifest.started_at)
        ended = parse_time(manifest.ended_at)
        if dk.previous_docking is not None and started < dk.previous_docking:
            flags.append(FLAG_BEFORE_DOCKING)
        if max(started, ended) > self.clock.now() + FUTURE_TOLERANCE:
            flags.append(FLAG_FUTURE)
        if any(state == CUT for state in states.values()):
            flags.append(FLAG_CUT)
        if extra:
            flags.append(FLAG_EXTRA_FILES)
        return flags

    # -- quarantine, receipts -----------------------------------------------------------------

    def _quarantine(self, dk: _Docking, cand: Candidate, res: ClipResult, q: _Quarantine) -> None:
        objects = q.objects if q.objects is not None else self._salvage(dk, cand)
        journal_bytes = q.journal_bytes if q.journal_bytes is not None else self._salvage_journal(cand)
        dk.store.quarantine(reason=q.reason, device_id=dk.device_id, clip_id=cand.clip_id,
                              manifest_bytes=cand.manifest_bytes, journal_bytes=journal_bytes, objects=objects)
        self._fault("quarantined", cand.clip_id)
        res.outcome = OUT_QUARANTINED
        res.reason = q.reason
        log.error("clip %s: quarantined: %s", cand.clip_id, q.reason)
        self._settle(dk, cand, res, QUARANTINED)

    def _salvage(self, dk: _Docking, cand: Candidate) -> dict:
        """Keep the segment-named regular files of a clip that failed before its copy."""
        try:
            names = sorted(os.listdir(cand.path))
        except FileNotFoundError:
            return {}
        return self._keep_files(dk, cand, [n for n in names if SEGMENT_RE.match(n)])

    def _salvage_journal(self, cand: Candidate) -> bytes | None:
        try:
            return read_regular(cand.path / JOURNAL_FILE, MAX_JOURNAL_BYTES)
        except UnsafeFileError:
            return None
        except FileNotFoundError:
            return None

    # -- the deletion rule: only what the store provably holds ----------------------------------

    def _settle_known(self, dk: _Docking, cand: Candidate, res: ClipResult) -> bool:
        """A clip the store already knows (same clip id, same camera): receipt and clear it if
        the folder's manifest is the stored clip's, or if every file in it is held by a record of
        this clip. Returns False when the store knows nothing that covers the folder."""
        held = dk.store.holdings(cand.clip_id, dk.device_id)
        if not held.hashes:
            return False
        if held.manifest_sha256 is not None and res.manifest_sha256 == held.manifest_sha256:
            res.outcome = OUT_ALREADY
            res.sequence = held.sequence
            log.info("clip %s: already stored by an earlier docking; receipting it", cand.clip_id)
            self._settle(dk, cand, res, STORED)
            return True
        entries = self._inventory(dk, cand)
        if any(e.kind == _FILE and e.sha256 not in held.hashes for e in entries):
            return False
        res.outcome = OUT_QUARANTINED
        res.reason = "quarantined by an earlier docking"
        log.info("clip %s: every file is quarantined already; receipting it", cand.clip_id)
        self._receipt_and_clear(dk, cand, res, QUARANTINED, entries)
        return True

    def _settle(self, dk: _Docking, cand: Candidate, res: ClipResult, status: str) -> None:
        """Prove the clip folder is held, quarantine whatever is not, then receipt and clear."""
        entries = self._inventory(dk, cand)
        held = dk.store.holdings(cand.clip_id, dk.device_id)
        unheld = [e for e in entries if e.kind == _FILE and e.sha256 not in held.hashes]
        if unheld:
            objects = {}
            for entry in unheld:
                objects[entry.shown] = self._keep_entry(dk, entry)
            names = ", ".join(sorted(objects))
            log.warning("clip %s: files the store held for no clip are quarantined before clearing: %s",
                        cand.clip_id, names)
            # The reason names no files, so that a rerun finds the same record (idempotent).
            reason = f"files in the folder of clip {cand.clip_id} that no stored or quarantined record of it held"
            dk.store.quarantine(reason=reason,
                                device_id=dk.device_id, clip_id=cand.clip_id, manifest_bytes=cand.manifest_bytes,
                                journal_bytes=None, objects=objects)
            self._fault("quarantined", cand.clip_id)
            for name in sorted(objects):
                if name not in res.extra_files:
                    res.extra_files.append(name)
        self._receipt_and_clear(dk, cand, res, status, entries)

    def _keep_entry(self, dk: _Docking, entry: _Entry):
        """Store one inventoried camera file; the bytes stored must be the bytes hashed."""
        try:
            fd = open_regular(entry.path, max_bytes=QUARANTINE_MAX_FILE)
        except UnsafeFileError as exc:
            raise _Skip(f"{entry.shown}: changed during ingest ({exc})") from None
        try:
            st = os.fstat(fd)
            ref = self._put_plain(dk, fd, st.st_size)
        finally:
            os.close(fd)
        if ref is None or ref.sha256 != entry.sha256:
            raise _Skip(f"{entry.shown}: changed during ingest")
        return ref

    def _inventory(self, dk: _Docking, cand: Candidate) -> list[_Entry]:
        """Every entry of the clip folder (sub-folders too, bounded), each regular file with the
        SHA-256 of its bytes. Raises _Skip when the folder cannot be proven (too deep, too many
        entries, a monster file, a file changing while read): it then stays on the camera."""
        out: list[_Entry] = []

        def walk(folder: Path, prefix: str, depth: int) -> None:
            try:
                names = sorted(os.listdir(folder))
            except FileNotFoundError:
                return
            for name in names:
                if len(out) >= MAX_FOLDER_ENTRIES:
                    raise _Skip(f"more than {MAX_FOLDER_ENTRIES} entries in the clip folder; left for an administrator")
                path = folder / name
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                entry = _Entry(prefix + name, path, _OTHER, _identity(st))
                if stat.S_ISDIR(st.st_mode):
                    if depth >= MAX_FOLDER_DEPTH:
                        raise _Skip(f"{entry.shown}: folders nested more than {MAX_FOLDER_DEPTH} deep; left for an administrator")
                    entry.kind = _DIR
                    out.append(entry)
                    walk(path, entry.rel + "/", depth + 1)
                    continue
                if stat.S_ISREG(st.st_mode):
                    entry.kind = _FILE
                    entry.sha256 = self._hash(dk, entry)
                out.append(entry)

        walk(cand.path, "", 0)
        return out

    def _hash(self, dk: _Docking, entry: _Entry) -> str:
        known = dk.seen.get(entry.ident)
        if known is not None:
            return known
        try:
            fd = open_regular(entry.path, max_bytes=QUARANTINE_MAX_FILE)
        except UnsafeFileError as exc:
            raise _Skip(f"{entry.shown}: cannot be kept ({_rel(exc, entry.path.parent)}); left for an administrator") from None
        try:
            digest = hashlib.sha256()
            while block := os.read(fd, 1 << 20):
                digest.update(block)
            after = _identity(os.fstat(fd))
        finally:
            os.close(fd)
        if after != entry.ident:
            raise _Skip(f"{entry.shown}: changed during ingest")
        dk.seen[entry.ident] = digest.hexdigest()
        return dk.seen[entry.ident]

    def _receipt_and_clear(self, dk: _Docking, cand: Candidate, res: ClipResult, status: str, entries: list[_Entry]) -> None:
        # The receipt makes the camera delete the folder too (at undocking): so first make sure
        # that every entry is still the one proven held. A file that changed since is left, with
        # the whole clip, for the next docking, which keeps its new bytes before clearing.
        for entry in entries:
            try:
                current = _identity(os.lstat(entry.path))
            except FileNotFoundError:
                continue
            if current != entry.ident and entry.kind != _DIR:
                raise _Skip(f"{entry.shown}: changed during ingest; the clip stays on the camera")
        receipt = Receipt(clip_id=res.clip_id, device_id=dk.device_id, manifest_sha256=res.manifest_sha256 or "",
                          status=status, at=format_time(self.clock.now()), reason=res.reason if status == QUARANTINED else "")
        data = dk.store.sign_receipt(receipt)
        dk.outbox.write_receipt(res.clip_id, data)
        self._fault("receipt-written", res.clip_id)
        self._delete(dk, cand, entries)
        res.cleared = True
        self._fault("clip-deleted", res.clip_id)

    def _delete(self, dk: _Docking, cand: Candidate, entries: list[_Entry]) -> None:
        """Delete exactly the inventoried entries, each only if it is still the file that was
        proven held; the manifest last (a cut-off clearing leaves a sealed folder whose receipt
        lets the next docking finish), the folder itself only when nothing else appeared."""
        dk.outbox.check_layout()  # clips/ is still the camera's own folder, not a planted link
        manifest = None
        for entry in sorted(entries, key=lambda e: (e.kind == _DIR, -e.rel.count("/"), e.rel)):
            if entry.rel == MANIFEST_FILE:
                manifest = entry
                continue
            self._remove(entry)
            self._fault("file-deleted", cand.clip_id)
        if manifest is not None:
            fsync_dir(cand.path)
            self._remove(manifest)
        try:
            os.rmdir(cand.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _Skip(f"the clip folder is not empty after clearing (a file appeared during ingest): {exc.strerror}") from None
        fsync_dir(cand.path.parent)

    @staticmethod
    def _remove(entry: _Entry) -> None:
        try:
            st = os.lstat(entry.path)
        except FileNotFoundError:
            return
        if _identity(st) != entry.ident and entry.kind != _DIR:
            raise _Skip(f"{entry.shown}: changed during ingest; not deleted")
        if entry.kind == _DIR:
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)

    # -- docking reports (for ``status``) -----------------------------------------------------

    def _save_report(self, report: IngestReport) -> None:
        if self.state_dir is None or report.device_id is None:
            return
        try:
            folder = self.state_dir / "dockings"
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / f"{report.device_id}.json", (json.dumps(report.to_json(), sort_keys=True) + "\n").encode())
        except OSError as exc:
            log.warning("cannot save the docking report: %s", exc)


_FILE, _DIR, _OTHER = "file", "dir", "other"  # links, sockets, fifos, devices: no recording in them
MAX_FOLDER_DEPTH = 4  # a camera writes no sub-folders at all
MAX_FOLDER_ENTRIES = 10_000  # a day of one-minute segments is 1,440


@dataclass
class _Entry:
    """One entry of a clip folder on the camera, as the inventory found it."""

    rel: str  # relative to the clip folder; may carry surrogate escapes (non-UTF-8 names)
    path: Path
    kind: str
    ident: tuple
    sha256: str | None = None

    @property
    def shown(self) -> str:
        return _shown(self.rel)


def _shown(name: str) -> str:
    """A camera file name as text every log line, JSON record and SQLite row accepts: bytes that
    are not UTF-8 as \\xNN, other unprintable characters escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _enrolled_by_note(store, outbox: Outbox) -> str | None:
    """The device id of the enrollment note on the partition, if this store signed it and it
    names the key the store has enrolled for that device; None otherwise (never raises)."""
    try:
        enrollment = outbox.enrollment(store.verifier_key)
    except (EvidenceError, OSError, ValueError, TypeError):
        return None  # a damaged or foreign note proves nothing; the next source decides
    if enrollment is None:
        return None
    info = store.device(enrollment.device_id)
    if info is None or info.public_key != enrollment.device_public_key:
        return None
    return enrollment.device_id


def _signed_devices(store, scan) -> dict[str, int]:
    """device id -> number of the scan's manifests that its enrolled, not revoked key signs."""
    counts: dict[str, int] = {}
    keys: dict[str, DevicePublicKey | None] = {}
    for cand in scan.candidates:
        if cand.manifest is None or cand.manifest_bytes is None:
            continue
        device_id = cand.manifest.device_id
        if device_id not in keys:
            info = store.device(device_id)
            keys[device_id] = DevicePublicKey.parse(info.public_key) if info is not None and not info.revoked else None
        if keys[device_id] is None:
            continue
        try:
            parse_manifest(cand.manifest_bytes, keys[device_id])
        except EvidenceError:
            continue
        counts[device_id] = counts.get(device_id, 0) + 1
    return counts


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat.S_IFMT(st.st_mode))


def _rel(exc: Exception, base: Path) -> str:
    # Reasons name files relative to the clip: mount points differ between dockings, and the
    # quarantine is idempotent on its reason.
    return str(exc).replace(f"{base}/", "")
