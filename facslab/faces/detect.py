"""Face detection (dlib's HOG by default; dlib's MMOD CNN, or OpenCV's Haar cascades, frontal or
profile, as options) and dlib's landmark prediction."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np

from facslab.faces.models import MMOD_DETECTOR, SHAPE_PREDICTOR_5, SHAPE_PREDICTOR_68, model_path


#: Detections scoring below this are dropped by the apps: on skimage's astronaut, HOG scores the
#: face 1.1-1.5 and a patch of the suit 0.12-0.49 (in the drifting test video).
MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # left, top, right, bottom
    confidence: float

    def rectangle(self) -> dlib.rectangle:
        return dlib.rectangle(*self.box)


#: one HOG detector per thread: a detector's run is not safe beside another run of the same one
#: (a background detection beside the nearby tracker corrupted the heap)
_per_thread = threading.local()


def _hog() -> dlib.fhog_object_detector:
    if not hasattr(_per_thread, "hog"):
        _per_thread.hog = dlib.get_frontal_face_detector()
    return _per_thread.hog


@lru_cache(maxsize=None)
def _mmod() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(model_path(MMOD_DETECTOR)))


#: OpenCV's cascades (Viola-Jones), as the Acting Mirror system detects faces: fast on a CPU
HAAR_CASCADES = {"haar": "haarcascade_frontalface_default.xml", "haar-profile": "haarcascade_profileface.xml"}
DETECTORS = ("hog", "mmod", *HAAR_CASCADES)
#: the level weight a cascade's detection must reach. The frontal cascade on bench/emotion.py's
#: 1280x960 videos (30 frames each, mp4-compressed): false faces on the coffee cup and the grey
#: canvas weighed up to 3.17, the astronauts 3.34-7.2; a thin margin, measured on generated frames
#: only. The profile cascade found nothing on them, and the cameraman's turned face at 1.8.
HAAR_MIN_WEIGHT = {"haar": 3.25, "haar-profile": 1.0}


@lru_cache(maxsize=None)
def _cascade(method: str):
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        from facslab.errors import ConfigError

        raise ConfigError(f"--detector {method}: this OpenCV ({cv2.__version__}) has no Haar cascades (OpenCV 5 moved them "
                          f"to the contrib build); make install puts opencv-contrib-python-headless=={cv2.__version__} "
                          "over it, or use --detector hog")
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / HAAR_CASCADES[method]))
    if cascade.empty():
        from facslab.errors import ConfigError

        raise ConfigError(f"--detector {method}: {HAAR_CASCADES[method]} is not in OpenCV's data folder "
                          f"{cv2.data.haarcascades}; reinstall opencv-contrib-python-headless=={cv2.__version__}")
    return cascade


def check_detector(method: str) -> None:
    """A detector that cannot run here (an unknown name, OpenCV without the cascades) is said now,
    before any image or frame is read."""
    if method not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {method!r}")
    if method in HAAR_CASCADES:
        _cascade(method)


def preload(method: str) -> None:
    """The detector's model (HOG's 0.3 s, for this thread: a detector is one per thread) and the
    68-point landmark model (100 MB, 0.46 s) loaded now, not at the first image (an app loads them
    while its store is asked about its models). A missing or unreadable file, or a detector that
    cannot run here, is left to the first image or ``check_detector``, where it is said as before
    (after the models' own mistakes)."""
    from facslab.errors import ConfigError

    try:
        if method == "hog":
            _hog()
        elif method == "mmod":
            _mmod()
        elif method in HAAR_CASCADES:
            _cascade(method)
        _predictor(68)
    except (OSError, RuntimeError, ConfigError):  # RuntimeError: dlib's, for a file it cannot read
        pass


def _haar(image: np.ndarray, method: str, upsample: int) -> list[Detection]:
    """Haar cascade detections; the confidence is the cascade's level weight, at least
    ``HAAR_MIN_WEIGHT``. ``upsample`` lowers
    the smallest face as HOG's does (about 80 px without, halved per step). The profile cascade
    finds faces turned one way: the mirrored image finds the others."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    smallest = max(24, 80 >> upsample)
    views = [(grey, False)] + ([(np.ascontiguousarray(grey[:, ::-1]), True)] if method == "haar-profile" else [])
    found = []
    for view, mirrored in views:
        boxes, _, weights = _cascade(method).detectMultiScale3(view, scaleFactor=1.1, minNeighbors=5,
                                                               minSize=(smallest, smallest), outputRejectLevels=True)
        for (x, y, w, h), weight in zip(np.reshape(boxes, (-1, 4)), np.ravel(weights)):
            if weight < HAAR_MIN_WEIGHT[method]:
                continue
            x = grey.shape[1] - x - w if mirrored else x
            found.append(Detection((int(x), int(y), int(x + w), int(y + h)), float(weight)))
    kept = []  # a face found in both views (or twice) is one face: the stronger box stays
    for detection in sorted(found, key=lambda d: -d.confidence):
        if all(box_iou(detection.box, other.box) <= 0.3 for other in kept):
            kept.append(detection)
    return kept


def box_iou(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@lru_cache(maxsize=None)
def _predictor(points: int) -> dlib.shape_predictor:
    name = {5: SHAPE_PREDICTOR_5, 68: SHAPE_PREDICTOR_68}[points]
    return dlib.shape_predictor(str(model_path(name)))


def detect_faces(image: np.ndarray, method: str = "hog", upsample: int = 1,
                 min_confidence: float = 0.0) -> list[Detection]:
    """Faces in an RGB uint8 (or grey) image scoring at least ``min_confidence``, most confident
    first. The score is the detector's own: HOG's SVM margin, MMOD's, or a Haar cascade's level
    weight, which the cascade has already cut at ``HAAR_MIN_WEIGHT``."""
    image = np.ascontiguousarray(image)
    if method == "hog":
        rects, scores, _ = _hog().run(image, upsample, 0.0)
        found = [Detection((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
    elif method == "mmod":
        found = [Detection((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                 for d in _mmod()(image, upsample)]
    elif method in HAAR_CASCADES:
        found = _haar(image, method, upsample)
    else:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {method!r}")
    return sorted((d for d in found if d.confidence >= min_confidence), key=lambda d: -d.confidence)


#: the HOG detector's window is 80 px a side: ``face_near`` scales a box to just over it
HOG_WINDOW = 80


def face_near(grey: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.4,
              min_confidence: float = -1.0) -> Detection | None:
    """The best face HOG finds near ``box`` of a grey (or RGB) image: the detector run on the box
    alone, with ``margin`` (a fraction of its side) around it for the face's motion, scaled so that
    a face of the box's size just fills the detector's window. About 1 ms, where a detection on the
    whole frame takes tens; None where no face scores ``min_confidence``."""
    import cv2

    left, top, right, bottom = box
    side = max(right - left, bottom - top, 1)
    scale = (HOG_WINDOW + 4) / side
    out = int(round((HOG_WINDOW + 4) * (1 + margin)))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    dx, dy = out / 2 - cx * scale, out / 2 - cy * scale
    patch = cv2.warpAffine(np.ascontiguousarray(grey), np.array([[scale, 0.0, dx], [0.0, scale, dy]]), (out, out),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rects, scores, _ = _hog().run(patch, 0, min_confidence)
    if not len(rects):
        return None
    best = int(np.argmax(scores))
    r = rects[best]
    return Detection((int(round((r.left() - dx) / scale)), int(round((r.top() - dy) / scale)),
                      int(round((r.right() - dx) / scale)), int(round((r.bottom() - dy) / scale))),
                     float(scores[best]))


def predict_landmarks(image: np.ndarray, detection: Detection, points: int = 5) -> np.ndarray:
    """(points, 2) landmarks of a detected face with dlib's 5- or 68-point shape predictor."""
    shape = _predictor(points)(np.ascontiguousarray(image), detection.rectangle())
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
