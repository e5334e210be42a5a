"""From detections on every ``stride``-th frame to a box on every frame a face may be in.

The detector misses faces now and then (a head turning, motion blur, a hand in front): a track
survives such misses for ``max_gap`` frames and is interpolated across them; it is also extended
back to the previous detection frame (the face may have entered since) and forward by ``hold``
frames. Every box gets a margin. Erring towards covering is the lawful side: an uncovered face in a
released copy cannot be taken back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[float, float, float, float]


@dataclass
class Track:
    track_id: int
    detections: dict[int, Box] = field(default_factory=dict)  # detection frame -> box

    @property
    def last(self) -> int:
        return max(self.detections)


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: Box, b: Box, frames: int) -> float:
    """How well detection ``b`` continues track box ``a`` seen ``frames`` ago (0: not at all)."""
    iou = _iou(a, b)
    if iou > 0:
        return 1.0 + iou
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    dist = (dx * dx + dy * dy) ** 0.5
    reach = size * (1.0 + 0.1 * frames)  # a face moves; the longer unseen, the further
    return 1.0 - dist / reach if dist < reach else 0.0


class Tracker:
    def __init__(self, *, max_gap: int):
        self.max_gap = max_gap
        self.tracks: list[Track] = []

    def update(self, frame: int, boxes: list[Box]) -> None:
        live = [t for t in self.tracks if frame - t.last <= self.max_gap]
        pairs = sorted(((_near(t.detections[t.last], b, frame - t.last), ti, bi)
                        for ti, t in enumerate(live) for bi, b in enumerate(boxes)),
                       key=lambda p: (-p[0], p[1], p[2]))
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score <= 0 or ti in used_t or bi in used_b:
                continue
            live[ti].detections[frame] = boxes[bi]
            used_t.add(ti)
            used_b.add(bi)
        for bi, box in enumerate(boxes):
            if bi not in used_b:
                self.tracks.append(Track(len(self.tracks), {frame: box}))


def _lerp(a: Box, b: Box, f: float) -> Box:
    return tuple(x + (y - x) * f for x, y in zip(a, b))  # type: ignore[return-value]


def _grow(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    w, h = box[2] - box[0], box[3] - box[1]
    x1, y1 = box[0] - w * margin, box[1] - h * margin
    x2, y2 = box[2] + w * margin, box[3] + h * margin
    # Even coordinates: the chroma planes are half size, so a cover never leaves half a pixel.
    x1, y1 = max(0, int(x1) // 2 * 2), max(0, int(y1) // 2 * 2)
    x2, y2 = min(width, (int(x2) + 2) // 2 * 2), min(height, (int(y2) + 2) // 2 * 2)
    return x1, y1, x2, y2


def frame_boxes(tracks: list[Track], frames: int, *, stride: int, hold: int, margin: float,
                width: int, height: int) -> dict[int, list[tuple[int, tuple[int, int, int, int]]]]:
    """frame -> [(track id, covered box)] for every frame any track covers."""
    out: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}

    def put(f: int, track_id: int, box: Box) -> None:
        if 0 <= f < frames:
            g = _grow(box, margin, width, height)
            if g[2] > g[0] and g[3] > g[1]:
                out.setdefault(f, []).append((track_id, g))

    for track in tracks:
        seen = sorted(track.detections)
        first, last = seen[0], seen[-1]
        d = track.detections
        # Before the first and after the last detection the face may be moving on: cover both where
        # it was seen and where its motion (from the nearest two detections) would take it.
        v_in = _velocity(d[seen[0]], d[seen[1]], seen[1] - seen[0]) if len(seen) > 1 else (0.0, 0.0)
        v_out = _velocity(d[seen[-2]], d[seen[-1]], seen[-1] - seen[-2]) if len(seen) > 1 else (0.0, 0.0)
        for f in range(first - stride + 1, first):
            put(f, track.track_id, _union(d[first], _shift(d[first], v_in, f - first)))
        for a, b in zip(seen, seen[1:]):
            for f in range(a, b):
                put(f, track.track_id, _lerp(d[a], d[b], (f - a) / (b - a)))
        for f in range(last, last + hold + 1):
            put(f, track.track_id, _union(d[last], _shift(d[last], v_out, f - last)))
    return out


def _velocity(a: Box, b: Box, frames: int) -> tuple[float, float]:
    return ((b[0] + b[2] - a[0] - a[2]) / 2 / frames, (b[1] + b[3] - a[1] - a[3]) / 2 / frames)


def _shift(box: Box, v: tuple[float, float], frames: int) -> Box:
    return (box[0] + v[0] * frames, box[1] + v[1] * frames, box[2] + v[0] * frames, box[3] + v[1] * frames)


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
