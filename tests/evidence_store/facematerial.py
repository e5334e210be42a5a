"""Test material with real faces and real sound: scikit-image's astronaut photograph pasted into a
scene, moving across it and turning (squeezed sideways like a head turning away, and tilted), as
real H.264 + AAC MPEG-TS segments (PyAV) inside real signed camera clips (tests/clipfactory.py).

Ground truth travels with it: ``face_boxes(frame)`` says where each pasted face is, so tests can
check that every face is covered in every frame.
"""

from __future__ import annotations

import functools
import io
from contextlib import contextmanager
from fractions import Fraction
from unittest import mock

import av
import numpy as np

from tests import clipfactory

WIDTH, HEIGHT, FPS = 640, 360, 25
SAMPLE_RATE = 48000
TONE_HZ = 440
AMPLITUDE = 0.3
SEGMENT_SECONDS = 2.0
#: Face A crosses the frame from FACE_A_FROM on; face B stands still from FACE_B_FROM on.
FACE_A_FROM, FACE_B_FROM = 25, 60
FACE_W, FACE_H = 96, 110


@functools.lru_cache(maxsize=1)
def _head() -> np.ndarray:
    from skimage import data

    return data.astronaut()[10:230, 130:330].copy()  # the astronaut's head, hair to chin


def _scene(n: int) -> np.ndarray:
    """A textured background without faces (gradients, stripes), drifting slowly."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[..., 0] = 60 + (xs // 2 + n) % 80
    img[..., 1] = 90 + (ys // 3) % 60
    img[..., 2] = 120 + ((xs // 32 + ys // 32) % 2) * 50
    return img


def face_boxes(n: int) -> list[tuple[int, int, int, int]]:
    """Where the faces are in frame ``n`` (x1, y1, x2, y2 of the pasted head)."""
    boxes = []
    if n >= FACE_A_FROM:
        k = n - FACE_A_FROM
        w = int(FACE_W * (0.65 + 0.35 * abs(np.cos(k / 12))))  # turning: narrower as it turns away
        x = 20 + k * 6
        if x + w <= WIDTH:
            boxes.append((x, 30, x + w, 30 + FACE_H))
    if n >= FACE_B_FROM:
        boxes.append((480, 220, 480 + FACE_W, 220 + FACE_H))
    return boxes


#: Where the face itself (brows to chin, ear to ear) lies within the pasted head, as shares.
FACE_IN_HEAD = (0.25, 0.17, 0.71, 0.74)


def face_regions(n: int) -> list[tuple[int, int, int, int]]:
    """The faces proper in frame ``n``: what must not be recognisable."""
    fx1, fy1, fx2, fy2 = FACE_IN_HEAD
    return [(x1 + int((x2 - x1) * fx1), y1 + int((y2 - y1) * fy1), x1 + int((x2 - x1) * fx2),
             y1 + int((y2 - y1) * fy2)) for x1, y1, x2, y2 in face_boxes(n)]


def frame_image(n: int) -> np.ndarray:
    import cv2

    img = _scene(n)
    for i, (x1, y1, x2, y2) in enumerate(face_boxes(n)):
        head = cv2.resize(_head(), (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
        if i == 0 and n >= FACE_A_FROM:  # tilt a little while moving
            angle = 10 * np.sin((n - FACE_A_FROM) / 8)
            m = cv2.getRotationMatrix2D(((x2 - x1) / 2, (y2 - y1) / 2), angle, 1.0)
            head = cv2.warpAffine(head, m, (x2 - x1, y2 - y1), borderMode=cv2.BORDER_REFLECT)
        img[y1:y2, x1:x2] = head
    return img


def tone(start_sample: int, count: int) -> np.ndarray:
    t = (np.arange(start_sample, start_sample + count)) / SAMPLE_RATE
    return (AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def face_ts(number: int, seconds: float = SEGMENT_SECONDS, audio: bool = True, sound_only: bool = False) -> bytes:
    """Segment ``number`` of the face clip: MPEG-TS, H.264 (+ AAC mono 48 kHz tone); or sound only."""
    out = io.BytesIO()
    container = av.open(out, mode="w", format="mpegts")
    video = None
    if not sound_only:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18", "g": str(FPS)}
    sound = None
    if audio:
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
    frames = int(seconds * FPS)
    first = number * frames
    per_frame = SAMPLE_RATE // FPS
    for i in range(frames):
        if video is not None:
            frame = av.VideoFrame.from_ndarray(frame_image(first + i), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        if sound is not None:
            samples = tone((first + i) * per_frame, per_frame)
            aframe = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            aframe.sample_rate = SAMPLE_RATE
            aframe.pts = i * per_frame
            for packet in sound.encode(aframe):
                container.mux(packet)
    for stream in (video, sound):
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    container.close()
    return out.getvalue()


@contextmanager
def face_segments(audio: bool = True, sound_only: bool = False):
    """While active, clipfactory.make_clip writes face segments instead of its test pattern."""
    with mock.patch.object(clipfactory, "make_ts",
                           lambda seconds, number: face_ts(number, seconds, audio, sound_only)):
        yield


def make_face_clip(outbox, camera, recipients, *, seconds: float = 4.0, audio: bool = True,
                   sound_only: bool = False, **kwargs):
    segments = max(1, round(seconds / SEGMENT_SECONDS))
    with face_segments(audio, sound_only):
        return clipfactory.make_clip(outbox, camera, recipients, seconds=seconds, segments=segments, **kwargs)
