"""The redaction itself: two passes over the clip's MPEG-TS plaintext, H.264 (+ AAC) MP4 out.

Pass 1 decodes every frame and runs the detector on every ``stride``-th one (scaled down to
``detect_width``: faces at a bodycam's distances stay many pixels wide, and detection is what
costs); tracks.py turns those into a box on every frame. Pass 2 decodes again, covers the boxes in
the YUV planes (no colour conversion of whole frames), and encodes. Plaintext is read from memory
twice rather than kept: nothing decrypted touches the disk but the redacted result.

Determinism: the encoders' settings are fixed in ``Params`` (x264 with a fixed thread count is
repeatable; only its ``non-deterministic`` flag breaks that, and it is off), the muxer writes no
times or versions (bitexact), and covers are pure integer image operations. So the same source
and the same record give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from evidence_store.errors import EvidenceError
from evidence_store.redact.edits import Edits
from evidence_store.redact.tracks import Tracker, frame_boxes

#: A face covered is reduced to this many cells per side and smoothed back up: no feature left,
#: and colour kept so the picture still reads.
COVER_CELLS = 3
#: "blur whole": the frame is reduced by this factor and smoothed back up.
WHOLE_FACTOR = 24


@dataclass(frozen=True)
class Params:
    stride: int = 3  # detect on every 3rd frame
    detect_width: int = 640
    threshold: float = 0.4
    margin: float = 0.4  # each side, as a share of the face box (hair, ears, a turned head)
    max_gap_seconds: float = 1.0  # a track survives detector misses this long
    hold_seconds: float = 0.3  # and covers this long after its last detection
    crf: int = 20
    preset: str = "veryfast"
    x264_threads: int = 2
    audio_bitrate: int = 96000

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    frames: int = 0
    fps: str = ""
    width: int = 0
    height: int = 0
    audio: bool = False
    audio_samples: int = 0
    detections: int = 0
    tracks: list[dict] = field(default_factory=list)
    covered_frames: int = 0
    kept: list[int] = field(default_factory=list)  # track ids left visible by keep_faces
    sheet_frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    weights_sha256: str = ""


Progress = Callable[[str, int, int], None]  # phase, done, total


def _open(source: Callable[[], io.RawIOBase]):
    import av

    try:
        container = av.open(source(), format="mpegts")
    except av.FFmpegError as exc:
        raise EvidenceError(f"cannot read the clip's video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise EvidenceError("the clip holds no video stream: nothing to redact")
    return container


def redact_stream(source: Callable[[], io.RawIOBase], out_path, *, edits: Edits, params: Params,
                  expected_frames: int = 0, progress: Progress | None = None, sheet_count: int = 12,
                  replay: dict | None = None) -> Result:
    """Redact the MPEG-TS that ``source()`` yields (called twice) into the MP4 ``out_path``.

    ``replay`` is a redaction record (release.py): its tracks are applied instead of running the
    detector, so the same source gives the same bytes even where the detector's floating point
    would differ (another CPU), which is how a court confirms a copy.
    """
    import av

    from evidence_store.redact.detector import FaceDetector

    result = Result()
    if replay is not None:
        return _replay(source, out_path, edits, params, replay, progress, sheet_count, result)
    # -- pass 1: detect ---------------------------------------------------------------------
    container = _open(source)
    vstream = container.streams.video[0]
    vstream.thread_type = "AUTO"  # decoding is exact whatever the threads
    fps = Fraction(vstream.average_rate or vstream.guessed_rate or 25)
    width, height = vstream.codec_context.width, vstream.codec_context.height
    if width % 2 or height % 2 or not width or not height:
        container.close()
        raise EvidenceError(f"unsupported frame size {width}x{height}")
    result.fps, result.width, result.height = str(fps), width, height
    result.audio = bool(container.streams.audio)
    detector = FaceDetector(width, height, detect_width=params.detect_width, threshold=params.threshold)
    result.weights_sha256 = detector.weights_sha256
    max_gap = max(params.stride, round(params.max_gap_seconds * fps))
    tracker = Tracker(max_gap=max_gap)
    dw, dh = detector.size
    n = 0
    try:
        for frame in container.decode(vstream):
            if n % params.stride == 0:
                rgb = frame.reformat(width=dw, height=dh, format="rgb24", interpolation="AREA").to_ndarray()
                found = detector.detect_rgb(rgb)
                result.detections += len(found)
                tracker.update(n, [(round(d.x1, 1), round(d.y1, 1), round(d.x2, 1), round(d.y2, 1)) for d in found])
            n += 1
            if progress and n % 25 == 0:
                progress("detect", n, max(expected_frames, n))
    except av.FFmpegError as exc:
        raise EvidenceError(f"cannot decode the clip's video ({exc})") from None
    finally:
        container.close()
    if n == 0:
        raise EvidenceError("the clip holds no decodable video frame")
    result.frames = n
    _plan_and_encode(source, out_path, tracker.tracks, _kept_tracks(tracker.tracks, edits, fps), edits, params,
                     fps, width, height, result, progress, sheet_count)
    return result


def _replay(source, out_path, edits: Edits, params: Params, record: dict, progress, sheet_count: int,
            result: Result) -> Result:
    from evidence_store.redact.tracks import Track

    try:
        video = record["video"]
        fps = Fraction(video["fps"])
        width, height, frames = int(video["width"]), int(video["height"]), int(video["frames"])
        tracks = [Track(int(t["track"]), {int(d[0]): (float(d[1]), float(d[2]), float(d[3]), float(d[4]))
                                          for d in t["detections"]})
                  for t in record["faces"]["tracks"]]
        kept = {int(k) for k in record["faces"]["kept_tracks"]}
        result.detections = int(record["faces"]["detections"])
        result.weights_sha256 = str(record["detector"]["weights_sha256"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError) as exc:
        raise EvidenceError(f"the redaction record is incomplete or malformed ({exc})") from None
    if any(not t.detections for t in tracks):
        raise EvidenceError("the redaction record has a track without detections")
    container = _open(source)
    try:
        vstream = container.streams.video[0]
        if (vstream.codec_context.width, vstream.codec_context.height) != (width, height):
            raise EvidenceError("the redaction record is for another frame size than this clip's")
        result.audio = bool(container.streams.audio)
    finally:
        container.close()
    result.fps, result.width, result.height, result.frames = str(fps), width, height, frames
    _plan_and_encode(source, out_path, tracks, kept, edits, params, fps, width, height, result, progress, sheet_count)
    return result


def _plan_and_encode(source, out_path, tracks, kept, edits: Edits, params: Params, fps: Fraction, width: int,
                     height: int, result: Result, progress, sheet_count: int) -> None:
    n = result.frames
    boxes = frame_boxes(tracks, n, stride=params.stride, hold=round(params.hold_seconds * fps),
                        margin=params.margin, width=width, height=height)
    result.kept = sorted(kept)
    result.tracks = [{"track": t.track_id, "kept": t.track_id in kept,
                      "detections": [[f, *[round(v, 1) for v in t.detections[f]]] for f in sorted(t.detections)]}
                     for t in tracks]
    plan = {}
    for f in range(n):
        t = f / fps
        covers = [b for tid, b in boxes.get(f, []) if tid not in kept]
        covers += [_clip_box(s.box, width, height) for s in edits.boxes if s.covers(t)]
        covers = merge_overlaps([b for b in covers if b is not None])
        whole = any(s.covers(t) for s in edits.blur)
        if covers or whole:
            plan[f] = (covers, whole)
    result.covered_frames = len(plan)
    with_boxes = sorted(plan) or list(range(n))
    picks = {with_boxes[round(i * (len(with_boxes) - 1) / max(1, sheet_count - 1))]
             for i in range(min(sheet_count, len(with_boxes)))}
    # -- pass 2: cover and encode -----------------------------------------------------------
    _encode(source, out_path, plan, picks, edits, params, fps, width, height, result, progress)


def _kept_tracks(tracks, edits: Edits, fps: Fraction) -> set[int]:
    """Tracks the officer keeps visible: the track's centre lies inside a keep box during its range
    on at least one detection frame (the requester's own face in their copy)."""
    kept = set()
    for track in tracks:
        for f, (x1, y1, x2, y2) in track.detections.items():
            cx, cy, t = (x1 + x2) / 2, (y1 + y2) / 2, f / fps
            if any(s.covers(t) and s.box is not None and s.box[0] <= cx < s.box[2] and s.box[1] <= cy < s.box[3]
                   for s in edits.keep_faces):
                kept.add(track.track_id)
                break
    return kept


def merge_overlaps(boxes: list) -> list:
    """Overlapping boxes become their bounding box: covering one after the other would leave a
    seam (the second box smoothed over half-covered content) right across a face."""
    boxes = sorted(boxes)
    merged = True
    while merged:
        merged = False
        out: list = []
        for box in boxes:
            for i, other in enumerate(out):
                if box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]:
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]),
                              max(box[3], other[3]))
                    merged = True
                    break
            else:
                out.append(box)
        boxes = sorted(out)
    return boxes


