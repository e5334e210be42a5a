"""Seal clips that a crash or power loss left without a manifest, from their signed journals.

Run at every start, before anything records (and by ``bodycam-device recover``):

1. Move the chain head past manifests it missed (a crash while sealing, see sealing.py).
2. For every unsealed clip folder: compare each segment with its journal. A segment is recorded
   ``cut`` with the journal's committed byte count when power was lost before its final chunk;
   its bytes are never altered (the store salvages the complete chunks and the dock checks the
   first ``committed_bytes`` against the journal). The manifest says ``end_reason: interrupted``.
3. If the state marker says the process died while recording **in this boot** (a crash that
   systemd restarted, not a power cut), report what to resume: the controller then continues at
   once in a new clip whose manifest ``resumes`` the interrupted one. After a reboot nobody has
   decided to record again, so nothing resumes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from device.docking import load_enrollment
from device.errors import DeviceError
from device.recorder_api import TRIGGER_ANNOUNCED, Trigger
from device.sealing import firmware_version, reconcile_chain, seal
from device.state import ChainHead, RecordingMarker, StateDir, boot_id
from evidence_store.clip.clock import CLOCK_UNSYNCHRONISED
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.errors import ClipError
from evidence_store.clip.fsutil import atomic_write, read_regular
from evidence_store.clip.ids import SEGMENT_RE, format_time, parse_time
from evidence_store.clip.journal import (
    CUT,
    JOURNAL_FILE,
    MAX_JOURNAL_BYTES,
    WHOLE,
    JournalEntry,
    check_segment,
    parse_journal,
)
from evidence_store.clip.manifest import EMERGENCY, Manifest, SegmentRecord
from evidence_store.clip.outbox import Outbox

log = logging.getLogger(__name__)

END_INTERRUPTED = "interrupted"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Resume:
    """A recording to continue: the interrupted clip and its original trigger."""

    clip_id: str
    trigger: Trigger


@dataclass
class RecoveryReport:
    sealed: list[str] = field(default_factory=list)
    removed_empty: list[str] = field(default_factory=list)
    unsealable: list[tuple[str, str]] = field(default_factory=list)  # (clip, why)
    notes: dict[str, list[str]] = field(default_factory=dict)
    resume: Resume | None = None
    chain: ChainHead | None = None
    marker_set_aside: Path | None = None  # an unusable marker, renamed (recording.json.bad)


def _file_digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _clip_time(clip_id: str) -> str:
    """The creation time a UUIDv7 carries (its first 48 bits are Unix milliseconds)."""
    from datetime import datetime

    ms = int(clip_id.replace("-", "")[:12], 16)
    return format_time(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _duration_ms(entries: list[JournalEntry]) -> int:
    if len(entries) < 2:
        return 0
    span = parse_time(entries[-1].time) - parse_time(entries[0].time)
    return max(0, int(span.total_seconds() * 1000))


def _segments(clip_dir: Path, entries: list[JournalEntry], notes: list[str]) -> list[SegmentRecord]:
    records = []
    names = sorted(p.name for p in clip_dir.iterdir() if SEGMENT_RE.match(p.name) and not p.is_symlink())
    for name in names:
        path = clip_dir / name
        size, sha = _file_digest(path)
        with path.open("rb") as f:
            check = check_segment(f, name, entries)
        mine = [e for e in entries if e.segment == name]
        if check.status == WHOLE:
            records.append(SegmentRecord(name, size, sha, check.plaintext_bytes, check.plaintext_sha256,
                                         _duration_ms(mine), False, size))
        elif check.status == CUT:
            records.append(SegmentRecord(name, size, sha, check.plaintext_bytes, check.plaintext_sha256,
                                         _duration_ms(mine), True, check.committed))
        else:
            # No journal line vouches for any of it (a crash right after the file was made) or
            # it does not match what was signed. Kept as it is and declared: nothing committed.
            notes.append(check.detail)
            records.append(SegmentRecord(name, size, sha, 0, EMPTY_SHA256, 0, True, 0))
    return records


def _manifest(clip_id: str, sequence: int, previous: str | None, device_id: str, marker: RecordingMarker | None,
              fallback_officer: str | None, fallback_profile: str, entries: list[JournalEntry],
              segments: list[SegmentRecord], notes: list[str], firmware: str) -> Manifest:
    started = marker.started_at if marker else (entries[0].time if entries else _clip_time(clip_id))
    ended = entries[-1].time if entries else started
    if marker is None:
        # Unknown trigger: "emergency" makes the store ask an officer to justify the clip, the
        # safe side when the camera cannot say how the recording came about.
        notes.append("trigger unknown after the crash (no recording marker): recorded as emergency")
    trigger = marker.trigger if marker else EMERGENCY
    return Manifest(
        clip_id=clip_id, sequence=sequence, device_id=device_id,
        officer=marker.officer if marker else fallback_officer, firmware=firmware,
        profile=marker.profile if marker else fallback_profile, trigger=trigger,
        announced_at=marker.announced_at if marker and trigger == TRIGGER_ANNOUNCED else None,
        started_at=started, ended_at=ended, end_reason=END_INTERRUPTED,
        homes=bool(marker and marker.homes_at), prerecord_seconds=marker.prerecord_seconds if marker else 0,
        resumes=marker.resumes if marker else None, bookmarks=list(marker.bookmarks) if marker else [],
        segments=segments, clock_source=marker.clock_source if marker else CLOCK_UNSYNCHRONISED,
        previous_manifest=previous, homes_at=marker.homes_at if marker else None, notes=notes,
        sound=bool(marker and marker.sound))


def _resume_trigger(marker: RecordingMarker) -> Trigger:
    announced = marker.announced_at or marker.interrupted_announcement
    return Trigger(marker.trigger, parse_time(announced) if announced else None, parse_time(marker.ordered_at))


def recover(outbox_dir: str | os.PathLike, state_dir: str | os.PathLike, key: DeviceKey, *,
            firmware: str | None = None) -> RecoveryReport:
    """Seal every unsealed clip in the outbox; returns what was done and what to resume.

    Raises DeviceError if the outbox is not this camera's. Never deletes or alters a segment;
    only a clip folder with no file at all (a crash right after it was made) is removed.
    """
    outbox = Outbox(outbox_dir)
    state = StateDir(state_dir).ensure()
    try:
        device = outbox.device()
    except ClipError as exc:
        raise DeviceError(str(exc), "hint: run bodycam-device init first") from exc
    if device.public_key != str(key.public):
        raise DeviceError(f"{outbox.root} belongs to another device key than {state.path}")
    report = RecoveryReport()
    reconcile_chain(outbox, state, key.public)
    try:
        marker = state.marker()
    except DeviceError as exc:
        # A damaged marker must not stop recovery (nor make `run` restart forever): its clip is
        # still sealed from the journal, with the trigger unknown, and the file is kept aside.
        marker = None
        report.marker_set_aside = state.set_marker_aside()
        log.error("%s; set aside as %s", exc, report.marker_set_aside)
    enrollment = load_enrollment(outbox, state, device.device_id, device.public_key)
    for clip_id in outbox.list_clips().unsealed:
        clip_dir = outbox.clip_dir(clip_id)
        if not any(clip_dir.iterdir()):
            clip_dir.rmdir()
            report.removed_empty.append(clip_id)
            continue
        notes = ["sealed after a crash or power loss from the signed journal"]
        try:
            data = read_regular(clip_dir / JOURNAL_FILE, MAX_JOURNAL_BYTES)
        except FileNotFoundError:
            # Killed before its first journal line (the first instant of a recording): an empty
            # journal says so, signed by nothing because it claims nothing. The store keeps every
            # clip with its journal, so without one this genuine clip would be quarantined.
            data = b""
            atomic_write(clip_dir / JOURNAL_FILE, data)
            notes.append("no journal: nothing was committed")
        try:
            journal = parse_journal(data, key.public, clip_id)
            entries = journal.entries
            if journal.torn_tail:
                notes.append("the journal's last line was cut by the crash and is ignored")
        except ClipError as exc:
            entries = []
            notes.append(f"journal does not verify: {exc}")
        segments = _segments(clip_dir, entries, notes)
        if not segments:
            report.unsealable.append((clip_id, "no segment file"))
            log.error("clip %s has no segment and cannot be sealed; it is left as it is", clip_id)
            continue
        mine = marker if marker is not None and marker.clip_id == clip_id else None

        def build(seq, prev, mine=mine, notes=notes, clip_id=clip_id, entries=entries, segments=segments):
            return _manifest(clip_id, seq, prev, device.device_id, mine, enrollment.officer if enrollment else None,
                             enrollment.profile.name if enrollment else "NRW", entries, segments, list(notes),
                             firmware or firmware_version())
        try:
            try:
                seal(clip_dir, state, key, build)
            except ClipError as exc:
                if mine is None:
                    raise
                # The marker's values do not make a valid manifest: seal from the journal alone.
                log.error("clip %s: the recording marker does not fit a manifest (%s); sealing without it",
                          clip_id, exc)
                notes.append(f"the recording marker was unusable ({exc})")
                mine = None
                seal(clip_dir, state, key, lambda seq, prev: build(seq, prev, mine=None))
        except (ClipError, OSError) as exc:
            report.unsealable.append((clip_id, str(exc)))
            log.error("cannot seal clip %s: %s", clip_id, exc)
            continue
        report.sealed.append(clip_id)
        report.notes[clip_id] = notes
        log.warning("sealed interrupted clip %s (%d segment(s))", clip_id, len(segments))
    if marker is not None:
        current = boot_id()
        if marker.clip_id in report.sealed and marker.boot_id and marker.boot_id == current:
            try:
                report.resume = Resume(marker.clip_id, _resume_trigger(marker))
            except (ClipError, ValueError) as exc:
                log.error("cannot resume clip %s: its marker's trigger is unusable (%s)", marker.clip_id, exc)
        if any(clip_id == marker.clip_id for clip_id, _ in report.unsealable):
            # Its clip is still unsealed: keep what only the marker knows (trigger, bookmarks,
            # homes) beside it rather than lose it, and let the next recording start.
            report.marker_set_aside = state.set_marker_aside()
        else:
            state.clear_marker()
    report.chain = state.chain()
    return report
