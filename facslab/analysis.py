"""Face → the models' answers → eyes → emoji: what the CLI, the live loop, the web app and the
served model share. The analyzer takes any list of task predictors; each face is detected and its
landmarks found once, then aligned for each model, and every model runs once on all the faces of
an image. What a face's answer holds is assembled from what each predictor declares (``fields``,
``columns``, ``summary``); the eyes come from the landmarks, and the emoji and the FACS rules'
emotion from the first predictor that decides the 18 AUs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facslab.emoji import Emoji, Match, agreement_vector, load_emojis, match_emoji
from facslab.errors import ConfigError
from facslab.faces.align import align_face
from facslab.faces.detect import MIN_CONFIDENCE, Detection, check_detector, detect_faces, predict_landmarks
from facslab.faces.eyes import EYE_CLOSED_THRESHOLD, eye_aspect_ratios
from facslab.timing import StageClock

#: the columns every face's row starts with, whatever the models (OpenFace's names for the eyes)
EYE_COLUMNS = ("ear_left", "ear_right", "eye_left_closed", "eye_right_closed")
EMOJI_COLUMNS = ("emoji", "emoji_name", "emoji_score")


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    confidence: float
    ear: tuple[float, float]  # (left, right), the subject's sides
    eyes_closed: tuple[bool, bool]
    #: each predictor's outputs for this face, in the analyzer's order (predictor, row)
    outputs: list[tuple[object, np.ndarray]] = field(default_factory=list)
    probabilities: np.ndarray | None = None  # the AU-deciding model's outputs (None without one)
    decisions: np.ndarray | None = None  # its 18 AU decisions
    match: Match | None = None
    au_emotion: tuple[str, float] | None = None  # the FACS rule table's emotion for the AUs, its similarity
    crop: np.ndarray | None = None
    crops: list[np.ndarray] | None = None  # with keep_crops: each model's own aligned crop, in the models' order

    def output(self, task: str) -> np.ndarray | None:
        """The outputs of the model of ``task`` for this face (None when no such model ran)."""
        return next((row for predictor, row in self.outputs if predictor.task == task), None)

    def summaries(self) -> list[tuple[str, str]]:
        """(task, a few words) for each model, in order."""
        return [(predictor.task, predictor.summary(row)) for predictor, row in self.outputs]

    def as_dict(self) -> dict:
        info = {"box": [int(v) for v in self.box], "confidence": round(float(self.confidence), 4),
                "ear": {"left": round(self.ear[0], 4), "right": round(self.ear[1], 4)},
                "eyes_closed": {"left": bool(self.eyes_closed[0]), "right": bool(self.eyes_closed[1])}}
        for predictor, row in self.outputs:
            info.update(predictor.fields(row))
        if self.au_emotion is not None:
            info["au_emotion"] = {"label": self.au_emotion[0], "similarity": round(self.au_emotion[1], 4)}
        if self.match is not None:
            info.update({"emoji": self.match.emoji.char, "emoji_name": self.match.emoji.name,
                         "score": round(self.match.score, 4), "metric": self.match.metric,
                         "tied_with": [e.char for e in self.match.tied_with], "ranking": self.match.as_dict()["ranking"]})
        info["said"] = [{"task": task, "text": text} for task, text in self.summaries()]
        return info

    def row(self) -> list:
        """This face's values of ``FaceAnalyzer.column_names`` (after the frame's own columns)."""
        values = [round(self.ear[0], 4), round(self.ear[1], 4), int(self.eyes_closed[0]), int(self.eyes_closed[1])]
        if self.match is not None:
            values += [self.match.emoji.char, self.match.emoji.name, round(self.match.score, 4)]
        for predictor, row in self.outputs:
            values += predictor.columns(row)
        return values


@dataclass
class FrameFaces:
    """One image's faces between the two halves of ``FaceAnalyzer.analyze``: found, landmarked
    and aligned, not yet through the models (the offline analysis batches many frames' faces)."""

    detections: list[Detection]
    ears: list[tuple[float, float]]
    crops: list[list[np.ndarray]]  # per model, in the analyzer's order: one aligned RGB crop per face
    face_ids: list[int] | None = None


class FaceAnalyzer:
    """Detect (or take given boxes), align, run every model, measure the eyes; with a model that
    decides the AUs, match an emoji and name the FACS rules' emotion."""

    def __init__(self, predictors: list, emojis: list[Emoji] | None = None, metric: str = "kappa",
                 eye_threshold: float = EYE_CLOSED_THRESHOLD, detector: str = "hog", upsample: int = 1,
                 min_confidence: float = MIN_CONFIDENCE):
        self.predictors = [p for p in predictors if p is not None]
        if not self.predictors:
            raise ValueError("FaceAnalyzer needs at least one model")
        names = [n for p in self.predictors for n in p.column_names()]
        repeated = list(dict.fromkeys(n for n in names if names.count(n) > 1))
        if repeated:  # the user's choice of models: one line from the CLI
            sharing = [p.task for p in self.predictors if set(p.column_names()) & set(repeated)]
            raise ConfigError(f"two of the models given answer the same columns ({', '.join(repeated[:4])}): "
                              f"the {' and the '.join(sharing)} model; give each answer by one model")
        #: the model whose AU decisions drive the emoji and the FACS rules (the first that decides AUs)
        self.au_model = next((p for p in self.predictors if p.decides_aus), None)
        #: (model, face id) -> that face's last aligned crops, for the models that take a window of
        #: frames; a video stream passes its own (``analyze``'s ``windows``), so streams never mix
        self._windows: dict[tuple[int, int], list[np.ndarray]] = {}
        self.metric, self.eye_threshold = metric, eye_threshold
        if self.au_model is not None:
            from facslab.au_emotion import RuleTable

            self.rules = RuleTable.from_csv()  # the AU-derived emotion shown beside the emoji
            self.emojis = emojis if emojis is not None else load_emojis()
        check_detector(detector)
        self.detector, self.upsample, self.min_confidence = detector, upsample, min_confidence

    def column_names(self) -> tuple[str, ...]:
        """The columns of ``FaceResult.row``: the eyes, the emoji (with an AU model), then each
        model's own."""
        return (EYE_COLUMNS + (EMOJI_COLUMNS if self.au_model is not None else ())
                + tuple(n for p in self.predictors for n in p.column_names()))

    def provenance_notes(self) -> list[str]:
        """What the apps say once about models that have never seen a real face."""
        return [note for note in (p.provenance_note() for p in self.predictors) if note]

    def detect(self, image: np.ndarray) -> list[Detection]:
        return detect_faces(image, self.detector, self.upsample, self.min_confidence)

    def analyze(self, image: np.ndarray, detections: list[Detection] | None = None,
                keep_crops: bool = False, timings: dict | None = None, landmark_image: np.ndarray | None = None,
                channels: str = "RGB", face_ids: list[int] | None = None,
                windows: dict | None = None) -> list[FaceResult]:
        """Results for every face of a colour image (``channels`` RGB or BGR; ``detections``: boxes
        found already, e.g. by a tracker; ``landmark_image``: a grey copy to find landmarks on);
        ``timings`` accumulates seconds per stage. ``face_ids`` (the tracker's, one per detection)
        let a windowed model slide over each face's frames (kept in ``windows``, one dict per video
        stream); without them a still image is its own window (the frame repeated)."""
        if detections is None:
            with StageClock(timings)("detection"):
                detections = self.detect(image)
        if not detections:
            return []
        faces = self.faces(image, detections, timings, landmark_image, channels, face_ids)
        return self.answer([faces], keep_crops, timings, windows)[0]

    def faces(self, image: np.ndarray, detections: list[Detection], timings: dict | None = None,
              landmark_image: np.ndarray | None = None, channels: str = "RGB",
              face_ids: list[int] | None = None) -> FrameFaces:
        """The first half of ``analyze``: each face's landmarks, eyes and aligned crops."""
        clock = StageClock(timings)
        # one crop per face for each distinct alignment: models of the same input size share it
        by_spec = {spec: [] for spec in dict.fromkeys(p.alignment for p in self.predictors)}
        ears = []
        for detection in detections:
            with clock("landmarks"):  # the 68 points serve both the eye centres and the EAR
                landmarks = predict_landmarks(image if landmark_image is None else landmark_image, detection, 68)
            with clock("alignment"):
                for spec, crops in by_spec.items():
                    crop = align_face(image, landmarks, spec)
                    crops.append(crop[..., ::-1] if channels == "BGR" else crop)  # the models take RGB
            ears.append(eye_aspect_ratios(landmarks))
        return FrameFaces(list(detections), ears, [by_spec[p.alignment] for p in self.predictors], face_ids)

    def answer(self, frames: list[FrameFaces], keep_crops: bool = False, timings: dict | None = None,
               windows: dict | None = None) -> list[list[FaceResult]]:
        """The second half: every model once on the faces of all ``frames`` (in order: a windowed
        model's windows advance frame by frame), then the eyes and the emoji; the results per frame."""
        clock = StageClock(timings)
        windows = self._windows if windows is None else windows
        outputs = []
        for k, predictor in enumerate(self.predictors):
            with clock(predictor.task):
                if predictor.window:
                    stacks = [s for f in frames for s in self._stacks(k, predictor.window, f.crops[k], f.face_ids, windows)]
                else:
                    stacks = [crop for f in frames for crop in f.crops[k]]
                outputs.append(predictor.predict_aligned(np.stack(stacks)))
        results, n = [], 0
        with clock("eyes+emoji"):
            for frame in frames:
                results.append([self._result(frame, k, [o[n + k] for o in outputs], keep_crops)
                                for k in range(len(frame.detections))])
                n += len(frame.detections)
        return results

    def _result(self, frame: FrameFaces, k: int, outputs: list[np.ndarray], keep_crops: bool) -> FaceResult:
        detection, ear = frame.detections[k], frame.ears[k]
        closed = (ear[0] < self.eye_threshold, ear[1] < self.eye_threshold)
        result = FaceResult(detection.box, detection.confidence, ear, closed, list(zip(self.predictors, outputs)),
                            crop=frame.crops[0][k] if keep_crops else None,
                            crops=[c[k] for c in frame.crops] if keep_crops else None)
        if self.au_model is not None:
            result.probabilities = result.output(self.au_model.task)
            result.decisions = self.au_model.decide(result.probabilities)
            result.match = match_emoji(agreement_vector(result.decisions, *closed), self.emojis, self.metric)
            result.au_emotion = self.rules.label(result.decisions.astype(np.float32))
        return result

    @staticmethod
    def _stacks(model: int, window: int, crops: list[np.ndarray], face_ids: list[int] | None,
                windows: dict) -> list[np.ndarray]:
        """Each face's window of its last crops (oldest first, the first repeated until the window
        fills)."""
        stacks = []
        for k, crop in enumerate(crops):
            if face_ids is None:
                stacks.append(np.stack([crop] * window))
                continue
            frames = windows.setdefault((model, face_ids[k]), [])
            frames.append(crop)
            del frames[:-window]
            stacks.append(np.stack([frames[0]] * (window - len(frames)) + frames))
        if face_ids is not None:  # faces no longer tracked drop their windows
            for gone in [key for key in windows if key[0] == model and key[1] not in face_ids]:
                del windows[gone]
        return stacks
