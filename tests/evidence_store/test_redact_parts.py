"""The redaction's pure parts: tracks across detector misses, merged covers, the edits parser."""

import json

import numpy as np
import pytest

from evidence_store.errors import UsageError
from evidence_store.redact.edits import parse_edits
from evidence_store.redact.engine import cover_yuv, merge_overlaps
from evidence_store.redact.tracks import Tracker, frame_boxes


def test_tracks_detector_miss_interpolated_face_covered_every_frame():
    tracker = Tracker(max_gap=9)
    # A face moving right 10 px a frame, detected on frames 0, 3, missed on 6 and 9, seen on 12.
    for f in (0, 3, 6, 9, 12):
        tracker.update(f, [] if f in (6, 9) else [(100 + 10 * f, 50, 150 + 10 * f, 110)])
    assert len(tracker.tracks) == 1
    boxes = frame_boxes(tracker.tracks, 20, stride=3, hold=2, margin=0.2, width=640, height=360)
    for f in range(0, 15):  # 13 and 14: held, following the face's motion
        (x1, y1, x2, y2), = [b for _, b in boxes[f]]
        assert x1 <= 100 + 10 * f and x2 >= 150 + 10 * f, f
    assert 15 not in boxes  # released two frames after the last detection


def test_tracks_face_appearing_between_detections_covered_back_to_previous_detection():
    tracker = Tracker(max_gap=6)
    tracker.update(3, [])
    tracker.update(6, [(10, 10, 50, 60)])
    boxes = frame_boxes(tracker.tracks, 10, stride=3, hold=0, margin=0.0, width=64, height=64)
    assert sorted(boxes) == [4, 5, 6]


def test_merge_overlapping_covers_into_their_bounding_box():
    assert merge_overlaps([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [(0, 0, 20, 20), (30, 30, 40, 40)]
    assert merge_overlaps([(0, 0, 10, 10), (10, 0, 20, 10)]) == [(0, 0, 10, 10), (10, 0, 20, 10)]


def test_cover_yuv_leaves_outside_untouched_and_smooths_inside():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (48 * 3 // 2, 64), dtype=np.uint8)
    before = arr.copy()
    cover_yuv(arr, 64, 48, [(8, 8, 32, 40)], False)
    assert (arr[:48, 32:] == before[:48, 32:]).all() and (arr[:8] == before[:8]).all()
    assert np.abs(np.diff(arr[8:40, 8:32].astype(int), axis=1)).max() < 40


@pytest.mark.parametrize("body, words", [
    ({"format": "bodycam-edits/v1", "blur": [{"from": 2, "to": 1}]}, "from < to"),
    ({"format": "bodycam-edits/v1", "blur": [{"from": True, "to": 1}]}, "must be a number"),
    ({"format": "bodycam-edits/v1", "boxes": [{"from": 0, "to": 1, "box": [0, 0, 1.5, 2]}]}, "whole pixels"),
    ({"format": "bodycam-edits/v1", "mute": [{"from": 0, "to": 11}]}, "outside the clip"),
    ({"format": "other"}, "not a bodycam-edits/v1"),
    ({"format": "bodycam-edits/v1", "mute": {"from": 0}}, "must be a list"),
])
def test_edits_bad_input_named(body, words):
    with pytest.raises(UsageError, match=words):
        parse_edits(json.dumps(body).encode(), 10.0)


def test_edits_too_large_refused():
    with pytest.raises(UsageError, match="larger than"):
        parse_edits(b" " * (1 << 20 + 1), 10.0)
