"""Generated OpenFace 2.0 output (``facslab.formats.openface`` reads it): noisy AU labels of a
generated dataset's truth, as ``FeatureExtraction`` or ``FaceLandmarkImg`` writes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.au import (
    NUM_AUS, OPENFACE_C_AUS, OPENFACE_C_COLUMNS, OPENFACE_C_TO_INDEX, OPENFACE_R_AUS, OPENFACE_R_COLUMNS,
    au_index,
)
from facslab.formats.openface import FACE_LANDMARK_IMG_COLUMNS, FEATURE_EXTRACTION_COLUMNS


#: Per-AU probability that OpenFace misses a present AU / reports an absent one. Rough figures in
#: line with OpenFace 2.0's cross-dataset AU F1 (0.4-0.7), harder AUs (14, 15, 20, 23, 28) worse.
DEFAULT_MISS = {1: .25, 2: .3, 4: .3, 5: .35, 6: .2, 7: .35, 9: .3, 10: .3, 12: .1, 14: .4, 15: .45,
                17: .35, 20: .45, 23: .45, 25: .15, 26: .35, 28: .5, 45: .2}


DEFAULT_FALSE_ALARM = {1: .06, 2: .05, 4: .08, 5: .04, 6: .06, 7: .12, 9: .03, 10: .06, 12: .05,
                       14: .1, 15: .06, 17: .08, 20: .05, 23: .05, 25: .08, 26: .1, 28: .03, 45: .04}


@dataclass(frozen=True)
class LabelNoise:
    miss: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_MISS))
    false_alarm: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_FALSE_ALARM))
    no_face_rate: float = 0.01  # rows where OpenFace found no face (success 0)


def noisy_openface_labels(intensities: np.ndarray, eye_closure: np.ndarray, noise: LabelNoise,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(``_r`` values, ``_c`` values) OpenFace might output for faces with these true AUs.

    ``intensities``: (n, 18) true FACS intensities; ``eye_closure``: (n,) 0-1 (AU45 = closed eye).
    """
    n = len(intensities)
    truth_c = np.zeros((n, len(OPENFACE_C_AUS)), bool)
    truth_r = np.zeros((n, len(OPENFACE_C_AUS)))
    for j, code in enumerate(OPENFACE_C_AUS):
        if code == 45:
            truth_r[:, j] = 5 * np.asarray(eye_closure)
        else:
            truth_r[:, j] = intensities[:, au_index(code)]
        truth_c[:, j] = truth_r[:, j] > 0
    miss = np.array([noise.miss[c] for c in OPENFACE_C_AUS])
    false_alarm = np.array([noise.false_alarm[c] for c in OPENFACE_C_AUS])
    draw = rng.random(truth_c.shape)
    noisy_c = np.where(truth_c, draw >= miss, draw < false_alarm)
    r = np.where(noisy_c, np.clip(truth_r + rng.normal(0, 0.5, truth_r.shape), 0.5, 5),
                 rng.uniform(0, 0.8, truth_r.shape))
    r = np.where(noisy_c & ~truth_c, rng.uniform(0.5, 2.0, truth_r.shape), r)
    r_columns = [OPENFACE_C_AUS.index(c) for c in OPENFACE_R_AUS]
    return np.round(r[:, r_columns], 2), noisy_c.astype(float)


