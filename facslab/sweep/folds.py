"""Fold reuse: every finished fold's validation outputs are saved with the trial's run under a key
of everything its result depends on, and the retry of an interrupted trial reuses those whose key
still matches."""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cache
from pathlib import Path

import mlflow
import numpy as np

from facslab.sweep.settings import RUN_ONLY_KEYS
from facslab.mlflow_store import artifact_dir

log = logging.getLogger(__name__)


#: per-fold validation outputs in a trial's run: what a retry of an interrupted trial reuses
FOLDS_ARTIFACT = "folds"

CODE_PACKAGES = ("facslab", "datamodules", "lightning_modules")

@cache
def code_digest() -> str:
    """Digest of the Python source that trains and scores a fold: folds computed by other code are
    not reused (a git commit would also change with a README edit)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]  # the repository: facslab/sweep/folds.py
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]

#: the libraries a fold's training and scoring runs on: another version may give other numbers
KEY_LIBRARIES = ("torch", "torchvision", "lightning", "numpy", "scikit-learn", "torchmetrics", "albumentations")

@cache
def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in KEY_LIBRARIES}

def fold_key(model_args: dict, train: dict, data: dict, split_id: str) -> str:
    """Everything a fold's result depends on; a saved fold is reused only under the same key. Where
    the data is kept and how visibly it runs (``RUN_ONLY_KEYS``) are not in it: the split id names
    the files."""
    kept = {name: {k: v for k, v in values.items() if f"{name}.{k}" not in RUN_ONLY_KEYS}
            for name, values in (("data", data), ("train", train))}
    text = json.dumps({"model": model_args, **kept, "split": split_id, "code": code_digest(),
                       "libraries": library_versions()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

def save_fold(fold: int, key: str, outputs: np.ndarray, labels: np.ndarray, score: float, history: list[dict],
              best_epoch: int, best_val_loss: float) -> None:
    with artifact_dir() as folder:
        path = folder / f"fold{fold}.npz"
        np.savez_compressed(path, outputs=outputs, labels=labels, key=key, score=score, history=json.dumps(history),
                            best_epoch=best_epoch, best_val_loss=best_val_loss)
        mlflow.log_artifact(str(path), FOLDS_ARTIFACT)

def finished_folds(run_id: str) -> dict[int, dict]:
    """The folds an interrupted trial's run finished, by fold number (none if it finished none)."""
    try:
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=FOLDS_ARTIFACT))
    except (mlflow.exceptions.MlflowException, OSError) as error:
        log.info("run %s has no finished folds to reuse (%s)", run_id, type(error).__name__)
        return {}
    folds = {}
    for path in sorted(folder.glob("fold*.npz")):
        with np.load(path) as saved:
            folds[int(path.stem.removeprefix("fold"))] = {name: saved[name] for name in saved.files}
    return folds
