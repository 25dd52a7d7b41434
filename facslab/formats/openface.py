"""OpenFace 2.0 output: AU labels as ``FeatureExtraction`` and ``FaceLandmarkImg`` write them.

``FeatureExtraction -fdir <images>`` writes one CSV for the folder, one row per image in sorted
file order (``frame`` 1..N); ``FaceLandmarkImg -fdir <images>`` writes one CSV per image named
after it, one row per face. Both have the same columns after their first few; the AU columns come
last: ``AUxx_r`` (intensity 0-5) for 17 AUs, then ``AUxx_c`` (presence 0/1) for those plus 28.

Older builds separate header and values with ", "; ``_c`` is written as 0.0 or 0.00. The reader
accepts all of these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facslab.au import NUM_AUS, OPENFACE_C_COLUMNS, OPENFACE_C_TO_INDEX, OPENFACE_R_COLUMNS
from facslab.badinput import BadInputError

_BODY_COLUMNS: tuple[str, ...] = (
    ("gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y")
    + tuple(f"eye_lmk_{axis}_{i}" for axis in "xyXYZ" for i in range(56))
    + ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
    + tuple(f"{axis}_{i}" for axis in "xyXYZ" for i in range(68))
    + ("p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty") + tuple(f"p_{i}" for i in range(34))
    + OPENFACE_R_COLUMNS + OPENFACE_C_COLUMNS
)
FEATURE_EXTRACTION_COLUMNS = ("frame", "face_id", "timestamp", "confidence", "success") + _BODY_COLUMNS
FACE_LANDMARK_IMG_COLUMNS = ("face", "confidence") + _BODY_COLUMNS


def read_openface_csv(path: str | Path, required: tuple[str, ...] = ("confidence",)) -> pd.DataFrame:
    """An OpenFace CSV with clean column names, checked for the AU presence columns."""
    path = Path(path)
    try:
        table = pd.read_csv(path, skipinitialspace=True, encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise BadInputError(path, f"not a readable CSV ({error})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in (*required, *OPENFACE_C_COLUMNS) if c not in table.columns]
    if missing:
        raise BadInputError(path, f"missing required columns: {', '.join(missing)}")
    for column in OPENFACE_C_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def presence_labels(table: pd.DataFrame) -> np.ndarray:
    """(n, 18) presence labels from OpenFace ``_c`` columns (23 -> 23/24, 26 -> 26/27, 45 -> 43);
    NaN where a value is not a number."""
    labels = np.zeros((len(table), NUM_AUS), np.float32)
    for column in OPENFACE_C_COLUMNS:
        index = OPENFACE_C_TO_INDEX[column]
        values = table[column].to_numpy(dtype=np.float64)
        labels[:, index] = np.fmax(labels[:, index], (values > 0.5).astype(np.float32))
        labels[np.isnan(values), index] = np.nan
    return labels


def read_feature_extraction(path: str | Path, image_names: list[str]) -> pd.DataFrame:
    """Labels from a ``FeatureExtraction`` CSV run over a folder whose sorted files are
    ``image_names``: columns image, success, confidence, labels (18-vector)."""
    table = read_openface_csv(path, required=("frame", "confidence", "success"))
    names = sorted(image_names)
    frames = table["frame"].to_numpy()
    # FeatureExtraction writes one row per image (success 0 when it finds no face) and rows are
    # paired with the sorted files by frame number: any other count would shift later labels.
    if len(table) != len(names):
        raise BadInputError(path, f"{len(table)} rows for {len(names)} images: FeatureExtraction writes one row "
                                  "per image of the folder it ran on; rerun it on this image folder")
    if frames.min() < 1 or frames.max() > len(names) or len(np.unique(frames)) != len(frames):
        raise BadInputError(path, f"frame numbers must be 1..{len(names)}, each once (found {frames.min()}.."
                                  f"{frames.max()}, {len(np.unique(frames))} distinct)")
    return pd.DataFrame({
        "image": [names[f - 1] for f in frames],
        "success": table["success"].to_numpy() > 0,
        "confidence": table["confidence"].to_numpy(),
        "labels": list(presence_labels(table)),
    })


def read_face_landmark_img(folder: str | Path, image_names: list[str]) -> tuple[pd.DataFrame, list[BadInputError]]:
    """Labels from ``FaceLandmarkImg`` per-image CSVs; the most confident face of each image.

    Returns the table and the problems found (missing or broken CSVs) for the caller to report.
    """
    folder = Path(folder)
    rows, problems = [], []
    for name in image_names:
        path = folder / f"{Path(name).stem}.csv"
        if not path.exists():
            problems.append(BadInputError(path, "no OpenFace CSV for this image (no face found?)"))
            continue
        try:
            table = read_openface_csv(path, required=("face", "confidence"))
        except BadInputError as error:
            problems.append(error)
            continue
        if table.empty:
            problems.append(BadInputError(path, "OpenFace CSV has no face rows"))
            continue
        best = table.iloc[[int(table["confidence"].to_numpy().argmax())]]
        rows.append(dict(image=name, success=True, confidence=float(best["confidence"].iloc[0]),
                         labels=presence_labels(best)[0]))
    return pd.DataFrame(rows, columns=["image", "success", "confidence", "labels"]), problems
