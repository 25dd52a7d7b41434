"""Face → AUs → eyes → emoji (and emotion): what the CLI, the live loop, the web app and the
served model share. The AU model and the emotion model are both optional (at least one is
given); each face is detected and its landmarks found once, then aligned for each model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from facslab.au import AU_LABELS
from facslab.emoji import Emoji, Match, agreement_vector, load_emojis, match_emoji
from facslab.faces.align import align_face
from facslab.faces.detect import MIN_CONFIDENCE, Detection, detect_faces, predict_landmarks
from facslab.faces.eyes import EYE_CLOSED_THRESHOLD, eye_aspect_ratios
from facslab.predictor import (AUIntensityPredictor, AUPredictor, EmotionPredictor, TemporalAUPredictor,
                               ValenceArousalPredictor)


@dataclass
class Emotion:
    """The emotion model's answer for one face."""

    label: str
    probabilities: dict[str, float]

    def as_dict(self) -> dict:
        return {"label": self.label, "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()}}


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    confidence: float
    probabilities: np.ndarray | None  # AU probabilities (None without an AU model)
    decisions: np.ndarray | None
    ear: tuple[float, float]  # (left, right), the subject's sides
    eyes_closed: tuple[bool, bool]
    match: Match | None
    crop: np.ndarray | None = None
    emotion: Emotion | None = None
    affect: tuple[float, float] | None = None  # (valence, arousal) in [-1, 1]
    intensities: np.ndarray | None = None  # 18 AU intensities 0-5
    au_emotion: tuple[str, float] | None = None  # the FACS rule table's emotion for the AUs, its similarity
    temporal: np.ndarray | None = None  # the temporal model's AU probabilities over the last frames

    def as_dict(self) -> dict:
        info = {"box": [int(v) for v in self.box], "confidence": round(float(self.confidence), 4),
                "ear": {"left": round(self.ear[0], 4), "right": round(self.ear[1], 4)},
                "eyes_closed": {"left": bool(self.eyes_closed[0]), "right": bool(self.eyes_closed[1])}}
        if self.emotion is not None:
            info["emotion"] = self.emotion.as_dict()
        if self.affect is not None:
            info["valence"], info["arousal"] = round(float(self.affect[0]), 4), round(float(self.affect[1]), 4)
        if self.au_emotion is not None:
            info["au_emotion"] = {"label": self.au_emotion[0], "similarity": round(self.au_emotion[1], 4)}
        if self.temporal is not None:
            info["temporal_probabilities"] = {a: round(float(p), 4) for a, p in zip(AU_LABELS, self.temporal)}
        if self.intensities is not None:
            info["intensities"] = {a: round(float(v), 3) for a, v in zip(AU_LABELS, self.intensities)}
        if self.match is None:
            return info
        return {
            **info, "emoji": self.match.emoji.char, "emoji_name": self.match.emoji.name,
            "score": round(self.match.score, 4), "metric": self.match.metric,
            "tied_with": [e.char for e in self.match.tied_with],
            "aus": [a for a, d in zip(AU_LABELS, self.decisions) if d],
            "probabilities": {a: round(float(p), 4) for a, p in zip(AU_LABELS, self.probabilities)},
            "ranking": self.match.as_dict()["ranking"],
        }


class FaceAnalyzer:
    """Detect (or take given boxes), align, predict AUs, measure the eyes, match an emoji; with an
    ``emotion`` model, classify the emotion too, and with an ``affect`` model, valence and arousal."""

    def __init__(self, predictor: AUPredictor | None, emojis: list[Emoji] | None = None, metric: str = "kappa",
                 eye_threshold: float = EYE_CLOSED_THRESHOLD, detector: str = "hog", upsample: int = 1,
                 min_confidence: float = MIN_CONFIDENCE, emotion: EmotionPredictor | None = None,
                 affect: ValenceArousalPredictor | None = None, intensity: AUIntensityPredictor | None = None,
                 temporal: TemporalAUPredictor | None = None):
        if predictor is None and emotion is None and affect is None and intensity is None and temporal is None:
            raise ValueError("FaceAnalyzer needs an AU, emotion, valence/arousal, AU intensity or temporal model")
        self.temporal = temporal
        self._windows: dict[int, list[np.ndarray]] = {}  # face id -> its last aligned crops (temporal model)
        self.predictor, self.emotion, self.metric, self.eye_threshold = predictor, emotion, metric, eye_threshold
        self.affect, self.intensity = affect, intensity
        from facslab.au_emotion import RuleTable

        self.rules = RuleTable.from_csv()  # the AU-derived emotion shown beside the emoji
        self.emojis = emojis if emojis is not None else load_emojis()
        self.detector, self.upsample, self.min_confidence = detector, upsample, min_confidence

    def detect(self, image: np.ndarray) -> list[Detection]:
        return detect_faces(image, self.detector, self.upsample, self.min_confidence)

    def analyze(self, image: np.ndarray, detections: list[Detection] | None = None,
                keep_crops: bool = False, timings: dict | None = None, landmark_image: np.ndarray | None = None,
                channels: str = "RGB", face_ids: list[int] | None = None) -> list[FaceResult]:
        """Results for every face of a colour image (``channels`` RGB or BGR; ``detections``: boxes
        found already, e.g. by a tracker; ``landmark_image``: a grey copy to find landmarks on);
        ``timings`` accumulates seconds per stage. ``face_ids`` (the tracker's, one per detection)
        let the temporal model slide a window over each face's frames; without them a still image
        is its own window (the frame repeated)."""
        clock = _Clock(timings)
        if detections is None:
            with clock("detection"):
                detections = self.detect(image)
        if not detections:
            return []
        models = [m for m in (self.predictor, self.emotion, self.affect, self.intensity, self.temporal) if m is not None]
        crops, ears = {id(m): [] for m in models}, []
        for detection in detections:
            with clock("landmarks"):  # the 68 points serve both the eye centres and the EAR
                landmarks = predict_landmarks(image if landmark_image is None else landmark_image, detection, 68)
            with clock("alignment"):
                for model in models:
                    crop = align_face(image, landmarks, model.alignment)
                    crops[id(model)].append(crop[..., ::-1] if channels == "BGR" else crop)  # the models take RGB
            ears.append(eye_aspect_ratios(landmarks))
        n = len(detections)
        probabilities, emotions, affects, intensities = [None] * n, [None] * n, [None] * n, [None] * n
        with clock("model"):
            if self.predictor is not None:
                probabilities = self.predictor.predict_aligned(np.stack(crops[id(self.predictor)]))
        if self.emotion is not None:
            with clock("emotion"):
                classes = self.emotion.classes
                emotions = [Emotion(classes[int(np.argmax(p))], dict(zip(classes, p.tolist())))
                            for p in self.emotion.predict_aligned(np.stack(crops[id(self.emotion)]))]
        if self.affect is not None:
            with clock("valence/arousal"):
                affects = [tuple(float(v) for v in row)
                           for row in self.affect.predict_aligned(np.stack(crops[id(self.affect)]))]
        temporal = [None] * n
        if self.temporal is not None:
            with clock("temporal"):
                temporal = self._temporal(crops[id(self.temporal)], face_ids)
        if self.intensity is not None:
            with clock("intensity"):
                intensities = list(self.intensity.predict_aligned(np.stack(crops[id(self.intensity)])))
        results = []
        with clock("eyes+emoji"):
            for k, (detection, probs, ear) in enumerate(zip(detections, probabilities, ears)):
                closed = (ear[0] < self.eye_threshold, ear[1] < self.eye_threshold)
                decisions = match = None
                au_emotion = None
                if probs is not None:
                    decisions = self.predictor.decide(probs)
                    match = match_emoji(agreement_vector(decisions, *closed), self.emojis, self.metric)
                    au_emotion = self.rules.label(decisions.astype(np.float32))
                crop = crops[id(models[0])][k] if keep_crops else None
                results.append(FaceResult(detection.box, detection.confidence, probs, decisions, ear, closed, match,
                                          crop, emotions[k], affects[k], intensities[k], au_emotion, temporal[k]))
        return results

    def _temporal(self, crops: list[np.ndarray], face_ids: list[int] | None) -> list[np.ndarray | None]:
        """Each face's window of its last crops (oldest first, the first repeated until the window
        fills), through the temporal model in one batch."""
        window = self.temporal.window
        stacks = []
        for k, crop in enumerate(crops):
            if face_ids is None:
                stacks.append([crop] * window)
                continue
            frames = self._windows.setdefault(face_ids[k], [])
            frames.append(crop)
            del frames[:-window]
            stacks.append([frames[0]] * (window - len(frames)) + frames)
        if face_ids is not None:  # faces no longer tracked drop their windows
            for gone in set(self._windows) - set(face_ids):
                del self._windows[gone]
        return list(self.temporal.predict_aligned(np.stack([np.stack(s) for s in stacks])))


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
