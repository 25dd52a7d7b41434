"""AffectNet in both releases.

* CSV release: ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv``, header
  ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal``;
  images under ``Manually_Annotated_Images/`` (e.g. ``689/<56 hex>.jpg``); the face box in the
  original image's pixels; 68 landmarks as 136 floats joined by ``;`` (x1;y1;x2;y2...);
  expression 0 Neutral ... 7 Contempt, 8 None, 9 Uncertain, 10 No-Face; valence and arousal in
  [-1, 1], -2 when not annotated.
* 2021 release: ``train_set/images/<id>.jpg`` (224x224) with ``train_set/annotations/<id>_exp.npy``,
  ``_val.npy``, ``_aro.npy`` and ``_lnd.npy``; ``val_set`` likewise.

The validation set serves as the test set. A row with an unreadable field is skipped and reported
with its file and line; a missing or corrupt image is reported when its face is cropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facslab.badinput import BadInputError, MissingInputError, SkipReport, read_csv

CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
NON_EMOTION_CODES = {8: "none", 9: "uncertain", 10: "no-face"}
NOT_ANNOTATED = -2.0
LISTS = "Manually_Annotated_file_lists"
IMAGES = "Manually_Annotated_Images"
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")
SPLIT_FILES = {"train": "training.csv", "test": "validation.csv"}
RELEASE_2021 = {"train": "train_set", "test": "val_set"}


def detect_release(root: str | Path) -> str:
    root = Path(root)
    if (root / LISTS).is_dir():
        return "csv"
    if (root / RELEASE_2021["train"]).is_dir():
        return "2021"
    raise MissingInputError(root, f"neither AffectNet release ({LISTS}/ with CSV lists, or train_set/ of the 2021 "
                                  "release) is there")


def _affect(value: float) -> float:
    """Valence or arousal; NaN where AffectNet writes -2 (not annotated)."""
    if value == NOT_ANNOTATED:
        return float("nan")
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"valence/arousal {value:g} outside [-1, 1] (and not -2)")
    return float(value)


def read_affectnet(root: str | Path, split: str = "train", report: SkipReport | None = None) -> pd.DataFrame:
    """One row per annotated image of ``split`` (train, or test: the released validation set):
    ``image`` (path), ``box`` (x, y, w, h or None), ``landmarks`` (136 floats or None),
    ``expression`` (0-10), ``valence`` and ``arousal`` (NaN when not annotated)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be train or test, not {split!r}")
    report = report if report is not None else SkipReport()
    root = Path(root)
    release = detect_release(root)
    return _read_csv(root, split, report) if release == "csv" else _read_2021(root, split, report)


def _read_csv(root: Path, split: str, report: SkipReport) -> pd.DataFrame:
    path = root / LISTS / SPLIT_FILES[split]
    if not path.is_file():
        raise MissingInputError(path, "AffectNet list not found")
    table = read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise BadInputError(path, f"header lacks {', '.join(missing)}")
    rows = []
    for number, row in enumerate(table.itertuples(index=False), start=2):
        try:
            expression = int(row.expression)
            if not 0 <= expression <= 10:
                raise ValueError(f"expression {expression} outside 0-10")
            box = tuple(float(getattr(row, c)) for c in ("face_x", "face_y", "face_width", "face_height"))
            points = [float(v) for v in row.facial_landmarks.split(";")] if row.facial_landmarks.strip() else []
            if points and len(points) != 136:
                raise ValueError(f"{len(points)} landmark values, expected 136")
            valence, arousal = _affect(float(row.valence)), _affect(float(row.arousal))
        except ValueError as error:
            report.skip(f"{path}:{number}", str(error))
            continue
        rows.append({"image": str(root / IMAGES / row.subDirectory_filePath), "name": row.subDirectory_filePath,
                     "box": box, "landmarks": tuple(points) or None, "expression": expression,
                     "valence": valence, "arousal": arousal})
    if not rows:
        raise BadInputError(path, "header only, no rows" if table.empty else f"none of its {len(table)} rows is usable")
    return pd.DataFrame(rows)


def _read_2021(root: Path, split: str, report: SkipReport) -> pd.DataFrame:
    folder = root / RELEASE_2021[split]
    rows = []
    for image in sorted((folder / "images").glob("*.jpg")):
        stem = folder / "annotations" / image.stem
        try:
            expression = int(str(np.load(f"{stem}_exp.npy")))
            if not 0 <= expression <= 10:
                raise ValueError(f"expression {expression} outside 0-10")
            valence = _affect(float(str(np.load(f"{stem}_val.npy"))))
            arousal = _affect(float(str(np.load(f"{stem}_aro.npy"))))
            points = np.load(f"{stem}_lnd.npy").astype(float).ravel()
            if len(points) != 136:
                raise ValueError(f"{len(points)} landmark values, expected 136")
        except (OSError, ValueError) as error:
            report.skip(image, f"annotations: {error}")
            continue
        rows.append({"image": str(image), "name": image.name, "box": None, "landmarks": tuple(points),
                     "expression": expression, "valence": valence, "arousal": arousal})
    if not rows:
        raise BadInputError(folder, "no annotated images")
    return pd.DataFrame(rows)
