"""dlib face detection (HOG by default, the MMOD CNN as an option) and landmark prediction."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=None)
def _hog() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def _mmod() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(model_path(MMOD_DETECTOR)))


@lru_cache(maxsize=None)
def _predictor(points: int) -> dlib.shape_predictor:
    name = {5: SHAPE_PREDICTOR_5, 68: SHAPE_PREDICTOR_68}[points]
    return dlib.shape_predictor(str(model_path(name)))


def detect_faces(image: np.ndarray, method: str = "hog", upsample: int = 1,
                 min_confidence: float = 0.0) -> list[Detection]:
    """Faces in an RGB uint8 image scoring at least ``min_confidence``, most confident first."""
    image = np.ascontiguousarray(image)
    if method == "hog":
        rects, scores, _ = _hog().run(image, upsample, 0.0)
        found = [Detection((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
    elif method == "mmod":
        found = [Detection((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                 for d in _mmod()(image, upsample)]
    else:
        raise ValueError(f"detector must be 'hog' or 'mmod', not {method!r}")
    return sorted((d for d in found if d.confidence >= min_confidence), key=lambda d: -d.confidence)


def predict_landmarks(image: np.ndarray, detection: Detection, points: int = 5) -> np.ndarray:
    """(points, 2) landmarks of a detected face with dlib's 5- or 68-point shape predictor."""
    shape = _predictor(points)(np.ascontiguousarray(image), detection.rectangle())
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
