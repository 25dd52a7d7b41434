"""FER-2013 as released (Kaggle ``fer2013.csv``), its ICML variant and the FER+ votes.

* ``fer2013.csv``: header ``emotion,pixels,Usage``; ``pixels`` is 2,304 integers 0-255 separated
  by single spaces (48x48 grey, row-major), quoted in some copies; ``Usage`` is Training,
  PublicTest or PrivateTest.
* ``icml_face_data.csv``: header ``emotion, Usage, pixels`` (leading spaces, another order).
* FER+ ``fer2013new.csv``: the same rows in the same order, with 10 taggers' votes per class;
  rows pair by position, not by name (``Image name`` is empty for non-faces).

A bad row (wrong pixel count, a value out of range, an unknown label or usage) is skipped and
reported with its file and line; the rest of the file is read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.badinput import TEXT_ENCODING, BadInputError, MissingInputError, SkipReport, read_csv

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FILENAMES = ("fer2013.csv", "icml_face_data.csv")
SIDE = 48
FERPLUS_FILE = "fer2013new.csv"
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_COLUMNS = FERPLUS_CLASSES + ("unknown", "NF")


def find_csv(root: str | Path) -> Path:
    """The FER-2013 CSV: ``root`` itself, or the first of ``FILENAMES`` inside it."""
    root = Path(root)
    if root.is_file():
        return root
    for name in FILENAMES:
        if (root / name).is_file():
            return root / name
    raise MissingInputError(root, f"no {' or '.join(FILENAMES)} (FER-2013 from Kaggle, or its ICML variant)")


def parse_pixels(field: str) -> np.ndarray:
    values = field.strip().strip('"').split(" ")
    if len(values) != SIDE * SIDE:
        raise ValueError(f"{len(values)} pixel values, expected {SIDE * SIDE}")
    pixels = np.array(values, dtype=np.int64)
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values outside 0-255")
    return pixels.astype(np.uint8).reshape(SIDE, SIDE)


def read_fer2013(root: str | Path, report: SkipReport | None = None) -> pd.DataFrame:
    """One row per usable image: ``row`` (0-based data row, for pairing with FER+), ``emotion``
    (0-6), ``usage`` (Training/PublicTest/PrivateTest), ``role`` (train/val/test), ``pixels``
    (48x48 uint8)."""
    report = report if report is not None else SkipReport()
    path = find_csv(root)
    with open(path, newline="", encoding=TEXT_ENCODING) as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise BadInputError(path, "empty file") from None
        missing = {"emotion", "pixels", "Usage"} - set(header)
        if missing:
            raise BadInputError(path, f"header {header} lacks {', '.join(sorted(missing))}")
        columns = {name: header.index(name) for name in ("emotion", "pixels", "Usage")}
        rows = []
        for number, fields in enumerate(reader):
            where = f"{path}:{number + 2}"
            try:
                if len(fields) != len(header):
                    raise ValueError(f"{len(fields)} fields, expected {len(header)}")
                emotion = int(fields[columns["emotion"]])
                if not 0 <= emotion < len(CLASSES):
                    raise ValueError(f"emotion {emotion} outside 0-{len(CLASSES) - 1}")
                usage = fields[columns["Usage"]].strip()
                if usage not in USAGES:
                    raise ValueError(f"usage {usage!r} is none of {', '.join(USAGES)}")
                pixels = parse_pixels(fields[columns["pixels"]])
            except ValueError as error:
                report.skip(where, str(error))
                continue
            rows.append({"row": number, "emotion": emotion, "usage": usage, "role": USAGES[usage], "pixels": pixels})
    if not rows:
        raise BadInputError(path, "no usable rows")
    table = pd.DataFrame(rows)
    table.attrs["data_rows"] = number + 1  # usable or not: what FER+ is paired with by position
    return table


def ferplus_majority(votes: np.ndarray) -> int | None:
    """FER+'s majority rule on one row of the 10 vote columns: votes of 1 are dropped as outliers;
    the top class needs more than half the remaining votes, and unknown/not-a-face mean no label.
    Returns a ``FERPLUS_CLASSES`` index or None."""
    votes = np.where(np.asarray(votes) <= 1, 0, votes)
    total = votes.sum()
    if total == 0:
        return None
    top = int(np.argmax(votes))
    if votes[top] * 2 <= total or (votes == votes[top]).sum() > 1 or top >= len(FERPLUS_CLASSES):
        return None
    return top


def read_ferplus(path: str | Path, report: SkipReport | None = None) -> pd.DataFrame:
    """FER+ labels by data row: ``row``, ``ferplus`` (a ``FERPLUS_CLASSES`` index, or -1 when the
    majority rule gives none) and ``votes`` (10 integers)."""
    report = report if report is not None else SkipReport()
    path = Path(path)
    if path.is_dir():
        path = path / FERPLUS_FILE
    if not path.is_file():
        raise MissingInputError(path, f"no FER+ votes file ({FERPLUS_FILE}, from microsoft/FERPlus)")
    table = read_csv(path, dtype={"Image name": str}, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    missing = set(FERPLUS_COLUMNS) - set(table.columns)
    if missing:
        raise BadInputError(path, f"header lacks {', '.join(sorted(missing))}")
    if table.empty:
        raise BadInputError(path, "header only, no rows of votes")
    rows = []
    for number, votes in enumerate(table[list(FERPLUS_COLUMNS)].to_numpy()):
        try:
            votes = votes.astype(np.int64)
        except ValueError:
            report.skip(f"{path}:{number + 2}", "votes are not integers")
            continue
        label = ferplus_majority(votes)
        rows.append({"row": number, "ferplus": -1 if label is None else label, "votes": votes})
    votes = pd.DataFrame(rows, columns=["row", "ferplus", "votes"]).astype({"row": int})
    votes["usage"] = table["Usage"].str.strip().to_numpy()[votes["row"].to_numpy()] if "Usage" in table.columns else None
    votes.attrs["data_rows"], votes.attrs["path"] = len(table), str(path)
    return votes


def pair_ferplus(images: pd.DataFrame, votes: pd.DataFrame, images_path: str | Path) -> pd.DataFrame:
    """FER+ votes beside the ``fer2013.csv`` rows they label. FER+ pairs by row position, so the
    two files must have the same number of data rows and, row by row, the same ``Usage``."""
    ours, theirs = images.attrs.get("data_rows"), votes.attrs.get("data_rows")
    if ours != theirs:
        raise BadInputError(votes.attrs.get("path", FERPLUS_FILE),
                            f"{theirs} rows of votes for the {ours} data rows of {images_path}: FER+ pairs them "
                            "by position, so they must be the release's files (35,887 rows each)")
    paired = images.merge(votes[["row", "ferplus", "usage"]], on="row", how="inner", suffixes=("", "_ferplus"))
    known = paired["usage_ferplus"].notna()
    differ = paired[known & (paired["usage"] != paired["usage_ferplus"])]
    if len(differ):
        first = differ.iloc[0]
        raise BadInputError(votes.attrs.get("path", FERPLUS_FILE),
                            f"{len(differ)} rows disagree with {images_path} on Usage (first: data row "
                            f"{int(first['row']) + 1}, {first['usage_ferplus']} against {first['usage']})")
    return paired.drop(columns="usage_ferplus")