def _body(landmarks68: np.ndarray, r: np.ndarray, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values for the columns after the identifying ones: gaze, eye landmarks, pose, 2D/3D
    landmarks, shape parameters (plausible filler), then the AU columns."""
    n = len(landmarks68)
    eyes = np.concatenate([landmarks68[:, 36:42].mean(1, keepdims=True).repeat(28, 1),
                           landmarks68[:, 42:48].mean(1, keepdims=True).repeat(28, 1)], axis=1)
    ring = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    eyes = eyes + np.concatenate([np.stack([np.cos(ring), np.sin(ring)], 1) * 3] * 2)[None]
    centre = landmarks68.mean(1, keepdims=True)
    xyz = np.concatenate([(landmarks68 - centre) * 2.0, rng.normal(0, 5, (n, 68, 1))], axis=2)
    parts = [
        rng.normal(0, 0.1, (n, 8)),
        eyes[..., 0], eyes[..., 1], rng.normal(0, 10, (n, 56)), rng.normal(0, 10, (n, 56)),
        rng.normal(0, 5, (n, 56)),
        np.column_stack([rng.normal(0, 10, n), rng.normal(0, 10, n), rng.uniform(400, 600, n),
                         rng.normal(0, 0.1, (n, 3))]),
        landmarks68[..., 0], landmarks68[..., 1], xyz[..., 0], xyz[..., 1], xyz[..., 2],
        np.column_stack([rng.uniform(0.8, 1.2, n), rng.normal(0, 0.1, (n, 3)), rng.normal(90, 5, (n, 2))]),
        rng.normal(0, 5, (n, 34)),
        r, c,
    ]
    return np.concatenate(parts, axis=1)


def _write_csv(path: Path, columns, ids: np.ndarray, body: np.ndarray, id_formats, separator: str,
               c_format: str) -> None:
    n_c = len(OPENFACE_C_COLUMNS)
    formats = list(id_formats) + ["%.3f"] * (body.shape[1] - n_c - len(OPENFACE_R_COLUMNS)) \
        + ["%.2f"] * len(OPENFACE_R_COLUMNS) + [c_format] * n_c
    values = np.concatenate([ids, body], axis=1)
    with open(path, "w") as handle:
        handle.write(separator.join(columns) + "\n")
        np.savetxt(handle, values, fmt=formats, delimiter=separator)


def write_openface(
    truth: pd.DataFrame,
    out: str | Path,
    tool: str = "FeatureExtraction",
    noise: LabelNoise = LabelNoise(),
    seed: int = 0,
    separator: str = ",",
    c_format: str = "%.2f",
) -> pd.DataFrame:
    """Write noisy OpenFace labels for generated images (rows of ``truth``, in file-name order).

    ``tool="FeatureExtraction"``: ``out`` is one CSV; ``"FaceLandmarkImg"``: ``out`` is a folder
    of per-image CSVs. Returns the noisy labels as written: image, success, 18-AU presence.
    """
    truth = truth.sort_values("image").reset_index(drop=True)
    rng = np.random.default_rng([seed, 4])
    intensities = np.stack(truth["intensities"].to_numpy())
    r, c = noisy_openface_labels(intensities, truth["eye_closure"].to_numpy(), noise, rng)
    landmarks = np.stack(truth["landmarks68"].to_numpy())
    success = rng.random(len(truth)) >= noise.no_face_rate
    confidence = np.where(success, rng.uniform(0.85, 0.98, len(truth)), 0.0)
    r[~success], c[~success] = 0.0, 0.0  # OpenFace writes zeros where it found no face
    body = _body(landmarks, r, c, rng)
    body[~success] = 0.0
    out = Path(out)
    if tool == "FeatureExtraction":
        out.parent.mkdir(parents=True, exist_ok=True)
        frame = np.arange(1, len(truth) + 1)
        ids = np.column_stack([frame, np.zeros(len(truth)), (frame - 1) / 30.0, confidence, success])
        _write_csv(out, FEATURE_EXTRACTION_COLUMNS, ids, body, ["%d", "%d", "%.3f", "%.2f", "%d"],
                   separator, c_format)
    elif tool == "FaceLandmarkImg":
        out.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(truth["image"]):
            if not success[k]:
                continue  # FaceLandmarkImg writes no row for an image without a face
            _write_csv(out / f"{Path(image).stem}.csv", FACE_LANDMARK_IMG_COLUMNS,
                       np.array([[0, confidence[k]]]), body[k:k + 1], ["%d", "%.3f"], separator, c_format)
    else:
        raise ValueError(f"tool must be FeatureExtraction or FaceLandmarkImg, not {tool!r}")
    labels = np.zeros((len(truth), NUM_AUS), np.float32)
    for j, column in enumerate(OPENFACE_C_COLUMNS):
        labels[:, OPENFACE_C_TO_INDEX[column]] = np.maximum(labels[:, OPENFACE_C_TO_INDEX[column]], c[:, j])
    return pd.DataFrame({"image": truth["image"], "success": success, "labels": list(labels)})
