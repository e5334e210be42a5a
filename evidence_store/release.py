"""Release packages: a redacted copy of a clip (``redact``), and its offline check.

Package layout (README_TEXT explains it to the recipient)::

    README.txt                 how to check it with standard tools
    redacted.mp4               the redacted video: H.264, and AAC where the clip has sound
    review-sheet.png           stills of the redacted video with every covered box outlined,
                               for the evidence officer to check before handing the copy out
    redaction.json             the record: source hashes, detector and weights hash, parameters,
                               edits, tracks, the output's hash
    edits.json                 the officer's edits file, byte for byte (when one was given)
    manifest, device.pub       the camera-signed manifest naming the source's plaintext hashes
    store.vkey, checkpoint     the store's verifier key and a signed log checkpoint
    events/<index>.json        the redact event (step "begin", logged before decrypting), with
    events/<index>.tlog-proof  its C2SP tlog-proof against ``checkpoint``
    SHA256SUMS(.note)          every file above with its SHA-256, plain and signed by the store key
    redact-event.json          the sealed redact event naming SHA256SUMS.note's and the video's
    redact-event.tlog-proof    hashes, and its proof

As with the court export, the access is logged (with the reason) before any plaintext exists, the
package is built in a private folder (0700) and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store.clip.age import Identity
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.errors import FormatError
from evidence_store.clip.fsutil import atomic_write, fsync_dir
from evidence_store.clip.manifest import parse_manifest
from evidence_store.clip.note import sign_note
from evidence_store.errors import EvidenceError, UsageError
from evidence_store.export import (
    HINT_PACKAGE,
    SUMS,
    SUMS_NOTE,
    UNTRUSTED_FAULTS,
    _file_sha256,
    _why,
    begin_time,
    check_signed_files,
)
from evidence_store.verify import Fault

log = logging.getLogger(__name__)

RECORD = "redaction.json"
RECORD_FORMAT = "bodycam-redaction/v1"
VIDEO = "redacted.mp4"
SHEET = "review-sheet.png"
EDITS = "edits.json"
RELEASE_EVENT = "redact-event.json"
RELEASE_PROOF = "redact-event.tlog-proof"
TRAILER = (SUMS, SUMS_NOTE, RELEASE_EVENT, RELEASE_PROOF)

README_TEXT = """\
Redacted copy of body-worn camera clip {clip_id}
==========================================================================
Made {time} by evidence store log {origin}. The reason is in the store's log (the redact event;
personal data is kept there only as salted hashes).

