"""Export for court, and its offline check (``verify-export``).

Package layout (README_TEXT explains it to the recipient)::

    README.txt                how to check everything with standard tools
    segments/seg-NNNNN.ts     decrypted MPEG-TS, byte for byte what the camera signed (plaintext_sha256)
    clip.mp4                  the same picture and sound remuxed into MP4 without re-encoding (PyAV)
    manifest, journal         as the camera signed them
    device.pub                the camera's Ed25519 public key (base64), as enrolled
    store.vkey                the store's note verifier key (compare with the published one)
    checkpoint                the signed log checkpoint the proofs below lead to
    events/<index>.json       every event about the clip: its exact leaf bytes
    events/<index>.tlog-proof its C2SP tlog-proof against ``checkpoint``
    SHA256SUMS                sha256sum list of every file above
    SHA256SUMS.note           the same list as a note signed by the store key
    export-event.json         the export's own log entry: names the SHA-256 of SHA256SUMS.note
    export-event.tlog-proof   its tlog-proof (against a newer checkpoint, inside the proof)

Two export events. The law wants the access logged before any plaintext exists, and the issue
wants the export event to record the signed file list's hash, which exists only after decrypting.
So the first export event (step "begin", with the reason) is committed before decryption; the
second (step "sealed") records the file list's hash after. The second cannot be inside the list
it names, so it ships beside it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store import plaintext
from evidence_store.clip.age import Identity
from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.fsutil import atomic_write, fsync_dir
from evidence_store.clip.journal import parse_journal
from evidence_store.clip.manifest import parse_manifest
from evidence_store.clip.note import NoteVerifier, open_note, sign_note
from evidence_store.errors import EvidenceError, UsageError
from evidence_store.verify import Fault
from evidence_store.view import quarantined_plaintext, segment_plaintext

log = logging.getLogger(__name__)

SUMS = "SHA256SUMS"
SUMS_NOTE = "SHA256SUMS.note"
EXPORT_EVENT = "export-event.json"
EXPORT_PROOF = "export-event.tlog-proof"
TRAILER = (SUMS, SUMS_NOTE, EXPORT_EVENT, EXPORT_PROOF)
MP4 = "clip.mp4"
HINT_PACKAGE = "the package was altered or is incomplete: ask the evidence office for a new export"

README_TEXT = """\
Export of body-worn camera clip {clip_id}
==========================================================================
Exported {time} from evidence store log {origin}.
Reason given: see the export event in the store's log (personal data is kept only as salted hashes).

