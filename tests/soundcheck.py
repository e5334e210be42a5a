"""Sync marks for the sound tests and benchmarks: make a source file with a white box and a click
at the same instants, and find both again in a decoded recording or export."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

CLICK_THRESHOLD = 0.3
BOX_THRESHOLD = 128


def make_source(path: Path, *, seconds: float = 3.0, fps: int = 25, marks=(1.0, 2.2), size=(160, 120),
                rate: int = 44_100) -> None:
    """An MPEG-TS file with H.264 (no B-frames, a keyframe a second) and AAC stereo at ``rate``
    (not the camera's format: replay must convert it); the top-left box is white on the frames at
    ``marks`` and the sound has a 5 ms click at exactly those instants."""
    import av
    import numpy as np

    width, height = size
    box = min(width, height) // 4
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = fps
        video.codec_context.options = {"bf": "0", "preset": "ultrafast"}
        audio = out.add_stream("aac", rate=rate, layout="stereo")
        frames = int(seconds * fps)
        mark_frames = {round(m * fps) for m in marks}
        for i in range(frames):
            image = np.full((height, width, 3), 60, np.uint8)
            image[:box, :box] = 255 if i in mark_frames else 0
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        pcm = np.zeros((2, int(seconds * rate)), np.float32)
        click = np.sin(2 * np.pi * 2000 * np.arange(int(0.005 * rate)) / rate).astype(np.float32) * 0.8
        for mark in marks:
            at = round(round(mark * fps) / fps * rate)
            pcm[:, at:at + len(click)] = click
        for start in range(0, pcm.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)


def find_marks(path: Path) -> tuple[list[float], list[float]]:
    """(times of the frames whose top-left box is white, onsets of the clicks), in seconds on the
    file's own time line, found by decoding."""
    import av
    import numpy as np

    boxes, clicks = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="gray")
            box = min(image.shape) // 4
            if image[2:box - 2, 2:box - 2].mean() > BOX_THRESHOLD:
                boxes.append(float(frame.pts * frame.time_base))
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return boxes, []
        last = -1.0
        for frame in container.decode(audio=0):
            samples = np.abs(frame.to_ndarray()).max(axis=0)
            loud = np.nonzero(samples > CLICK_THRESHOLD)[0]
            for index in loud:
                at = float(frame.pts * frame.time_base) + index / frame.sample_rate
                if at - last > 0.1:
                    clicks.append(at)
                last = at
    return boxes, clicks


def offsets(boxes: list[float], clicks: list[float]) -> list[float]:
    """For every visual mark, the nearest click's time minus the mark's (seconds)."""
    return [min((c - b for c in clicks), key=abs) for b in boxes] if clicks else []