What is here
  redacted.mp4        the video with faces and the listed areas covered, sound muted where listed
  review-sheet.png    stills with every covered area outlined (the evidence officer's check)
  redaction.json      how it was made: the source's camera-signed hashes, the face detector and the
                      SHA-256 of its weights, every parameter, the edits' hash, the output's hash
  edits.json          the officer's edits (areas, faces kept visible, blurred and muted times)
  manifest            the camera's signed statement about the clip; device.pub its key
  events/             the redact event (leaf bytes and C2SP tlog-proof); checkpoint; store.vkey
  SHA256SUMS(.note)   all files with SHA-256, plain and signed by the store key

How to check it
  1. sha256sum -c SHA256SUMS; SHA256SUMS.note is a C2SP signed note (store.vkey) whose text is SHA256SUMS.
  2. redaction.json "source" lists the plaintext SHA-256 of each segment; the camera signed the same
     values in "manifest" (Ed25519, device.pub). Whoever holds the original can re-run the redaction
     with the same record and obtain a byte-identical redacted.mp4 ("output" in redaction.json).
  3. redact-event.json is the store's log entry for this package: "files" is the SHA-256 of
     SHA256SUMS.note and "output" that of redacted.mp4; redact-event.tlog-proof proves it is logged.
"""


@dataclass
class ReleaseResult:
    out: Path
    files: list[str]
    begin_event: int
    sealed_event: int
    output_sha256: str
    frames: int
    covered_frames: int
    seconds: float


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def clip_duration(store, clip_id: str) -> float:
    """Seconds of video the camera signed for (the sum of its segments' durations)."""
    return sum((s.get("duration_ms") or 0) for s in store.segments(clip_id)) / 1000


def load_edits(store, clip_id: str, edits_file: str | None):
    from evidence_store.redact.edits import Edits, parse_edits

    if not edits_file:
        return Edits(), None
    try:
        data = Path(edits_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the edits file {edits_file}: {exc.strerror}") from None
    return parse_edits(data, clip_duration(store, clip_id), f"edits file {edits_file}"), data


def load_record(store, clip_id: str, record_file: str, edits) -> tuple[dict, object]:
    """A previous redaction record to replay: it must be about this clip's camera-signed source,
    and name the edits given (by hash). Returns (record, parameters)."""
    from dataclasses import fields

    from evidence_store.redact.engine import Params

    try:
        with open(record_file, "rb") as f:
            record = json.loads(f.read(64 << 20))
    except OSError as exc:
        raise UsageError(f"cannot read the redaction record {record_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"redaction record {record_file}: not JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise UsageError(f"redaction record {record_file}: not a {RECORD_FORMAT} record")
    if record.get("clip") != clip_id:
        raise UsageError(f"redaction record {record_file} is about clip {record.get('clip')}, not {clip_id}")
    source = [(s["name"], s["plaintext_sha256"]) for s in store.segments(clip_id)]
    named = [(s.get("name"), s.get("plaintext_sha256")) for s in (record.get("source") or {}).get("segments", [])
             if isinstance(s, dict)]
    if source != named:
        raise UsageError(f"redaction record {record_file} names another source than this clip's segments")
    wanted = (record.get("edits") or {}).get("sha256") if isinstance(record.get("edits"), dict) else None
    if wanted != edits.sha256:
        raise UsageError("the edits given are not the ones the record names",
                         "hint: pass the package's edits.json with --edits (or none if the record has none)")
    raw = record.get("parameters")
    defaults = Params()
    if not isinstance(raw, dict) or set(raw) != {f.name for f in fields(Params)} or any(
            type(raw[k]) is not type(getattr(defaults, k)) for k in raw):
        raise UsageError(f"redaction record {record_file}: parameters missing or of the wrong type")
    return record, Params(**raw)


def redact_clip(store, clip_id: str, out: str | os.PathLike, *, reason: str, identities: Sequence[Identity],
                edits_file: str | None = None, params=None, record_file: str | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> ReleaseResult:
    """Write the release package of ``clip_id`` into ``out`` (a new or empty folder).

    Everything that can be checked without plaintext is checked before the event is logged: the
    clip, the reason, the folder, the edits file, the record to replay, the detector's weights.
    """
    from evidence_store.redact.detector import weights_path
    from evidence_store.redact.engine import Params
    from evidence_store.view import IterReader, segment_plaintext

    params = params or Params()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty; write the package into a new folder")
    info = store._live_clip(clip_id)
    if not reason or not reason.strip():
        raise UsageError("a reason is required (--reason TEXT)")
    edits, edits_bytes = load_edits(store, clip_id, edits_file)
    replay = None
    if record_file:
        replay, params = load_record(store, clip_id, record_file, edits)
    else:
        weights_path()
    segments = store.segments(clip_id)
    begin = store.log_access(ev.REDACT, clip_id, reason=reason,
                             data={"step": "begin", "edits": edits.sha256,
                                   "params": hashlib.sha256(_dumps(params.as_dict())).hexdigest()})
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.redact-{os.getpid()}-{os.urandom(4).hex()}"
    work.mkdir(mode=0o700)
    started = time.monotonic()
    try:
        def source():
            return io.BufferedReader(IterReader(
                chunk for s in segments for chunk in segment_plaintext(store, s, identities)), 1 << 20)

        fps_guess = 25
        expected = int(clip_duration(store, clip_id) * fps_guess)
        result = _build(store, clip_id, info, work, begin, segments, edits, edits_bytes, params, source,
                        expected, progress, replay)
        os.replace(work, out)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, EvidenceError):
            # The access is logged (begin); say in the log too that nothing was released.
            store.append_event(ev.REDACT, clip_id, data={"step": "failed", "begin": begin.index,
                                                         "cause": str(exc)[:200]})
        raise
    fsync_dir(out.parent)
    result.out = out
    result.seconds = time.monotonic() - started
    log.info("redacted clip %s to %s (events %d, %d)", clip_id, out, result.begin_event, result.sealed_event)
    return result


def _dumps(value) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def _library_versions() -> dict:
    import av
    import cv2

    libs = {name: ".".join(map(str, v)) for name, v in sorted(av.library_versions.items())}
    return {"pyav": av.__version__, "opencv": cv2.__version__, "ffmpeg": libs}


def _build(store, clip_id, info, out: Path, begin, segments, edits, edits_bytes, params, source, expected,
           progress, replay=None) -> ReleaseResult:
    from evidence_store.redact.detector import NAME, WEIGHTS_FILE, WEIGHTS_PACKAGE
    from evidence_store.redact.engine import redact_stream

    result = redact_stream(source, out / VIDEO, edits=edits, params=params, expected_frames=expected,
                           progress=progress, replay=replay)
    video_sha = _file_sha256(out / VIDEO)
    _write_sheet(result, out / SHEET, clip_id)
    record = {
        "format": RECORD_FORMAT,
        "clip": clip_id,
        "source": {"manifest_sha256": info.manifest_sha256,
                   "segments": [{"name": s["name"], "plaintext_bytes": s["plaintext_bytes"],
                                 "plaintext_sha256": s["plaintext_sha256"]} for s in segments]},
        "detector": {"name": NAME, "weights": f"{WEIGHTS_PACKAGE}/{WEIGHTS_FILE}",
                     "weights_sha256": result.weights_sha256},
        "software": _library_versions(),
        "parameters": params.as_dict(),
        "edits": None if edits.sha256 is None else {"sha256": edits.sha256, "file": EDITS, **edits.as_dict()},
        "video": {"frames": result.frames, "fps": result.fps, "width": result.width, "height": result.height,
                  "audio": result.audio, "audio_samples": result.audio_samples},
        "faces": {"detections": result.detections, "tracks": result.tracks, "kept_tracks": result.kept},
        "covered_frames": result.covered_frames,
        "output": {"file": VIDEO, "sha256": video_sha},
        "event": begin.index,
        "replayed": replay is not None,
    }
    _write(out / RECORD, _dumps(record))
    if edits_bytes is not None:
        _write(out / EDITS, edits_bytes)
    _write(out / "manifest", store.objects.read(info.manifest_sha256))
    _write(out / "device.pub", (store.device(info.device_id).public_key + "\n").encode())
    _write(out / "store.vkey", (store.verifier_key + "\n").encode())
    checkpoint = store.log.latest_checkpoint()
    _write(out / "checkpoint", checkpoint)
    _write(out / "events" / f"{begin.index}.json", begin.leaf)
    _write(out / "events" / f"{begin.index}.tlog-proof", store.log.tlog_proof(begin.index, checkpoint).encode())
    _write(out / "README.txt", README_TEXT.format(clip_id=clip_id, time=begin_time(begin.leaf),
                                                  origin=store.origin).encode())
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    sums = "".join(f"{_file_sha256(out / name)}  {name}\n" for name in files)
    _write(out / SUMS, sums.encode())
    note = sign_note(sums, store.signer)
    _write(out / SUMS_NOTE, note)
    sums_sha = hashlib.sha256(note).hexdigest()
    sealed = store.append_event(ev.REDACT, clip_id, data={"step": "sealed", "files": sums_sha, "output": video_sha,
                                                          "begin": begin.index})
    _write(out / RELEASE_EVENT, sealed.leaf)
    _write(out / RELEASE_PROOF, store.log.tlog_proof(sealed.index, store.log.latest_checkpoint()).encode())
    return ReleaseResult(out, files, begin.index, sealed.index, video_sha, result.frames, result.covered_frames, 0.0)


def _write_sheet(result, path: Path, clip_id: str) -> None:
    from PIL import Image, ImageDraw

    frames = result.sheet_frames
    if not frames:
        return
    cols = 4
    tw = 320
    th = max(1, round(tw * result.height / result.width))
    rows = (len(frames) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tw, rows * (th + 18) + 18), "black")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), f"redacted clip {clip_id}: covered areas outlined", fill="white")
    for i, (t, rgb) in enumerate(frames):
        image = Image.fromarray(rgb).resize((tw, th), Image.Resampling.BILINEAR)
        x, y = (i % cols) * tw, 18 + (i // cols) * (th + 18)
        sheet.paste(image, (x, y))
        draw.text((x + 4, y + th + 2), f"+{t:6.2f}s", fill="white")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")  # no time chunk: Pillow writes none unless asked
    _write(path, buf.getvalue())


# -- progress -----------------------------------------------------------------------------------


class Progress:
    """Frames done, rate and time left on a terminal (one line, redrawn), or JSON lines for scripts."""

    def __init__(self, stream=None, *, json_lines: bool = False):
        self.stream = stream or sys.stderr
        self.json_lines = json_lines
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and done < total:
            return
        self.last = now
        # Two passes over every frame (detect, then cover and encode): the work is 2 x total.
        work = done + (total if phase == "encode" else 0)
        rate = work / max(1e-6, now - self.started)
        left = max(0.0, 2 * total - work) / max(rate, 1e-6)
        if self.json_lines:
            self.stream.write(json.dumps({"phase": phase, "frames": done, "total": total,
                                          "fps": round(rate, 1), "eta_s": round(left, 1)}) + "\n")
        else:
            self.stream.write(f"\r{phase:<7} {done}/{total} frames  {rate:5.1f} fps  {left:5.0f} s left ")
        self.stream.flush()

    def done(self) -> None:
        if not self.json_lines:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


# -- offline check ------------------------------------------------------------------------------


def verify_release(folder: str | os.PathLike, vkey: str | None = None) -> list[Fault]:
    """Check a release package offline; return every fault (empty: sound)."""
    root = Path(folder)
    faults: list[Fault] = []

    def fault(kind: str, where: str, message: str) -> None:
        faults.append(Fault(kind, where, message, HINT_PACKAGE))

    if not (root / SUMS).is_file() or not (root / RECORD).is_file():
        raise UsageError(f"{root} is not a release package (no {SUMS} or {RECORD})")
    checked = check_signed_files(root, vkey, fault, TRAILER)
    if checked is None:
        return faults
    verifier, listed = checked
    for needed in (VIDEO, RECORD, "manifest", "checkpoint"):
        if needed not in listed:
            fault("file-missing", needed, "is not in the package")
    try:
        record = json.loads((root / RECORD).read_bytes()[: 64 << 20])
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f"not a {RECORD_FORMAT} record")
        # The parts read below must have their shape, or a forged record would end in a traceback.
        source = record.get("source")
        if (not isinstance(record.get("output"), dict) or not isinstance(record.get("edits"), (dict, type(None)))
                or not isinstance(source, dict) or not isinstance(source.get("segments"), list)
                or not all(isinstance(seg, dict) for seg in source["segments"])):
            raise ValueError("its output, edits or source segments are not of the record's form")
    except UNTRUSTED_FAULTS as exc:
        fault("record-invalid", RECORD, _why(exc))
        return faults
    # The source the record names is what the camera signed.
    try:
        device_key = DevicePublicKey.parse((root / "device.pub").read_text().strip())
        manifest = parse_manifest((root / "manifest").read_bytes(), device_key)
        signed = [(s.name, s.plaintext_bytes, s.plaintext_sha256) for s in manifest.segments]
        named = [(s.get("name"), s.get("plaintext_bytes"), s.get("plaintext_sha256"))
                 for s in record.get("source", {}).get("segments", [])]
        if signed != named:
            fault("record-source", RECORD, "names other source segments than the camera signed")
        if manifest.clip_id != record.get("clip"):
            fault("record-source", RECORD, "is about another clip than the manifest")
    except (*UNTRUSTED_FAULTS, AttributeError) as exc:
        fault("camera-signature", "manifest", _why(exc))
    if (root / VIDEO).is_file() and record.get("output", {}).get("sha256") != _file_sha256(root / VIDEO):
        fault("record-output", VIDEO, "is not the output the record names")
    edits = record.get("edits")
    if edits is not None and (not (root / EDITS).is_file() or _file_sha256(root / EDITS) != edits.get("sha256")):
        fault("record-edits", EDITS, "is missing or not the edits the record names")
    # The begin event (logged before decrypting) and the sealed event naming this package.
    checkpoint = (root / "checkpoint").read_bytes() if (root / "checkpoint").is_file() else b""
    begin = record.get("event")
    try:
        leaf = (root / "events" / f"{begin}.json").read_bytes()
        proof = (root / "events" / f"{begin}.tlog-proof").read_bytes()
        cpmod.verify_tlog_proof(proof, leaf, verifier)
        if cpmod.parse_tlog_proof(proof).checkpoint != checkpoint:
            fault("proof-checkpoint", f"events/{begin}", "proves against another checkpoint than the package's")
        body = ev.parse_leaf(leaf, f"events/{begin}")
        if body.get("kind") != ev.REDACT or body.get("step") != "begin" or body.get("clip") != record.get("clip"):
            fault("event-mismatch", f"events/{begin}", "is not the redact event of this clip")
        if body.get("edits") != (edits or {}).get("sha256"):
            fault("event-mismatch", f"events/{begin}", "names other edits than the record")
    except (*UNTRUSTED_FAULTS, TypeError) as exc:
        fault("proof-invalid", f"events/{begin}", _why(exc))
    try:
        leaf = (root / RELEASE_EVENT).read_bytes()
        cpmod.verify_tlog_proof((root / RELEASE_PROOF).read_bytes(), leaf, verifier)
        body = ev.parse_leaf(leaf, RELEASE_EVENT)
        if body.get("kind") != ev.REDACT or body.get("files") != _file_sha256(root / SUMS_NOTE):
            fault("release-event", RELEASE_EVENT, f"does not name this package's {SUMS_NOTE}")
        if body.get("output") != record.get("output", {}).get("sha256") or body.get("begin") != begin:
            fault("release-event", RELEASE_EVENT, "names another output or begin event than the record")
        if body.get("clip") != record.get("clip"):
            fault("release-event", RELEASE_EVENT, "is about another clip")
    except (OSError, EvidenceError, FormatError) as exc:
        fault("release-event", RELEASE_EVENT, str(exc))
    return faults
