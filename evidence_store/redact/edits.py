"""The officer's edits file: what automatic detection cannot know (docs/FORMAT.md, "Edits").

    {"format": "bodycam-edits/v1",
     "boxes":      [{"from": 1.0, "to": 4.5, "box": [x1, y1, x2, y2], "label": "number plate"}],
     "keep_faces": [{"from": 0.0, "to": 9.0, "box": [x1, y1, x2, y2]}],
     "blur":       [{"from": 6.0, "to": 7.5}],
     "mute":       [{"from": 2.0, "to": 3.0}]}

Times are seconds from the clip's first frame; boxes are pixels of the clip's frame. The file is
officer input and parsed with bounds: one clear error and nothing logged if it is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction

from evidence_store.errors import UsageError

EDITS_FORMAT = "bodycam-edits/v1"
MAX_BYTES = 1 << 20
MAX_ENTRIES = 10_000
#: Frame sides are far below this; a bigger coordinate is a typing error, not a camera.
MAX_COORD = 16384
_KEYS = {"boxes": ("from", "to", "box", "label"), "keep_faces": ("from", "to", "box"),
         "blur": ("from", "to"), "mute": ("from", "to")}


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    box: tuple[int, int, int, int] | None = None
    label: str = ""

    def covers(self, t: float | Fraction) -> bool:
        return self.start <= t < self.end


@dataclass
class Edits:
    boxes: list[Span] = field(default_factory=list)
    keep_faces: list[Span] = field(default_factory=list)
    blur: list[Span] = field(default_factory=list)
    mute: list[Span] = field(default_factory=list)
    sha256: str | None = None  # of the file's bytes; None when no file was given

    def as_dict(self) -> dict:
        def span(s: Span) -> dict:
            d: dict = {"from": s.start, "to": s.end}
            if s.box is not None:
                d["box"] = list(s.box)
            if s.label:
                d["label"] = s.label
            return d

        return {"format": EDITS_FORMAT, **{k: [span(s) for s in getattr(self, k)] for k in _KEYS}}


def parse_edits(data: bytes, duration: float, where: str = "edits file") -> Edits:
    """Parse and check an edits file against the clip's ``duration`` (seconds). UsageError names
    the first problem."""
    if len(data) > MAX_BYTES:
        raise UsageError(f"{where}: larger than {MAX_BYTES} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{where}: not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != EDITS_FORMAT:
        raise UsageError(f"{where}: not a {EDITS_FORMAT} document (\"format\" missing or different)")
    unknown = set(body) - set(_KEYS) - {"format"}
    if unknown:
        raise UsageError(f"{where}: unknown member {sorted(unknown)[0]!r}")
    edits = Edits(sha256=hashlib.sha256(data).hexdigest())
    for key, allowed in _KEYS.items():
        items = body.get(key, [])
        if not isinstance(items, list) or len(items) > MAX_ENTRIES:
            raise UsageError(f"{where}: {key!r} must be a list of at most {MAX_ENTRIES} entries")
        for n, item in enumerate(items):
            getattr(edits, key).append(_span(item, allowed, duration, f"{where}: {key}[{n}]"))
    return edits


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{what} must be a number")
    return float(value)


def _span(item, allowed: tuple[str, ...], duration: float, what: str) -> Span:
    if not isinstance(item, dict):
        raise UsageError(f"{what}: must be an object")
    extra = set(item) - set(allowed)
    if extra:
        raise UsageError(f"{what}: unknown member {sorted(extra)[0]!r}")
    start, end = _number(item.get("from"), f"{what}.from"), _number(item.get("to"), f"{what}.to")
    if not 0 <= start < end:
        raise UsageError(f"{what}: needs 0 <= from < to (seconds), got {start}..{end}")
    # A little slack: the manifest's durations are whole milliseconds per segment.
    if end > duration + 0.05:
        raise UsageError(f"{what}: {start}..{end} s lies outside the clip (it lasts {duration:.2f} s)")
    box = None
    if "box" in allowed:
        raw = item.get("box")
        if (not isinstance(raw, list) or len(raw) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw)):
            raise UsageError(f"{what}.box must be [x1, y1, x2, y2] in whole pixels")
        x1, y1, x2, y2 = raw
        if not (0 <= x1 < x2 <= MAX_COORD and 0 <= y1 < y2 <= MAX_COORD):
            raise UsageError(f"{what}.box needs 0 <= x1 < x2 and 0 <= y1 < y2")
        box = (x1, y1, x2, y2)
    label = item.get("label", "")
    if not isinstance(label, str) or len(label) > 200:
        raise UsageError(f"{what}.label must be a short text")
    return Span(start, end, box, label)
