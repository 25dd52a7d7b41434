"""A trained AU detector packaged with everything needed to use it: input size, normalisation,
alignment, AU list and decision thresholds. Saved as a folder; logged to MLflow as a pyfunc model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from facslab.au import AU_LABELS
from facslab.faces.align import AlignmentSpec
from lightning_modules.au_detector import AUDetector

WEIGHTS_FILE, CONFIG_FILE = "model.pt", "config.json"


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
                      min_confidence: float | None = None):
        """Detect, align and predict every face of an RGB image: ``FaceResult``s with box, AU
        probabilities and decisions (and the eye states and emoji match of the one face pipeline)."""
        from facslab.analysis import FaceAnalyzer  # the analyzer builds on this class

        options = {} if min_confidence is None else {"min_confidence": min_confidence}
        return FaceAnalyzer(self, detector=detector, upsample=upsample, **options).analyze(image)

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