def _clip_box(box, width: int, height: int):
    x1, y1 = min(box[0], width) // 2 * 2, min(box[1], height) // 2 * 2
    x2, y2 = min(width, (box[2] + 1) // 2 * 2), min(height, (box[3] + 1) // 2 * 2)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _cover_plane(plane: np.ndarray, x1: int, y1: int, x2: int, y2: int, cells: int) -> None:
    import cv2

    roi = plane[y1:y2, x1:x2]
    if roi.size == 0:
        return
    small = cv2.resize(roi, (min(cells, roi.shape[1]), min(cells, roi.shape[0])), interpolation=cv2.INTER_AREA)
    plane[y1:y2, x1:x2] = cv2.resize(small, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_LINEAR)


def cover_yuv(arr: np.ndarray, width: int, height: int, covers, whole: bool) -> None:
    """Cover boxes (and, with ``whole``, the whole frame) in a yuv420p array, in place."""
    y = arr[:height]
    u = arr[height:height + height // 4].reshape(height // 2, width // 2)
    v = arr[height + height // 4:].reshape(height // 2, width // 2)
    if whole:
        for plane, w, h in ((y, width, height), (u, width // 2, height // 2), (v, width // 2, height // 2)):
            _cover_plane(plane, 0, 0, w, h, max(2, w // WHOLE_FACTOR))
    for x1, y1, x2, y2 in covers:
        _cover_plane(y, x1, y1, x2, y2, COVER_CELLS)
        _cover_plane(u, x1 // 2, y1 // 2, x2 // 2, y2 // 2, COVER_CELLS)
        _cover_plane(v, x1 // 2, y1 // 2, x2 // 2, y2 // 2, COVER_CELLS)


def _encode(source, out_path, plan, picks, edits: Edits, params: Params, fps: Fraction, width: int,
            height: int, result: Result, progress: Progress | None) -> None:
    import av

    container = _open(source)
    vin = container.streams.video[0]
    vin.thread_type = "AUTO"
    ain = container.streams.audio[0] if container.streams.audio else None
    output = av.open(str(out_path), mode="w", format="mp4", options={"fflags": "+bitexact"})
    vout = output.add_stream("libx264", rate=fps)
    vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
    vout.codec_context.time_base = 1 / fps
    vout.options = {"preset": params.preset, "crf": str(params.crf), "threads": str(params.x264_threads),
                    "g": str(max(1, round(2 * fps))), "flags": "+bitexact"}
    aout = resampler = None
    if ain is not None:
        rate = ain.codec_context.sample_rate or 48000
        aout = output.add_stream("aac", rate=rate)
        aout.bit_rate = params.audio_bitrate
        layout = "mono" if ain.codec_context.channels == 1 else "stereo"
        aout.layout = layout
        aout.codec_context.time_base = Fraction(1, rate)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    n = samples = 0
    streams = [vin] + ([ain] if ain is not None else [])
    try:
        for packet in container.demux(streams):
            for frame in packet.decode():
                if packet.stream is vin:
                    _video_frame(frame, n, plan, picks, fps, width, height, vout, output, result)
                    n += 1
                    if progress and n % 25 == 0:
                        progress("encode", n, result.frames)
                elif resampler is not None:
                    for fr in resampler.resample(frame):
                        samples = _audio_frame(fr, samples, edits, aout, output)
        for packet in vout.encode():
            output.mux(packet)
        if aout is not None and resampler is not None:
            for fr in resampler.resample(None):
                samples = _audio_frame(fr, samples, edits, aout, output)
            for packet in aout.encode():
                output.mux(packet)
    except av.FFmpegError as exc:
        raise EvidenceError(f"cannot re-encode the clip ({exc})") from None
    finally:
        output.close()
        container.close()
    result.audio_samples = samples
    if n != result.frames:
        raise EvidenceError(f"the clip has {n} frames, the redaction record {result.frames}")
    if progress:
        progress("encode", n, result.frames)


def _video_frame(frame, n, plan, picks, fps, width, height, vout, output, result: Result) -> None:
    import av

    arr = frame.to_ndarray(format="yuv420p")
    covers, whole = plan.get(n, ((), False))
    if covers or whole:
        cover_yuv(arr, width, height, covers, whole)
    out = av.VideoFrame.from_ndarray(arr, format="yuv420p")
    out.pts = n
    out.time_base = 1 / fps
    if n in picks:
        rgb = out.to_ndarray(format="rgb24")
        result.sheet_frames.append((float(n / fps), _outline(rgb, covers)))
    for packet in vout.encode(out):
        output.mux(packet)


def _outline(rgb: np.ndarray, covers) -> np.ndarray:
    import cv2

    rgb = np.ascontiguousarray(rgb)
    for x1, y1, x2, y2 in covers:
        cv2.rectangle(rgb, (x1, y1), (x2 - 1, y2 - 1), (255, 0, 0), max(2, rgb.shape[1] // 320))
    return rgb


def _audio_frame(frame, start: int, edits: Edits, aout, output) -> int:
    import av

    rate = frame.sample_rate
    count = frame.samples
    if edits.mute:
        arr = frame.to_ndarray()
        for s in edits.mute:
            a, b = max(start, round(s.start * rate)), min(start + count, round(s.end * rate))
            if b > a:
                arr[:, a - start:b - start] = 0
        new = av.AudioFrame.from_ndarray(arr, format=frame.format.name, layout=frame.layout.name)
        new.sample_rate = rate
        frame = new
    frame.pts = start
    frame.time_base = Fraction(1, rate)
    for packet in aout.encode(frame):
        output.mux(packet)
    return start + count
