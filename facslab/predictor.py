"""A trained AU detector packaged with everything needed to use it: input size, normalisation,
alignment, AU list and decision thresholds. Saved as a folder; logged to MLflow as a pyfunc model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from facslab.au import AU_LABELS
from facslab.faces.align import AlignmentSpec, align_face
from lightning_modules.au_detector import AUDetector

WEIGHTS_FILE, CONFIG_FILE = "model.pt", "config.json"


@dataclass
class FacePrediction:
    box: tuple[int, int, int, int] | None  # left, top, right, bottom in the image (None: crop given)
    confidence: float
    probabilities: np.ndarray  # (18,)
    decisions: np.ndarray  # (18,) bool, at the model's thresholds

    def as_dict(self) -> dict:
        return {"box": list(self.box) if self.box else None, "confidence": self.confidence,
                **{f"AU{a}_p": float(p) for a, p in zip(AU_LABELS, self.probabilities)},
                **{f"AU{a}": bool(d) for a, d in zip(AU_LABELS, self.decisions)}}


class AUPredictor:
    def __init__(self, model: AUDetector, alignment: AlignmentSpec | None = None):
        self.model = model.eval()
        hp = model.hparams
        self.alignment = alignment or AlignmentSpec(size=hp.image_size)
        self.mean = np.asarray(hp.mean, np.float32) * 255.0
        self.std = np.asarray(hp.std, np.float32) * 255.0
        self.thresholds = model.thresholds.numpy().astype(np.float64)
        self.au_labels = AU_LABELS

    @torch.no_grad()
    def predict_aligned(self, crops: np.ndarray) -> np.ndarray:
        """AU probabilities (N, 18) for aligned RGB uint8 crops (N, S, S, 3)."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1:3] != (self.alignment.size, self.alignment.size):
            raise ValueError(f"crops must be {self.alignment.size}x{self.alignment.size}, got {crops.shape[1:3]}")
        x = torch.from_numpy(((crops.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2).copy())
        return torch.sigmoid(self.model(x)).numpy()

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities >= self.thresholds

    def predict_image(self, image: np.ndarray, detector: str = "hog", upsample: int = 1,
                      min_confidence: float | None = None) -> list[FacePrediction]:
        """Detect, align and predict every face of an RGB image."""
        from facslab.faces.detect import MIN_CONFIDENCE, detect_faces, predict_landmarks

        threshold = MIN_CONFIDENCE if min_confidence is None else min_confidence
        faces = detect_faces(image, detector, upsample, threshold)
        if not faces:
            return []
        crops = np.stack([align_face(image, predict_landmarks(image, f, 5), self.alignment) for f in faces])
        probs = self.predict_aligned(crops)
        return [FacePrediction(f.box, f.confidence, p, self.decide(p)) for f, p in zip(faces, probs)]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / WEIGHTS_FILE)
        hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(self.model.hparams).items()}
        hparams["weights"] = None  # the saved state holds the weights
        hparams["thresholds"] = [float(t) for t in self.thresholds]
        (folder / CONFIG_FILE).write_text(json.dumps({"hparams": hparams, "alignment": asdict(self.alignment),
                                                      "au_labels": list(self.au_labels)}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> AUPredictor:
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        model = AUDetector(**config["hparams"])
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return cls(model, AlignmentSpec(**config["alignment"]))
