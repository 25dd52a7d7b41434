"""Face → AUs → eyes → emoji: what the CLI, the live loop, the web app and the served model share."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from facslab.au import AU_LABELS
from facslab.emoji import Emoji, Match, agreement_vector, load_emojis, match_emoji
from facslab.faces.align import align_face
from facslab.faces.detect import MIN_CONFIDENCE, Detection, detect_faces, predict_landmarks
from facslab.faces.eyes import EYE_CLOSED_THRESHOLD, eye_aspect_ratios
from facslab.predictor import AUPredictor


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    confidence: float
    probabilities: np.ndarray
    decisions: np.ndarray
    ear: tuple[float, float]  # (left, right), the subject's sides
    eyes_closed: tuple[bool, bool]
    match: Match
    crop: np.ndarray | None = None

    def as_dict(self) -> dict:
        return {
            "box": [int(v) for v in self.box], "confidence": round(float(self.confidence), 4),
            "emoji": self.match.emoji.char, "emoji_name": self.match.emoji.name,
            "score": round(self.match.score, 4), "metric": self.match.metric,
            "tied_with": [e.char for e in self.match.tied_with],
            "aus": [a for a, d in zip(AU_LABELS, self.decisions) if d],
            "probabilities": {a: round(float(p), 4) for a, p in zip(AU_LABELS, self.probabilities)},
            "ear": {"left": round(self.ear[0], 4), "right": round(self.ear[1], 4)},
            "eyes_closed": {"left": bool(self.eyes_closed[0]), "right": bool(self.eyes_closed[1])},
            "ranking": self.match.as_dict()["ranking"],
        }


class FaceAnalyzer:
    """Detect (or take given boxes), align, predict AUs, measure the eyes, match an emoji."""

    def __init__(self, predictor: AUPredictor, emojis: list[Emoji] | None = None, metric: str = "kappa",
                 eye_threshold: float = EYE_CLOSED_THRESHOLD, detector: str = "hog", upsample: int = 1,
                 min_confidence: float = MIN_CONFIDENCE):
        self.predictor, self.metric, self.eye_threshold = predictor, metric, eye_threshold
        self.emojis = emojis if emojis is not None else load_emojis()
        self.detector, self.upsample, self.min_confidence = detector, upsample, min_confidence

    def detect(self, image: np.ndarray) -> list[Detection]:
        return detect_faces(image, self.detector, self.upsample, self.min_confidence)

    def analyze(self, image: np.ndarray, detections: list[Detection] | None = None,
                keep_crops: bool = False, timings: dict | None = None, landmark_image: np.ndarray | None = None,
                channels: str = "RGB") -> list[FaceResult]:
        """Results for every face of a colour image (``channels`` RGB or BGR; ``detections``: boxes
        found already, e.g. by a tracker; ``landmark_image``: a grey copy to find landmarks on);
        ``timings`` accumulates seconds per stage."""
        clock = _Clock(timings)
        if detections is None:
            with clock("detection"):
                detections = self.detect(image)
        if not detections:
            return []
        crops, ears = [], []
        for detection in detections:
            with clock("landmarks"):  # the 68 points serve both the eye centres and the EAR
                landmarks = predict_landmarks(image if landmark_image is None else landmark_image, detection, 68)
            with clock("alignment"):
                crop = align_face(image, landmarks, self.predictor.alignment)
                crops.append(crop[..., ::-1] if channels == "BGR" else crop)  # the model takes RGB
            ears.append(eye_aspect_ratios(landmarks))
        with clock("model"):
            probabilities = self.predictor.predict_aligned(np.stack(crops))
        results = []
        with clock("eyes+emoji"):
            for detection, crop, probs, ear in zip(detections, crops, probabilities, ears):
                decisions = self.predictor.decide(probs)
                closed = (ear[0] < self.eye_threshold, ear[1] < self.eye_threshold)
                match = match_emoji(agreement_vector(decisions, *closed), self.emojis, self.metric)
                results.append(FaceResult(detection.box, detection.confidence, probs, decisions, ear, closed, match,
                                          crop if keep_crops else None))
        return results


class _Clock:
    """Adds the seconds spent in a ``with`` block to ``timings[stage]`` (nothing when None)."""

    def __init__(self, timings: dict | None):
        self.timings = timings

    def __call__(self, stage: str):
        self.stage = stage
        return self

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.timings is not None:
            self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.start
