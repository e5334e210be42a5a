"""The encrypting recorder: camera frames in, sealed encrypted clips in the outbox out.

It implements ``device.recorder_api.Recorder`` for the controller. What it guarantees, and why:

* **Encrypted as written** (§ 15c PolG NRW: recordings kept encrypted and tamper-proof): every
  frame goes straight into an age writer for the enrollment's recipients; plaintext never touches
  the disk, and nothing on the camera can decrypt a segment.
* **Power loss costs at most a second**: every ``COMMIT_INTERVAL`` on the injected clock the
  current 64 KiB chunk is completed (padding the transport stream with whole MPEG-TS null
  packets when the video has not filled it for a while), the segment is fdatasynced, and only then
  is a signed journal line appended. The first frame of a clip is committed at once: the start of
  an emergency recording is the part that matters most.
* **Sealing**: closing the writer seals age's final chunk, a final journal line follows, and the
  signed manifest is written last (see sealing.py for the chain head).
* **Not enrolled**: without an enrollment there is no recipient, and a recording that cannot be
  encrypted may not be made at all. ``can_start()`` then says ``"not enrolled"`` and the
  controller refuses, with its LED pattern, even in an emergency; cameras are enrolled at the dock
  before they are issued, so this is a commissioning fault that the officer sees at once.
* **Storage**: a recording starts whenever there is room to seal it properly (the seal margin),
  so an emergency press with a few hundred MiB free still records minutes of video; below the
  reserve the lights only warn of low storage (``warnings()``). ``poll()`` seals a running clip
  whole before the disk fills; nothing here ever deletes a clip (only ``undock`` does, for clips
  the store has receipted).
* **Sound** (§ 15c PolG NRW allows "Bild- und Tonaufzeichnungen"; other profiles may not): the
  camera records sound only if the effective profile allows it, which the camera's configuration
  can narrow but never widen. The manifest says per clip whether sound was captured. A microphone
  that fails or is missing never stops a recording: the clip goes on with picture only, the
  manifest notes when the sound ended, the log says why, and the lights warn.
* **Pre-recording**: only if the effective profile allows N > 0 seconds is a RAM ring buffer
  constructed and the encoder run while idle. In NRW the buffer object never exists and the
  encoder runs only between ``start`` and ``stop``.

Thread rule: the controller's thread calls the Recorder methods. The camera calls ``_on_unit``
on its encoder thread; with ``threaded=True`` that only queues, and the recorder's writer thread
does the encryption and disk I/O, so an SD card's slow fdatasync never holds up the encoder. The
queue is bounded (``QUEUE_SECONDS``): when it is full, frames are dropped up to the next keyframe
and counted in the manifest's notes. Any exception on the writer thread becomes the clip's
failure, and a dead writer thread counts as one: ``poll()`` then seals and raises.
``self._lock`` guards the running clip (and the pre-recording buffer hand-over) between the
writer thread and the controller's thread (``poll`` commits, ``stop`` seals).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from device.camera.base import NULL_PACKET, TS_PACKET_SIZE, Camera, TsUnit
from device.clock import DockClock
from device.config import ProfileConfig, effective_profile
from device.docking import UndockReport, UsbGadget, apply_undock, load_enrollment, remember_time
from device.errors import DeviceError, NotEnrolledError, RecorderError, StorageFullError
from device.prerecord import PrerecordBuffer
from device.recorder_api import (
    REFUSE_NOT_ENROLLED,
    REFUSE_STORAGE,
    STOP_DOCKED,
    STOP_ERROR,
    STOP_REASONS,
    STOP_SHUTDOWN,
    STOP_STORAGE,
    TRIGGER_ANNOUNCED,
    Trigger,
)
from device.sealing import firmware_version, seal
from device.state import RecordingMarker, StateDir, boot_id
from evidence_store.clip.age import AgeWriter
from evidence_store.clip.clock import Clock
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.errors import ClipError
from evidence_store.clip.fsutil import append_durable, fsync_dir
from evidence_store.clip.ids import format_time, new_clip_id
from evidence_store.clip.journal import GENESIS, JOURNAL_FILE, JournalEntry, line_hash, sign_entry
from evidence_store.clip.manifest import ANNOUNCED, Manifest, SegmentRecord
from evidence_store.clip.outbox import Enrollment, Outbox

log = logging.getLogger(__name__)

COMMIT_INTERVAL = 0.5  # seconds between commits: with PAD_AGE, a crash loses at most ~0.75 s
PAD_AGE = 0.25  # pad a chunk that has been filling this long; younger ones are sealed by the video
SEGMENT_NAME = "seg-{:05d}.age"
REFUSE_DOCKED = "docked"
WARN_LOW_STORAGE = "low storage"
WARN_MICROPHONE = "microphone"
MIB = 1024 * 1024
STORAGE_CHECK_INTERVAL = 0.5
# The writer queue holds at most this many seconds of frames (at the camera's rate). An SD card
# that stalls longer than that would otherwise grow the queue until the Pi runs out of memory and
# the kernel kills the firmware; dropping (and declaring) frames keeps the recording going.
QUEUE_SECONDS = 10
MIN_QUEUE_UNITS = 32
DRAIN_POLL = 0.5  # how often _drain looks whether the writer thread is still alive


def disk_free(path: Path) -> int:
    """Bytes available to us on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class _RawFile:
    """An unbuffered segment file: every byte the age writer emits is in the kernel at once, so
    the ciphertext count the journal signs is exactly what fdatasync makes durable."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return len(data)

    def flush(self) -> None:
        pass

    def datasync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class _Segment:
    name: str
    file: _RawFile
    writer: AgeWriter
    first_us: int | None = None
    last_us: int | None = None
    written: int = 0  # plaintext handed to the writer (sealed or not)
    chunk_since: float = 0.0  # monotonic time the unsealed chunk got its first byte
    sealed_seen: int = 0


class ClipWriter:
    """Segments and journal of one clip. Not thread-safe: the recorder's lock guards it.

    ``write`` takes units in order; the first unit must be a keyframe (others before it are
    dropped: they could not be decoded). ``commit`` makes everything so far durable and signed.
    ``close`` seals the last segment and returns the segment records for the manifest.
    """

    def __init__(self, clip_dir: Path, clip_id: str, recipients: list[str], key: DeviceKey, clock: Clock, *,
                 segment_seconds: float, fps: float):
        self.dir = clip_dir
        self.clip_id = clip_id
        self._recipients = recipients
        self._key = key
        self._clock = clock
        self._segment_us = int(segment_seconds * 1_000_000)
        self._frame_us = round(1_000_000 / fps) if fps else 40_000
        self._journal = clip_dir / JOURNAL_FILE
        self._prev = GENESIS
        self.segments: list[SegmentRecord] = []
        self.frames = 0
        self.sound = False  # a sound packet reached a segment
        self.dropped = 0
        self.padding_bytes = 0
        self.last_commit: float | None = None
        self.first_commit: float | None = None
        clip_dir.mkdir(mode=0o755)
        fsync_dir(clip_dir.parent)
        self._seg: _Segment | None = self._open_segment()

    def _open_segment(self) -> _Segment:
        name = SEGMENT_NAME.format(len(self.segments))
        raw = _RawFile(self.dir / name)
        fsync_dir(self.dir)  # the file's name must survive a power cut as well as its bytes
        return _Segment(name, raw, AgeWriter(raw, self._recipients), chunk_since=self._clock.monotonic())

    def _current(self) -> _Segment:
        if self._seg is None:
            raise ClipError(f"clip {self.clip_id} is closed")
        return self._seg

    def write(self, unit: TsUnit) -> None:
        seg = self._current()
        if seg.first_us is None:
            if not unit.keyframe:
                self.dropped += not unit.audio  # sound before the first picture: no frame lost
                return
        elif unit.keyframe and unit.timestamp_us - seg.first_us >= self._segment_us:
            self._close_segment()
            seg = self._seg = self._open_segment()
        self._feed(seg, unit.data)
        self.sound = self.sound or unit.sound
        if unit.audio:
            return
        if seg.first_us is None:
            seg.first_us = unit.timestamp_us
        seg.last_us = unit.timestamp_us
        self.frames += 1
        if self.first_commit is None:
            self.commit()

    def _feed(self, seg: _Segment, data: bytes) -> None:
        seg.writer.write(data)
        seg.written += len(data)
        if seg.writer.plaintext_bytes != seg.sealed_seen:
            seg.sealed_seen = seg.writer.plaintext_bytes
            seg.chunk_since = self._clock.monotonic()

    @property
    def frame_us(self) -> int:
        """One frame's duration at the camera's rate, in microseconds."""
        return self._frame_us

    def due(self, now: float) -> bool:
        if self.frames == 0:
            return False  # the first picture commits at once when it comes (write())
        return self.last_commit is None or now - self.last_commit >= COMMIT_INTERVAL

    def commit(self) -> None:
        """Complete the current chunk if it has waited long enough, fdatasync, sign a journal line."""
        seg = self._current()
        now = self._clock.monotonic()
        unsealed = seg.written - seg.writer.plaintext_bytes
        if unsealed > 0 and (self.first_commit is None or now - seg.chunk_since >= PAD_AGE):
            # Whole null packets only, between two TS packets: the stream stays valid and every
            # player skips them. Enough of them to pass the chunk boundary, so the chunk is sealed.
            count = -(-seg.writer.bytes_to_seal() // TS_PACKET_SIZE)
            self._feed(seg, NULL_PACKET * count)
            self.padding_bytes += count * TS_PACKET_SIZE
        seg.file.datasync()  # the bytes first, then the journal line that vouches for them
        self._append(seg, final=False)
        self.last_commit = now
        if self.first_commit is None:
            # After the journal line: the first frame counts as recorded once it is on disk and
            # vouched for, which is what the emergency-latency benchmark promises to measure.
            self.first_commit = self._clock.monotonic()

    def _append(self, seg: _Segment, final: bool) -> None:
        w = seg.writer
        entry = JournalEntry(self.clip_id, seg.name, w.ciphertext_bytes, w.ciphertext_sha256(), w.plaintext_bytes,
                             w.plaintext_sha256(), format_time(self._clock.now()), final, self._prev)
        line = sign_entry(entry, self._key)
        first = self._prev == GENESIS
        append_durable(self._journal, line)
        if first:
            fsync_dir(self.dir)
        self._prev = line_hash(line)

    def _close_segment(self) -> None:
        seg = self._current()
        seg.writer.close()
        seg.file.datasync()
        seg.file.close()
        self._append(seg, final=True)
        w = seg.writer
        duration = 0
        if seg.first_us is not None and seg.last_us is not None:
            duration = (seg.last_us - seg.first_us + self._frame_us) // 1000
        self.segments.append(SegmentRecord(seg.name, w.ciphertext_bytes, w.ciphertext_sha256(), w.plaintext_bytes,
                                           w.plaintext_sha256(), int(duration), False, w.ciphertext_bytes))

    def close(self) -> list[SegmentRecord]:
        self._close_segment()
        self._seg = None
        return self.segments


@dataclass
class _ClipMeta:
    """What the manifest needs besides the segments."""

    marker: RecordingMarker
    bookmarks: list[str] = field(default_factory=list)
    homes_at: str | None = None
    notes: list[str] = field(default_factory=list)
    sound_expected: bool = False
    sound_fault: str | None = None  # the microphone's failure, noted once


_IDLE = object()  # the writer's queue was quiet for a while: commit if one is due


class EncryptingRecorder:
    """The Recorder. ``outbox`` and ``state`` are folders; ``key`` the device key; ``camera`` a
    Camera (opened here); ``clock`` the injected clock (a DockClock lets undocking set it).

    ``reserve_mib``: below this much free space the lights warn of low storage (a recording still
    starts); ``seal_margin_mib``: no recording starts, and a running one is sealed, below this
    (default: an eighth of the reserve, at least 8 MiB: room for age's final chunks, the journal
    and the manifest). ``local_prerecord``:
    the camera's configuration, which can only narrow the enrolled profile. ``gadget``: the USB
    gadget for docking (None: docking only stops using the outbox). ``threaded`` False: the camera's
    sink writes on the calling thread (tests with ``produce``). Raises NotEnrolledError if the
    outbox's device.json names another key than ``key``; a missing or refused enrollment record
    only makes ``can_start`` refuse until a good one arrives.
    """

    def __init__(self, outbox: str | os.PathLike, state: str | os.PathLike, key: DeviceKey, camera: Camera,
                 clock: Clock, *, reserve_mib: float = 512, seal_margin_mib: float | None = None,
                 segment_seconds: float = 60.0, local_prerecord: int = 0, local_sound: bool = True,
                 gadget: UsbGadget | None = None,
                 threaded: bool = True, free_bytes: Callable[[Path], int] = disk_free,
                 firmware: str | None = None, queue_units: int | None = None):
        self._outbox = Outbox(outbox)
        self._state = StateDir(state).ensure()
        self._key = key
        self._camera = camera
        self._clock = clock
        self._reserve = int(reserve_mib * MIB)
        margin = seal_margin_mib if seal_margin_mib is not None else max(8, reserve_mib / 8)
        self._seal_margin = int(margin * MIB)
        self._segment_seconds = segment_seconds
        self._local_prerecord = local_prerecord
        self._local_sound = local_sound
        self._gadget = gadget
        self._free_bytes = free_bytes
        self._firmware = firmware or firmware_version()
        device = self._outbox.device()
        if device.public_key != str(key.public):
            raise NotEnrolledError(f"{self._outbox.root}/device.json names another key than the state folder's",
                                   "hint: the outbox and --state belong to different cameras")
        self.device_id = device.device_id
        self._lock = threading.Lock()
        self._clip: ClipWriter | None = None
        self._meta: _ClipMeta | None = None
        self._resume_of: str | None = None
        self._docked = False
        self._docked_at: float | None = None
        self._failure: BaseException | None = None
        self._next_storage_check = 0.0
        self._prerecord: PrerecordBuffer | None = None  # NRW: stays None, the object never exists
        self._camera_running = False
        self._low_storage = False
        self.last_sealed: Manifest | None = None
        self.last_undock: UndockReport | None = None  # the UndockReport of the last undocking
        self.first_commit_at: float | None = None  # monotonic: the benchmarks read it
        self._enrollment: Enrollment | None = None
        self._load_enrollment()
        self._threaded = threaded
        fps = camera.fps or 25.0
        self._queue: queue.Queue = queue.Queue(
            maxsize=queue_units if queue_units is not None else max(MIN_QUEUE_UNITS, int(fps * QUEUE_SECONDS)))
        # Frames the full queue made us drop since the clip started. Written on the encoder
        # thread, read and reset on the controller's thread: guarded by its own lock, never by
        # self._lock, which the writer holds across an fdatasync the encoder must not wait for.
        self._drop_lock = threading.Lock()
        self._queue_drops = 0
        self._skip_to_keyframe = False  # encoder thread only
        self._writer: threading.Thread | None = None
        if threaded:
            self._start_writer()
        self._camera.open()
        self._apply_profile()

    # --- enrollment and profile ----------------------------------------------------------------

    def _load_enrollment(self) -> None:
        # A bad record on the partition is set aside there; the last good one stays in force.
        self._enrollment = load_enrollment(self._outbox, self._state, self.device_id, str(self._key.public))

    @property
    def enrollment(self) -> Enrollment | None:
        return self._enrollment

    def _effective(self, enrollment: Enrollment):
        return effective_profile(enrollment.profile,
                                 ProfileConfig(prerecord_seconds=self._local_prerecord, sound=self._local_sound))

    @property
    def prerecord_seconds(self) -> int:
        """The pre-recording the effective profile allows (0: no buffer exists)."""
        if self._enrollment is None:
            return 0
        return self._effective(self._enrollment).prerecord_max_seconds

    @property
    def sound_allowed(self) -> bool:
        """Whether the effective profile lets the camera record sound."""
        return self._enrollment is not None and self._effective(self._enrollment).sound

    def _apply_profile(self) -> None:
        """Build or drop the RAM buffer (and the idle encoder) to match the effective profile;
        tell the camera whether it may record sound (from its next start)."""
        self._camera.set_sound(self.sound_allowed and not self._docked)
        seconds = 0 if self._docked else self.prerecord_seconds
        if seconds > 0 and (self._prerecord is None or self._prerecord.window_us != seconds * 1_000_000):
            self._prerecord = PrerecordBuffer(seconds)
            profile_name = self._enrollment.profile.name if self._enrollment is not None else "-"
            log.info("pre-recording: %d s in RAM (profile %s)", seconds, profile_name)
            if not self._camera_running:
                self._start_camera()
        elif seconds == 0 and self._prerecord is not None:
            if self._camera_running and self._clip is None:
                self._stop_camera()
            self._prerecord = None  # dropped: its frames are gone with it

    # --- the camera's side (encoder thread) ----------------------------------------------------

    def _on_unit(self, unit: TsUnit) -> None:
        # Encoder thread. Queue only: the disk is the writer thread's business.
        if not self._threaded:
            self._handle(unit)
            return
        if self._skip_to_keyframe and not unit.keyframe:
            # After a drop the frames up to the next keyframe could not be decoded anyway (and
            # the sound goes with them: a gap in both streams at the same place).
            if not unit.audio:
                self._count_drop()
            return
        try:
            self._queue.put_nowait(unit)
            self._skip_to_keyframe = False
        except queue.Full:
            self._skip_to_keyframe = True
            if not unit.audio:
                self._count_drop()

    def _count_drop(self) -> None:
        with self._drop_lock:
            self._queue_drops += 1
            first = self._queue_drops == 1
        if first:
            log.error("the disk cannot keep up: the writer queue is full, frames are dropped")

    def _take_drops(self) -> int:
        with self._drop_lock:
            drops, self._queue_drops = self._queue_drops, 0
        return drops

    def _handle(self, unit: TsUnit) -> None:
        with self._lock:
            clip = self._clip
            if clip is None:
                if self._prerecord is not None:
                    self._prerecord.add(unit)
                return  # a late frame after stop: the clip is sealed, it is not ours any more
            if self._failure is not None:
                return
            try:
                clip.write(unit)
                if clip.first_commit is not None and self.first_commit_at is None:
                    self.first_commit_at = clip.first_commit
                if clip.due(self._clock.monotonic()):
                    clip.commit()
            except Exception as exc:
                # Any failure, not only I/O: a bug or a malformed frame must end up in poll(),
                # which seals the clip and tells the controller, never in a silently dead thread.
                log.error("writing clip %s failed: %s", clip.clip_id, exc, exc_info=not isinstance(exc, OSError))
                self._failure = exc

    def _writer_loop(self) -> None:
        # The writer thread: everything that touches a segment while recording. It must outlive
        # any single failure: _drain() and close() wait for it to answer.
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                item = _IDLE
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                if item is _IDLE:
                    self._commit_if_due()
                else:
                    self._handle(item)
            except Exception as exc:  # _handle catches its own; this is the last line of defence
                log.exception("the recorder's writer thread failed")
                with self._lock:
                    if self._clip is not None and self._failure is None:
                        self._failure = exc

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._writer_loop, name="recorder-writer", daemon=True)
        self._writer.start()

    def _writer_dead(self) -> bool:
        return self._threaded and (self._writer is None or not self._writer.is_alive())

    def _put_control(self, item) -> bool:
        """Queue a control item (barrier event, stop sentinel) behind the frames; False if the
        writer thread is gone (a full queue then never empties)."""
        while True:
            if self._writer_dead():
                return False
            try:
                self._queue.put(item, timeout=DRAIN_POLL)
                return True
            except queue.Full:
                continue

    def _drain(self) -> None:
        """Wait until the writer thread has handled every queued unit (or has died)."""
        if not self._threaded:
            return
        done = threading.Event()
        if not self._put_control(done):
            return
        while not done.wait(DRAIN_POLL):
            if self._writer_dead():
                return

    def _commit_if_due(self) -> None:
        with self._lock:
            clip = self._clip
            if clip is None or self._failure is not None or not clip.due(self._clock.monotonic()):
                return
            try:
                clip.commit()
            except Exception as exc:  # see _handle: every failure reaches poll()
                log.error("committing clip %s failed: %s", clip.clip_id, exc, exc_info=not isinstance(exc, OSError))
                self._failure = exc

    def _start_camera(self) -> None:
        self._camera.start(self._on_unit)
        self._camera_running = True

    def _stop_camera(self) -> None:
        self._camera.stop()
        self._camera_running = False
        self._drain()

    # --- Recorder protocol (controller's thread) ----------------------------------------------

    def can_start(self) -> str | None:
        if self._docked:
            return REFUSE_DOCKED
        if self._enrollment is None:
            return REFUSE_NOT_ENROLLED
        free = self._free()
        self._low_storage = free < self._reserve
        if free < self._seal_margin:
            return REFUSE_STORAGE  # it could not even be sealed
        return None

    def warnings(self) -> tuple[str, ...]:
        """What the lights should warn of while the camera works on: low storage (below the
        reserve), a failed microphone in the running clip."""
        now = self._clock.monotonic()
        if self._clip is None and not self._docked and now >= self._next_storage_check:
            self._next_storage_check = now + STORAGE_CHECK_INTERVAL  # while recording, poll() does it
            self._low_storage = self._free() < self._reserve
        out = []
        if self._low_storage:
            out.append(WARN_LOW_STORAGE)
        meta = self._meta
        if meta is not None and meta.sound_fault is not None:
            out.append(WARN_MICROPHONE)
        return tuple(out)

    def _free(self) -> int:
        try:
            return self._free_bytes(self._outbox.root)
        except OSError as exc:
            log.error("cannot read the free space of %s: %s", self._outbox.root, exc)
            return 0

    @property
    def recording(self) -> bool:
        return self._clip is not None

    @property
    def clip_id(self) -> str | None:
        return None if self._clip is None else self._clip.clip_id

    def set_resume(self, clip_id: str | None) -> None:
        """The clip a crash interrupted: the next ``start`` with ``trigger.resumed_at`` links to it."""
        self._resume_of = clip_id

    def start(self, trigger: Trigger) -> None:
        """Open a new clip and start the encoder into it. Raises RecorderError / StorageFullError."""
        if self._clip is not None:
            raise RecorderError("a recording is already running")
        reason = self.can_start()
        if reason == REFUSE_STORAGE:
            raise StorageFullError("the outbox has no room left to seal a recording")
        if reason is not None:
            raise RecorderError(f"cannot record: {reason}")
        self._seal_leftover()
        if self._writer_dead():
            # poll() found it dead and sealed that clip; a new recording gets a new writer, and a
            # new queue: frames left in the old one are older than this recording.
            log.warning("starting a new writer thread")
            self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._start_writer()
        enrollment = self._enrollment
        if enrollment is None:  # can_start refused it above
            raise RecorderError(f"cannot record: {REFUSE_NOT_ENROLLED}")
        profile = self._effective(enrollment)
        now = self._clock.now()
        clip_id = new_clip_id(now)
        resumes = self._resume_of if trigger.resumed_at is not None else None
        started = trigger.resumed_at or trigger.started_at
        notes = []
        # Trigger guarantees announced_at for an announced recording.
        announced = trigger.announced_at if trigger.kind == TRIGGER_ANNOUNCED else None
        announced_at = format_time(announced) if announced is not None else None
        interrupted = None
        if trigger.kind != TRIGGER_ANNOUNCED and trigger.announced_at is not None:
            interrupted = format_time(trigger.announced_at)
            notes.append(f"an announcement began at {interrupted} and was overridden by the emergency trigger")
        if resumes:
            notes.append(f"resumes clip {resumes}, interrupted by a crash or a recording error; the recording "
                         f"was ordered at {format_time(trigger.started_at)}")
        try:
            self._take_drops()  # drops while idle (pre-recording) belong to no clip
            with self._lock:
                self._failure = None
                clip = ClipWriter(self._outbox.clip_dir(clip_id), clip_id, list(enrollment.recipients), self._key,
                                  self._clock, segment_seconds=self._segment_seconds, fps=self._camera.fps)
                prerecorded = self._prerecord.drain() if self._prerecord is not None else []
                for unit in prerecorded:
                    clip.write(unit)
                pre_s = 0
                if prerecorded:
                    # The first frame to the end of the last one, rounded up: the manifest must
                    # never claim less pre-recording than the clip holds (0.44 s is 1, not 0).
                    span = prerecorded[-1].timestamp_us - prerecorded[0].timestamp_us + clip.frame_us
                    pre_s = min(profile.prerecord_max_seconds, math.ceil(span / 1_000_000))
                marker = RecordingMarker(
                    clip_id=clip_id, trigger=trigger.kind, announced_at=announced_at, started_at=format_time(started),
                    ordered_at=format_time(trigger.started_at), interrupted_announcement=interrupted,
                    profile=profile.name, prerecord_seconds=pre_s, clock_source=self._clock.clock_source,
                    officer=enrollment.officer, resumes=resumes, boot_id=boot_id(), sound=self._camera.sound)
                self._meta = _ClipMeta(marker, notes=notes, sound_expected=self._camera.sound)
                self._clip = clip
            if not self._camera_running:
                self._start_camera()  # the encoder starts here, and (NRW) nowhere else
            # After the camera: the first frame is being encoded while this fsyncs.
            self._state.write_marker(marker)
        except (OSError, ClipError) as exc:
            self._abandon()
            raise RecorderError(f"cannot start recording: {exc}") from exc
        self._resume_of = None
        log.info("recording clip %s (%s%s)", clip_id, trigger.kind, f", resumes {resumes}" if resumes else "")

    def _seal_leftover(self) -> None:
        """A marker left by a clip whose ``stop`` failed: seal that clip from its journal first
        (with the marker's trigger, bookmarks and homes flag), so the new clip's marker never
        overwrites what recovery needs. recover() sets aside a marker it cannot use."""
        if not self._state.has_marker():
            return
        from device.recover import recover

        log.warning("an earlier clip was left unsealed: sealing it from its journal before recording")
        try:
            report = recover(self._outbox.root, self._state.path, self._key, firmware=self._firmware)
        except (DeviceError, OSError, ClipError) as exc:
            # Recording must not be refused for it (an emergency may be happening now); the
            # marker is moved aside, never overwritten, for bodycam-device recover and the runbook.
            log.error("cannot seal the earlier clip: %s", exc)
            self._state.set_marker_aside()
            return
        for clip_id in report.sealed:
            log.warning("sealed clip %s (interrupted) before the new recording", clip_id)

    def _abandon(self) -> None:
        """A start that failed half-way: stop the encoder; what exists of the clip is left for
        recovery to seal (never deleted: it may already hold frames)."""
        if self._camera_running and self._prerecord is None:
            self._stop_camera()
        with self._lock:
            self._clip = None
            self._meta = None

    def bookmark(self, at: datetime) -> None:
        if self._meta is None:
            raise RecorderError("no recording to bookmark")
        self._meta.bookmarks.append(format_time(at))
        self._update_marker(self._meta)

    def set_homes(self, at: datetime) -> None:
        if self._meta is None:
            raise RecorderError("no recording to flag")
        if self._meta.homes_at is None:
            self._meta.homes_at = format_time(at)
            self._update_marker(self._meta)

    def _update_marker(self, meta: _ClipMeta) -> None:
        meta.marker = replace(meta.marker, bookmarks=tuple(meta.bookmarks), homes_at=meta.homes_at)
        try:
            self._state.write_marker(meta.marker)
        except OSError as exc:
            log.error("cannot update the recording marker: %s", exc)

    def stop(self, reason: str, *, note: str | None = None) -> None:
        """Stop the encoder (unless it feeds a pre-recording buffer) and seal the clip. ``note``
        goes into the manifest (why an error ended it). Raises RecorderError if the clip could not
        be sealed; the marker then stays, and the next ``start`` seals the clip from its journal."""
        if reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {reason!r}")
        if self._clip is None:
            return
        if self._prerecord is None:
            self._stop_camera()
        else:
            self._drain()
        with self._lock:
            clip, meta = self._clip, self._meta
            self._clip, self._meta = None, None
            failure, self._failure = self._failure, None
        if clip is None or meta is None:  # another thread sealed it meanwhile
            return
        ended = self._clock.now()
        try:
            segments = clip.close()
        except (OSError, ClipError) as exc:
            # The journal still vouches for everything committed; recovery seals it as interrupted.
            raise RecorderError(f"cannot close clip {clip.clip_id}: {exc}",
                                "hint: run bodycam-device recover to seal it from its journal") from exc
        if failure is not None:
            meta.notes.append(f"writing stopped early: {failure}")
        if note is not None:
            meta.notes.append(note)
        self._note_sound_fault(meta)
        if clip.dropped:
            meta.notes.append(f"{clip.dropped} frame(s) before the first keyframe could not be decoded and were dropped")
        queue_drops = self._take_drops()
        if queue_drops:
            meta.notes.append(f"{queue_drops} frame(s) dropped because the storage could not keep up "
                              f"(writer queue full); the video skips at each gap")
            log.error("clip %s: %d frame(s) dropped, the writer queue was full", clip.clip_id, queue_drops)
        try:
            manifest, _ = seal(clip.dir, self._state, self._key,
                               lambda seq, prev: self._manifest(clip.clip_id, seq, prev, meta, segments, reason, ended,
                                                                clip.sound))
        except (OSError, ClipError) as exc:
            raise RecorderError(f"cannot seal clip {clip.clip_id}: {exc}",
                                "hint: run bodycam-device recover to seal it from its journal") from exc
        try:
            self._state.clear_marker()
        except OSError as exc:
            # The clip is sealed; the next start's recovery finds the stale marker and drops it.
            log.error("cannot remove the recording marker: %s", exc)
        self.last_sealed = manifest
        log.info("clip %s: %d frames, %d segment(s), %d bytes of padding", clip.clip_id, clip.frames,
                 len(segments), clip.padding_bytes)

    def _manifest(self, clip_id: str, sequence: int, previous: str | None, meta: _ClipMeta,
                  segments: list[SegmentRecord], reason: str, ended: datetime, sound: bool) -> Manifest:
        m = meta.marker
        return Manifest(
            clip_id=clip_id, sequence=sequence, device_id=self.device_id, officer=m.officer,
            firmware=self._firmware, profile=m.profile, trigger=m.trigger,
            announced_at=m.announced_at if m.trigger == ANNOUNCED else None,
            started_at=m.started_at, ended_at=format_time(ended), end_reason=reason,
            homes=meta.homes_at is not None, prerecord_seconds=m.prerecord_seconds, resumes=m.resumes,
            bookmarks=list(meta.bookmarks), segments=list(segments), clock_source=m.clock_source,
            previous_manifest=previous, homes_at=meta.homes_at, notes=list(meta.notes), sound=sound)

    def poll(self) -> str | None:
        """Seal by itself when the disk is nearly full (returns "storage"); commit if the camera
        has gone quiet. Raises RecorderError if writing failed for another reason (the clip is
        sealed first) or the camera died."""
        if self._clip is None:
            return None
        failure = self._failure
        if failure is None and self._writer_dead():
            failure = RecorderError("the recorder's writer thread has stopped")
        camera_error = self._camera.error
        if self._meta is not None:
            self._note_sound_fault(self._meta)
        if failure is not None or camera_error is not None:
            full = isinstance(failure, OSError) and failure.errno in (errno.ENOSPC, errno.EDQUOT)
            if full:
                self.stop(STOP_STORAGE)
                return STOP_STORAGE
            why = failure or f"camera: {camera_error}"
            # The controller restarts the recording at once; the new clip links to this one
            # (also when sealing it fails below: the next start then seals it from its journal).
            self._resume_of = self._clip.clip_id
            self.stop(STOP_ERROR, note=None if self._failure is not None else f"recording error: {why}")
            raise RecorderError(f"recording stopped: {why}")
        now = self._clock.monotonic()
        if now >= self._next_storage_check:
            self._next_storage_check = now + STORAGE_CHECK_INTERVAL
            free = self._free()
            self._low_storage = free < self._reserve
            if free < self._seal_margin:
                log.warning("outbox nearly full: sealing the clip before the disk fills")
                self.stop(STOP_STORAGE)
                return STOP_STORAGE
        if not self._threaded:
            self._commit_if_due()  # with a writer thread, it commits on its own
        return None

    def _note_sound_fault(self, meta: _ClipMeta) -> None:
        """The microphone failed in this clip: once, a manifest note with the time, and the log."""
        fault = self._camera.sound_error
        if fault is None or meta.sound_fault is not None or not meta.sound_expected:
            return
        meta.sound_fault = fault
        at = format_time(self._clock.now())
        meta.notes.append(f"sound stopped by {at}, picture only from then on: {fault}")
        log.error("microphone fault in clip %s: %s (the recording goes on with picture only)",
                  meta.marker.clip_id, fault)

    def dock(self) -> None:
        """Seal (if the controller has not), stop using the outbox, expose it over USB."""
        if self._clip is not None:
            self.stop(STOP_DOCKED)
        self._docked = True
        self._docked_at = self._clock.monotonic()
        remember_time(self._state, self._clock)  # a dock time far behind this is refused at undocking
        self._apply_profile()  # no pre-recording while docked: the buffer is dropped
        if self._camera_running:
            self._stop_camera()
        if self._gadget is not None:
            self._gadget.attach(self.device_id)
        else:
            log.info("docked (no USB gadget configured: the outbox stays where it is)")

    def undock(self) -> None:
        """Take the partition back; apply enrollment, clock and receipts."""
        if self._gadget is not None:
            self._gadget.detach()
        clock = self._clock if isinstance(self._clock, DockClock) else None
        # Whatever lies on the partition, this never raises: a forged or damaged enrollment,
        # clock or receipt is set aside and the last good enrollment stays in force.
        enrollment, report = apply_undock(self._outbox, self._state, self.device_id, str(self._key.public),
                                          clock, self._docked_at)
        self._enrollment = enrollment
        self._docked = False
        self._docked_at = None
        self._apply_profile()
        log.info("undocked: %d clip(s) deleted after receipt, %d kept", len(report.deleted), len(report.kept))
        self.last_undock = report

    def close(self) -> None:
        """Seal a running clip (shutdown), stop the encoder and the writer thread."""
        if self._clip is not None:
            self.stop(STOP_SHUTDOWN)
        if self._camera_running:
            self._stop_camera()
        self._prerecord = None
        if self._writer is not None:
            if self._put_control(None):
                self._writer.join()
            self._writer = None
        self._camera.close()
