"""Redaction throughput at 1080p and the share of face-frames covered, beside ``deface``.

Run: ``python -m tests.benchmarks.bench_redact`` (a few minutes; the first run also makes the
reference's own virtual environment). The clip: 2 s of 1920x1080 at 25 fps with two real faces
(scikit-image's astronaut, one crossing the frame and turning, one standing), H.264 + AAC MPEG-TS,
made from tests/evidence_store/facematerial.py scaled up. Ours: evidence_store.redact.engine with
the defaults ``redact`` uses. The reference: the ``deface`` tool (CenterFace too, every frame at
full size, onnxruntime when installed, which we give it as its fastest set-up) on the same file in
the same run, installed in its own virtual environment with the headless OpenCV wheel in place of
its GUI one (no libGL needed).

A face-frame (a face in a frame) counts as covered when the high-frequency detail (variance of the
Laplacian) in the middle of the face drops below a fifth of the source's. Goals: at least 3 times
deface's frames per second, covering at least as many face-frames.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from evidence_store.redact.edits import Edits
from evidence_store.redact.engine import Params, redact_stream
from tests.evidence_store import facematerial as fm

W, H = 1920, 1080
SCALE = W // fm.WIDTH
SECONDS = 2  # deface needs several seconds per 1080p frame here: keep the run to minutes
#: The material's frame numbers start here: face A enters at frame 5, face B stands from frame 40.
OFFSET = fm.FACE_A_FROM - 5
DEFACE = "deface==1.5.0"
VENV = Path(os.environ.get("BODYCAM_BENCH_CACHE", Path.home() / ".cache" / "bodycam-bench")) / "deface-venv"


def _row(name, figure, unit, reference, reference_name, ratio, goal, ok):
    return {"name": name, "figure": figure, "unit": unit, "reference": reference,
            "reference_name": reference_name, "ratio": ratio, "goal": goal, "ok": ok}


def make_clip(path: Path) -> int:
    import cv2

    frames = SECONDS * fm.FPS
    with av.open(str(path), mode="w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=fm.FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18", "g": str(fm.FPS)}
        sound = container.add_stream("aac", rate=fm.SAMPLE_RATE)
        sound.layout = "mono"
        per = fm.SAMPLE_RATE // fm.FPS
        for n in range(frames):
            img = cv2.resize(fm.frame_image(n + OFFSET), (W, H), interpolation=cv2.INTER_CUBIC)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, fm.FPS)
            for p in video.encode(frame):
                container.mux(p)
            a = av.AudioFrame.from_ndarray(fm.tone(n * per, per).reshape(1, -1), format="flt", layout="mono")
            a.sample_rate, a.pts = fm.SAMPLE_RATE, n * per
            for p in sound.encode(a):
                container.mux(p)
        for stream in (video, sound):
            for p in stream.encode():
                container.mux(p)
    return frames


def deface_python() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run(pip + [DEFACE, "onnxruntime", "onnx"], check=True)
        # deface wants the GUI wheel (libGL); the headless one is the same cv2 without it.
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "opencv-python"], check=True)
        subprocess.run(pip + ["opencv-python-headless<5"], check=True)
        (VENV / ".ready").touch()
    return python


def decode(path: Path) -> list[np.ndarray]:
    """Frames as RGB at the clip's size (deface's writer pads 1080 to 1088 lines: scaled back)."""
    import cv2

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    return [f if f.shape[:2] == (H, W) else cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in frames]


def covered_share(source: list[np.ndarray], result: list[np.ndarray]) -> tuple[int, int]:
    import cv2

    def detail(img, box):
        x1, y1, x2, y2 = box
        grey = cv2.cvtColor(np.ascontiguousarray(img[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
        return float(cv2.Laplacian(grey, cv2.CV_64F).var())

    covered = total = 0
    for n, (src, out) in enumerate(zip(source, result)):
        for x1, y1, x2, y2 in fm.face_regions(n + OFFSET):
            x1, y1, x2, y2 = x1 * SCALE, y1 * SCALE, x2 * SCALE, y2 * SCALE
            dx, dy = (x2 - x1) // 5, (y2 - y1) // 5
            box = (x1 + dx, y1 + dy, x2 - dx, y2 - dy)
            total += 1
            covered += detail(out, box) < 0.2 * detail(src, box)
    return covered, total


def run() -> list[dict]:
    python = deface_python()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "clip.ts"
        frames = make_clip(source)
        data = source.read_bytes()
        started = time.perf_counter()
        redact_stream(lambda: io.BytesIO(data), tmp / "ours.mp4", edits=Edits(), params=Params())
        ours_s = time.perf_counter() - started
        print(f"ours: {frames} frames in {ours_s:.1f} s", file=sys.stderr)
        # deface picks files by their mimetype, and ".ts" reads as a Qt translation file: hand it
        # the same H.264 packets remuxed into MP4 (no re-encoding).
        from evidence_store.export import remux_to_mp4

        remux_to_mp4([source], tmp / "clip.mp4")
        started = time.perf_counter()
        subprocess.run([str(python), "-m", "deface.deface", str(tmp / "clip.mp4"), "-o", str(tmp / "deface.mp4")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deface_s = time.perf_counter() - started
        print(f"deface: {frames} frames in {deface_s:.1f} s", file=sys.stderr)
        src = decode(source)
        ours_cov, total = covered_share(src, decode(tmp / "ours.mp4"))
        deface_cov, _ = covered_share(src, decode(tmp / "deface.mp4"))
    ours_fps, deface_fps = frames / ours_s, frames / deface_s
    return [
        _row("redaction 1080p (frames/s)", ours_fps, "fps", deface_fps, "deface", ours_fps / deface_fps, ">= 3x",
             ours_fps >= 3 * deface_fps),
        _row(f"face-frames covered (of {total})", ours_cov / total, "", deface_cov / total, "deface",
             ours_cov / max(deface_cov, 1), ">= 1x", ours_cov >= deface_cov),
    ]


if __name__ == "__main__":
    from tests.benchmarks.__main__ import table

    print(table([("bench_redact", r) for r in run()]))
