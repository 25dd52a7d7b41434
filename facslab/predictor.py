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
    """``provenance``: what the model was trained on (``trained_on``: generated, real or mixed;
    ``datasets``), so the apps can say when a model has only ever seen generated faces.
    ``device``: where the model runs (auto: a GPU when there is one)."""

    def __init__(self, model: AUDetector, alignment: AlignmentSpec | None = None, provenance: dict | None = None,
                 device: str = "auto"):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.provenance = dict(provenance or {})
        hp = model.hparams
        self.alignment = alignment or AlignmentSpec(size=hp.image_size)
        self.mean = np.asarray(hp.mean, np.float32) * 255.0
        self.std = np.asarray(hp.std, np.float32) * 255.0
        self.thresholds = model.thresholds.cpu().numpy().astype(np.float64)
        self.au_labels = AU_LABELS

    @property
    def trained_only_on_generated(self) -> bool:
        return self.provenance.get("trained_on") == "generated"

    def provenance_note(self) -> str | None:
        """One sentence for the apps when the model has never seen a real face."""
        if not self.trained_only_on_generated:
            return None
        return (f"note: this model was trained only on generated faces ({self.provenance.get('datasets', 'facslab data')}); "
                "its AUs on real photographs are not meaningful until it is trained on real data")

    @torch.inference_mode()
    def predict_aligned(self, crops: np.ndarray) -> np.ndarray:
        """AU probabilities (N, 18) for aligned RGB uint8 crops (N, S, S, 3)."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1:3] != (self.alignment.size, self.alignment.size):
            raise ValueError(f"crops must be {self.alignment.size}x{self.alignment.size}, got {crops.shape[1:3]}")
        x = torch.from_numpy(((crops.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2).copy())
        return torch.sigmoid(self.model(x.to(self.device))).float().cpu().numpy()

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
        torch.save({k: v.cpu() for k, v in self.model.state_dict().items()}, folder / WEIGHTS_FILE)
        hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(self.model.hparams).items()}
        hparams["weights"] = None  # the saved state holds the weights
        hparams["thresholds"] = [float(t) for t in self.thresholds]
        (folder / CONFIG_FILE).write_text(json.dumps({"hparams": hparams, "alignment": asdict(self.alignment),
                                                      "au_labels": list(self.au_labels),
                                                      "provenance": self.provenance}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> AUPredictor:
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        model = AUDetector(**config["hparams"])
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return cls(model, AlignmentSpec(**config["alignment"]), config.get("provenance"), device)