What is here
  segments/*.ts        the decrypted recording, MPEG-TS (H.264 picture, AAC sound if the
                       manifest says "sound": true), exactly as recorded
  clip.mp4             the same picture and sound in MP4, remuxed without re-encoding
  manifest, journal    the camera's signed statements about the clip (JSON; Ed25519)
  device.pub           the camera's public key; store.vkey the store's note verifier key
  events/              every logged event about the clip: leaf bytes (.json) and proof (.tlog-proof)
  checkpoint           the store's signed log checkpoint (C2SP tlog-checkpoint)
  SHA256SUMS(.note)    the list of all files with SHA-256, plain and signed by the store key

How to check it without our software
  1. Files:     sha256sum -c SHA256SUMS
  2. Signature: SHA256SUMS.note is a C2SP signed note (golang.org/x/mod/sumdb/note): open it
                with the verifier key in store.vkey, after comparing that key with the one the
                store published (for example to the data-protection officer); its text must be
                identical to SHA256SUMS.
  3. Video:     sha256sum segments/*.ts must equal "plaintext_sha256" of each segment in
                "manifest"; ffprobe segments/seg-00000.ts and ffprobe clip.mp4 show the streams.
  4. Manifest:  an Ed25519 signature (device.pub) over "bodycam.manifest.v1\\n" followed by the
                canonical JSON of the "manifest" member (sorted keys, no spaces).
  5. Log:       each events/N.tlog-proof is a C2SP tlog-proof; check it with Go's
                golang.org/x/mod/sumdb/tlog: tlog.CheckRecord(proof, size, root, N,
                tlog.RecordHash(contents of events/N.json)) against the checkpoint it carries
                (note.Open with store.vkey). The events form a chain: each one's "prev" is the
                RFC 9162 leaf hash, SHA-256(0x00 || leaf), of the previous one.
  6. This export: export-event.json is the store's log entry for this export; its "files" field
                is the SHA-256 of SHA256SUMS.note; export-event.tlog-proof proves it is logged.
  With the store's identity, the original encrypted segments decrypt with the standard
  "age -d -i identity.age" tool to the same .ts bytes.
"""


@dataclass
class ExportResult:
    out: Path
    files: list[str]
    begin_event: int
    sealed_event: int
    sums_sha256: str


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def export_clip(store, clip_id: str, out: str | os.PathLike, *, reason: str,
                identities: Sequence[Identity]) -> ExportResult:
    """Write the court package for ``clip_id`` into ``out`` (a new or empty folder).

    The identities must already be open (a wrong passphrase fails before anything is logged).
    Raises UsageError (unknown/expired clip, missing reason, ``out`` not empty) before logging.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty; export into a new folder")
    info = store._live_item(clip_id)
    clip_id = info.clip_id
    # 1. The access is logged before any plaintext exists.
    begin = store.log_access(ev.EXPORT, clip_id, reason=reason, data={"step": "begin"})
    # The package is built in a private folder beside ``out`` and renamed into place at the end,
    # so that a failure (a damaged object, a full disk, Ctrl-C) never leaves decrypted video
    # behind in a half-made package: plaintext exists only in a complete, sealed export.
    # A killed export cannot clean up: its work folder is private and registered, and the next
    # store command (or export here) removes it once its process is gone (evidence_store/plaintext.py).
    out.parent.mkdir(parents=True, exist_ok=True)
    plaintext.sweep(store.root, out.parent)
    work = plaintext.make_workdir(out.parent, "export", store.root)
    try:
        result = _build(store, clip_id, info, work, begin, identities)
        os.replace(work, out)  # onto a missing or empty folder: atomic
    except BaseException:
        plaintext.remove_workdir(work, store.root)
        raise
    plaintext.remove_workdir(work, store.root)  # only its registration is left: the folder is `out` now
    fsync_dir(out.parent)
    result.out = out
    log.info("exported clip %s to %s (events %d, %d)", clip_id, out, result.begin_event, result.sealed_event)
    return result


def _build(store, clip_id: str, info, out: Path, begin, identities: Sequence[Identity]) -> ExportResult:
    """Write the package into ``out`` (the private work folder); see export_clip."""
    # 2. Decrypted segments, checked against the camera-signed plaintext hashes while written.
    if info.quarantine_reason is not None:
        return _build_quarantine(store, clip_id, info, out, begin, identities)
    ts_files = []
    with plaintext.private_umask():  # decrypted video: 0600 files, 0700 folders
        for segment in store.segments(clip_id):
            path = out / "segments" / (segment["name"].removesuffix(".age") + ".ts")
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name("." + path.name + ".tmp")
            with open(tmp, "wb") as f:
                for chunk in segment_plaintext(store, segment, identities):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            ts_files.append(path)
        # 3. MP4 by remuxing (no re-encoding: the pictures stay the camera's).
        remux_to_mp4(ts_files, out / MP4)
    # 4. Signed camera files, keys, events with proofs against one checkpoint.
    _write(out / "manifest", store.objects.read(info.manifest_sha256))
    _write(out / "journal", store.objects.read(info.journal_sha256))
    _write(out / "device.pub", (store.device(info.device_id).public_key + "\n").encode())
    return _seal(store, clip_id, out, begin)


QUARANTINE_FILE = "QUARANTINE.txt"


def _build_quarantine(store, qid: str, info, out: Path, begin, identities: Sequence[Identity]) -> ExportResult:
    """The package for quarantined material: why it was rejected, every kept file as found
    (files/), what age can open of each (segments/, nothing camera-signed vouches for it), the
    manifest and journal it came with if any, and the events with proofs, signed like a clip's."""
    lines = [f"quarantine id  {qid}", f"reason         {info.quarantine_reason}",
             f"claims clip    {info.claimed_clip_id or '-'} (untrusted)", f"camera         {info.device_id or '-'}",
             "No camera signature vouches for these files: that is why they were quarantined."]
    _write(out / QUARANTINE_FILE, ("\n".join(lines) + "\n").encode())
    for number, obj in enumerate(store.segments(qid)):
        # Kept names come from a hostile partition: never a path, only a tame label.
        label = f"{number:04d}-" + re.sub(r"[^A-Za-z0-9._-]", "_", obj["name"])[:80]
        _write(out / "files" / label, store.objects.read(obj["sha256"]))
        path = out / "segments" / (label + ".ts")
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            for chunk in quarantined_plaintext(store, obj, identities):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if path.stat().st_size == 0:
            path.unlink()  # no age file for our identities: only its bytes under files/
    for name, sha in (("manifest", info.manifest_sha256), ("journal", info.journal_sha256)):
        if sha:
            _write(out / name, store.objects.read(sha))
    device = store.device(info.device_id) if info.device_id else None
    if device is not None:
        _write(out / "device.pub", (device.public_key + "\n").encode())
    return _seal(store, qid, out, begin)


def _seal(store, clip_id: str, out: Path, begin) -> ExportResult:
    _write(out / "store.vkey", (store.verifier_key + "\n").encode())
    checkpoint = store.log.latest_checkpoint()
    _write(out / "checkpoint", checkpoint)
    size = cpmod.parse_checkpoint(open_note(checkpoint, store.verifier)).size
    for event in store.events(clip_id=clip_id):
        if event["index"] >= size:
            continue  # appended by someone else after our checkpoint was read
        leaf = store.log.leaf(event["index"])
        _write(out / "events" / f"{event['index']}.json", leaf)
        _write(out / "events" / f"{event['index']}.tlog-proof", store.log.tlog_proof(event["index"], checkpoint).encode())
    _write(out / "README.txt", README_TEXT.format(clip_id=clip_id, time=begin_time(begin.leaf), origin=store.origin).encode())
    # 5. The signed file list; 6. the sealed export event naming its hash.
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    sums = "".join(f"{_file_sha256(out / name)}  {name}\n" for name in files)
    _write(out / SUMS, sums.encode())
    note = sign_note(sums, store.signer)
    _write(out / SUMS_NOTE, note)
    sums_sha = hashlib.sha256(note).hexdigest()
    sealed = store.append_event(ev.EXPORT, clip_id, data={"step": "sealed", "files": sums_sha, "begin": begin.index})
    latest = store.log.latest_checkpoint()
    _write(out / EXPORT_EVENT, sealed.leaf)
    _write(out / EXPORT_PROOF, store.log.tlog_proof(sealed.index, latest).encode())
    return ExportResult(out, files, begin.index, sealed.index, sums_sha)


def begin_time(leaf: bytes) -> str:
    return ev.parse_leaf(leaf)["time"]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SegmentSpan:
    """Where one segment's picture lies on its own time line (seconds), and the shift that puts
    it after the previous segment's picture on the export's continuous time line."""

    start: float
    end: float  # the last frame's presentation time plus one frame
    shift: float


def segment_spans(ts_files: Sequence[Path]) -> list[SegmentSpan | None]:
    """The picture's span of each TS file (None: no video), demuxed without decoding. The shift
    is zero unless a segment's time line starts over; both streams of a segment get the same
    shift, so sound stays where it was against the picture."""
    import av

    spans: list[SegmentSpan | None] = []
    last_end = None
    for path in ts_files:
        with av.open(str(path), format="mpegts") as container:
            if not container.streams.video:
                spans.append(None)
                continue
            stream = container.streams.video[0]
            frame = 1 / float(stream.average_rate or 25)
            times = [float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None]
        if not times:
            spans.append(None)
            continue
        start, end = min(times), max(times) + frame
        shift = 0.0
        if last_end is not None and start < last_end - frame / 2:
            shift = last_end - start
        spans.append(SegmentSpan(start, end, shift))
        last_end = end + shift
    return spans


def segment_packets(ts_files: Sequence[Path], *, sound: bool = True):
    """Yield ``("video"|"sound", packet)`` of every segment, without decoding, on one continuous
    time line (packet timestamps shifted as ``segment_spans`` says). Sound is cut to the
    picture's span (a sound frame that starts after the last picture's end, or ends before the
    first picture, is left out): the muxer's last sound frames would otherwise outlast the
    picture. Redaction re-encodes the picture but carries the sound through this unchanged."""
    import av

    for path, span in zip(ts_files, segment_spans(ts_files)):
        if span is None:
            continue
        with av.open(str(path), format="mpegts") as container:
            video = container.streams.video[0]
            streams: list[av.stream.Stream] = [video]
            if sound and container.streams.audio and container.streams.audio[0].codec_context.name == "aac":
                streams.append(container.streams.audio[0])
            for packet in container.demux(streams):
                if packet.dts is None or packet.pts is None:
                    continue
                kind = "video" if packet.stream is video else "sound"
                if kind == "sound":
                    at = float(packet.pts * packet.time_base)
                    length = float((packet.duration or 0) * packet.time_base)
                    if at >= span.end or at + length <= span.start:
                        continue
                if span.shift:
                    delta = round(span.shift / packet.time_base)
                    packet.dts += delta
                    packet.pts += delta
                yield kind, packet


def add_streams_like(output, ts_files: Sequence[Path], *, sound: bool = True) -> dict[str, object]:
    """Add to ``output`` (before anything is muxed: the header lists every stream) a stream for the
    picture, and for the sound if the first segment with a picture has AAC, copied from that
    segment's parameters. Returns them by the kinds ``segment_packets`` yields."""
    import av

    for path in ts_files:
        with av.open(str(path), format="mpegts") as container:
            if not container.streams.video:
                continue
            streams = {"video": output.add_stream_from_template(container.streams.video[0])}
            if sound and container.streams.audio and container.streams.audio[0].codec_context.name == "aac":
                streams["sound"] = output.add_stream_from_template(container.streams.audio[0])
            for kind, template in (("video", container.streams.video), ("sound", container.streams.audio)):
                if kind in streams:
                    streams[kind].time_base = template[0].time_base  # unset, the MP4 muxer divides by 0
            return streams
    return {}


def _has_picture(path: Path) -> bool:
    """Whether the TS file opens and has a video stream. A recording killed in its first instant
    leaves an empty or nearly empty segment, on which PyAV raises EOFError."""
    import av

    if path.stat().st_size == 0:
        return False
    try:
        with av.open(str(path), format="mpegts") as container:
            return bool(container.streams.video)
    except av.FFmpegError as exc:
        log.warning("segment %s holds no readable MPEG-TS (%s): not in the MP4", path.name, exc)
        return False


def _sound_within_picture(ts_files: Sequence[Path]) -> bool:
    """Whether any sound packet lies within the picture's span (what remux_to_mp4 copies)."""
    import av

    try:
        readable = [p for p in ts_files if p.is_file() and _has_picture(p)]
        return any(kind == "sound" for kind, _ in segment_packets(readable))
    except av.FFmpegError:
        return True  # unreadable: keep whatever the MP4 check found


def remux_to_mp4(ts_files: Sequence[Path], mp4: Path) -> int:
    """Copy the H.264 and AAC packets of the TS files into one MP4 without decoding. Returns
    the number of video packets.

    Segments without a readable picture add nothing; with none at all no MP4 is written and 0 is
    returned: the decrypted .ts segments are the record, the MP4 only a copy of them."""
    import av

    ts_files = [p for p in ts_files if _has_picture(p)]
    if not ts_files:
        return 0
    output = av.open(str(mp4), mode="w", format="mp4")
    packets = 0
    try:
        out_streams = add_streams_like(output, ts_files)
        for kind, packet in segment_packets(ts_files, sound="sound" in out_streams):
            packet.stream = out_streams[kind]
            output.mux(packet)
            packets += kind == "video"
    finally:
        output.close()
    return packets


# -- offline check ------------------------------------------------------------------------------

#: What reading a file of the package may raise. The package is untrusted input: any of these
#: becomes a fault in the list (exit 3), never a traceback. ValueError covers text that is not
#: UTF-8 and numbers too long to convert; RecursionError deep nesting.
UNTRUSTED_FAULTS = (OSError, EvidenceError, ValueError, RecursionError)


def _why(exc: BaseException) -> str:
    """One line for a fault: our errors say it themselves; Python's are named by their kind."""
    if isinstance(exc, EvidenceError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "is not UTF-8 text"
    if isinstance(exc, RecursionError):
        return "nests too deeply"
    return "holds a malformed value (a number too long, or not the expected form)"


def check_mp4_streams(mp4: Path, sound: bool) -> str | None:
    """None if the MP4 has one H.264 stream and, exactly when the manifest says the clip has
    sound, one AAC stream within the picture's span (give or take a frame); else what is wrong.
    Reads packet headers only, no decoding."""
    import av

    try:
        with av.open(str(mp4)) as container:
            videos, audios = container.streams.video, container.streams.audio
            if len(videos) != 1 or videos[0].codec_context.name != "h264":
                return "does not hold exactly one H.264 picture stream"
            if not sound:
                return "holds sound, but the manifest says the camera recorded none" if audios else None
            if len(audios) != 1 or audios[0].codec_context.name != "aac":
                return "the manifest says the clip has sound, but there is no AAC stream"
            frame = 1 / float(videos[0].average_rate or 25)
            spans: dict[object, list[float]] = {videos[0]: [], audios[0]: []}
            for packet in container.demux(videos[0], audios[0]):
                if packet.pts is None:
                    continue
                at = float(packet.pts * packet.time_base)
                end = at + float((packet.duration or 0) * packet.time_base)
                span = spans[packet.stream]
                span[:] = [min(span[0], at), max(span[1], end)] if span else [at, end]
    except (av.FFmpegError, OSError) as exc:
        return f"cannot be read: {exc}"
    if not spans[audios[0]]:
        return "the manifest says the clip has sound, but its AAC stream is empty"
    (v0, v1), (a0, a1) = spans[videos[0]] or [0, 0], spans[audios[0]]
    # Sound may start late or end early (a microphone that failed: the manifest notes it), but
    # never reach more than a frame beyond the picture: the export cuts it to the picture's span.
    if a0 < v0 - frame - 1e-3 or a1 > v1 + frame + 1e-3:
        return (f"its sound ({a0:.3f}-{a1:.3f} s) reaches beyond its picture ({v0:.3f}-{v1:.3f} s) "
                f"by more than a frame")
    return None



def check_signed_files(root: Path, vkey: str | None, fault: Callable[[str, str, str], None],
                       trailer: Sequence[str]) -> tuple[NoteVerifier, dict[str, str]] | None:
    """The first steps of checking any package (court export, case export, release): the store
    key, the file list signed by it, every listed file against its SHA-256, nothing unlisted but
    the ``trailer`` (the list itself and the event that names its hash). Faults go to ``fault``;
    returns the verifier and the listed names with their digests, or None when there is no key
    to check with."""
    # 1. The store key.
    try:
        shipped = (root / "store.vkey").read_text().strip()
        verifier = NoteVerifier.from_vkey(vkey or shipped)
        if vkey and vkey.strip() != shipped:
            fault("key-mismatch", "store.vkey", "is not the verifier key you gave")
    except UNTRUSTED_FAULTS as exc:
        fault("key-invalid", "store.vkey", _why(exc))
        return None
    # 2. The signed file list.
    sums = (root / SUMS).read_bytes()
    try:
        text = open_note((root / SUMS_NOTE).read_bytes(), verifier)
        if text.encode() != sums:
            fault("list-mismatch", SUMS, f"differs from the signed {SUMS_NOTE}")
    except UNTRUSTED_FAULTS as exc:
        fault("list-signature", SUMS_NOTE, f"does not verify: {_why(exc)}")
    # 3. Every listed file, and nothing unlisted.
    listed: dict[str, str] = {}
    for line in sums.decode("utf-8", "replace").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
        path = root / name
        if ".." in Path(name).parts or not path.is_file():
            fault("file-missing", name, "is listed but missing")
        elif _file_sha256(path) != digest:
            fault("file-altered", name, "does not match its SHA-256 in the signed list")
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    for extra in sorted(present - set(listed) - set(trailer)):
        fault("file-unlisted", extra, "is not in the signed file list")
    return verifier, listed


def verify_export(folder: str | os.PathLike, vkey: str | None = None) -> list[Fault]:
    """Check a package offline; return every fault (empty list: sound).

    ``vkey`` is the store's published verifier key; without it the package's own store.vkey is
    used (then the recipient must still compare that key with the published one).
    """
    root = Path(folder)
    faults: list[Fault] = []

    def fault(kind: str, where: str, message: str) -> None:
        faults.append(Fault(kind, where, message, HINT_PACKAGE))

    if not (root / SUMS).is_file():
        raise UsageError(f"{root} is not an export package (no {SUMS})")
    checked = check_signed_files(root, vkey, fault, TRAILER)
    if checked is None:
        return faults
    verifier, listed = checked
    # 4. Camera-signed manifest and journal, and the video against them.
    manifest = None
    try:
        device_key = DevicePublicKey.parse((root / "device.pub").read_text().strip())
        manifest = parse_manifest((root / "manifest").read_bytes(), device_key)
        parse_journal((root / "journal").read_bytes(), device_key, manifest.clip_id)
    except UNTRUSTED_FAULTS as exc:
        fault("camera-signature", "manifest/journal", _why(exc))
    if manifest is not None:
        for seg in manifest.segments:
            name = f"segments/{seg.name.removesuffix('.age')}.ts"
            path = root / name
            if not path.is_file():
                fault("segment-missing", name, "is missing")
            elif _file_sha256(path) != seg.plaintext_sha256 or path.stat().st_size != seg.plaintext_bytes:
                fault("segment-altered", name, "differs from the plaintext the camera signed")
        ts_files = [root / f"segments/{seg.name.removesuffix('.age')}.ts" for seg in manifest.segments]
        if (root / MP4).is_file():
            problem = check_mp4_streams(root / MP4, manifest.sound)
            if problem is not None and manifest.sound and not _sound_within_picture(ts_files):
                # Stopped before its first sound frame under a picture (the first instant of a
                # recording): the MP4 has no sound to carry, as an honest export makes it.
                problem = check_mp4_streams(root / MP4, False)
        elif any(path.is_file() and _has_picture(path) for path in ts_files):
            problem = f"{MP4} is missing"
        else:
            problem = None  # no segment holds a picture (stopped at its first instant): no MP4 is made
        if problem is not None:
            fault("mp4-streams", MP4, problem)
    # 5. Events: proofs, chain, and what they say about this clip.
    checkpoint = (root / "checkpoint").read_bytes() if (root / "checkpoint").is_file() else b""
    prev = None
    ingest = None
    indexes = []
    for p in sorted((root / "events").glob("*.json")):
        # Only events/<log index>.json are events; anything else was put there (the export writes
        # no other name), so it is a fault of the package, never a crash of the checker.
        if p.stem.isascii() and p.stem.isdigit() and str(int(p.stem)) == p.stem:
            indexes.append(int(p.stem))
        else:
            fault("file-unexpected", f"events/{p.name}", "is not named by a log index: no export writes it")
    for index in sorted(indexes):
        where = f"events/{index}"
        leaf = (root / "events" / f"{index}.json").read_bytes()
        try:
            proof_text = (root / "events" / f"{index}.tlog-proof").read_bytes()
            cpmod.verify_tlog_proof(proof_text, leaf, verifier)
            if cpmod.parse_tlog_proof(proof_text).checkpoint != checkpoint:
                fault("proof-checkpoint", where, "proves against another checkpoint than the package's")
            body = ev.parse_leaf(leaf, where)
        except UNTRUSTED_FAULTS as exc:
            fault("proof-invalid", where, _why(exc))
            continue
        if body["index"] != index:
            fault("event-index", where, f"says it is entry {body['index']}")
        if manifest is not None and body.get("clip") != manifest.clip_id:
            fault("event-clip", where, f"is about clip {body.get('clip')}, not {manifest.clip_id}")
        if body.get("prev") != prev:
            fault("event-chain", where, "does not follow the previous event about the clip (an event is missing)")
        prev = ev.leaf_hash_hex(leaf)
        if body["kind"] == ev.INGEST:
            ingest = body
    if ingest is None:
        fault("event-missing", "events", "the clip's ingest event is missing")
    elif manifest is not None:
        if ingest.get("manifest") != _file_sha256(root / "manifest"):
            fault("event-manifest", "manifest", "is not the manifest the store's ingest event names")
        if ingest.get("journal") != _file_sha256(root / "journal"):
            fault("event-journal", "journal", "is not the journal the store's ingest event names")
    # 6. The export's own event.
    try:
        leaf = (root / EXPORT_EVENT).read_bytes()
        cpmod.verify_tlog_proof((root / EXPORT_PROOF).read_bytes(), leaf, verifier)
        body = ev.parse_leaf(leaf, EXPORT_EVENT)
        note_sha = _file_sha256(root / SUMS_NOTE)
        if body.get("kind") != ev.EXPORT or body.get("files") != note_sha:
            fault("export-event", EXPORT_EVENT, f"does not name this package's {SUMS_NOTE}")
        if manifest is not None and body.get("clip") != manifest.clip_id:
            fault("export-event", EXPORT_EVENT, "is about another clip")
    except UNTRUSTED_FAULTS as exc:
        fault("export-event", EXPORT_EVENT, _why(exc))
    return faults
