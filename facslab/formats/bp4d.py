"""BP4D / BP4D+ AU occurrence codes and DISFA AU intensities, as released.

* BP4D ``AUCoding/AU_OCC/F001_T1.csv``: comma-separated, one header row of the integers
  ``0,1,...,99``; column ``0`` is the frame number, column ``k`` AU k; values 0/1, 9 = unknown.
  Frames cover only the coded segment.
* BP4D+ ``AUCoding/AU_OCC/<Subject>_<Task>.csv``: the header names the scored AUs (about 35
  columns, ``AU1``/``1`` style), the first column the frame; the two are told apart by the column
  count (BP4D's has 100).
* DISFA ``ActionUnit_Labels/SN001/SN001_au1.txt`` ... ``_au26.txt``: no header, ``frame,intensity``
  lines, frames 1-based, intensity 0-5, for 12 AUs.

Frame images are not part of the label release; by default they are read from
``<images>/<subject>/<task>/<frame>.jpg`` (BP4D) and ``<images>/<subject>/<frame>.jpg`` (DISFA),
with the folder name and the frame's zero padding set by the layout. Unknown codes are NaN: they
are masked out of losses and metrics, never counted as negative.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.au import FACS_CODE_TO_INDEX, NUM_AUS
from facslab.badinput import BadInputError, SkipReport, read_csv, read_text

BP4D_PROTOCOL_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
#: The emotion each task was designed to induce, named as CK+ names the shared ones. BP4D: Zhang et
#: al., "BP4D-Spontaneous", Image and Vision Computing 32(10), 2014, Table 1 (T1 interview and joke:
#: happiness/amusement; T2 documentary: sadness; T3 sudden burst of sound: surprise/startle; T4
#: improvised silly song: embarrassment; T5 dart game's threat: fear/nervousness; T6 cold pressor:
#: physical pain; T7 insults: anger/upset; T8 unpleasant smell: disgust).
BP4D_TASK_EMOTIONS = {"T1": "happy", "T2": "sadness", "T3": "surprise", "T4": "embarrassment", "T5": "fear",
                      "T6": "pain", "T7": "anger", "T8": "disgust"}
#: BP4D+: Zhang et al., "Multimodal Spontaneous Emotion Corpus for Human Behavior Analysis", CVPR
#: 2016, Table 1 (T1 joke: happiness; T2 one's own 3D avatar: surprise; T3 a 911 call: sadness; T4
#: sudden sound: startle; T5 true/false questions: skepticism; T6 silly song: embarrassment; T7 dart
#: game: fear/nervousness; T8 cold pressor: pain; T9 insults: anger; T10 smell: disgust).
BP4D_PLUS_TASK_EMOTIONS = {"T1": "happy", "T2": "surprise", "T3": "sadness", "T4": "surprise", "T5": "skepticism",
                           "T6": "embarrassment", "T7": "fear", "T8": "pain", "T9": "anger", "T10": "disgust"}
TASK_EMOTIONS = {"bp4d": BP4D_TASK_EMOTIONS, "bp4d+": BP4D_PLUS_TASK_EMOTIONS}
#: every induced emotion, in label order
INDUCED_EMOTIONS = ("happy", "sadness", "surprise", "embarrassment", "fear", "pain", "anger", "disgust", "skepticism")
DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
DISFA_DETECTION_AUS = (1, 2, 4, 6, 9, 12, 25, 26)
UNKNOWN = 9
BP4D_COLUMNS = 100


@dataclass(frozen=True)
class BP4DLayout:
    labels: str = "AUCoding/AU_OCC"
    images: str = "Sequences"
    frame_digits: int = 4
    extension: str = ".jpg"


@dataclass(frozen=True)
class DISFALayout:
    labels: str = "ActionUnit_Labels"
    images: str = "Images"
    frame_digits: int = 5
    extension: str = ".jpg"


def _au_code(name: str) -> int:
    match = re.fullmatch(r"\s*(?:AU)?\s*0*(\d+)\s*", str(name), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"column {name!r} names no AU")
    return int(match.group(1))


def _check_field_counts(path: Path) -> None:
    """Every line has the header's number of fields: pandas would otherwise read a line with one
    more (a trailing comma) by shifting it onto an index, and report a wrong value."""
    lines = read_text(path).splitlines()
    if not lines:
        raise BadInputError(path, "empty file")
    expected = lines[0].count(",") + 1
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() and line.count(",") + 1 != expected:
            extra = " (a trailing comma?)" if line.rstrip().endswith(",") else ""
            raise BadInputError(path, f"line {number} has {line.count(',') + 1} fields, the header {expected}{extra}")


def read_occurrence_csv(path: str | Path) -> tuple[str, pd.DataFrame]:
    """(``bp4d`` or ``bp4d+``, frame-indexed table of AU code -> 0/1/NaN) of one AU_OCC file."""
    path = Path(path)
    _check_field_counts(path)
    table = read_csv(path, header=0, dtype=str)
    if table.empty:
        raise BadInputError(path, "header only, no coded frames")
    kind = "bp4d" if len(table.columns) == BP4D_COLUMNS else "bp4d+"
    if kind == "bp4d":
        expected = [str(k) for k in range(BP4D_COLUMNS)]
        if [c.strip() for c in table.columns] != expected:
            raise BadInputError(path, "100 columns but the header is not 0,1,...,99")
        codes = list(range(1, BP4D_COLUMNS))
    else:
        try:
            codes = [_au_code(c) for c in table.columns[1:]]
        except ValueError as error:
            raise BadInputError(path, f"BP4D+ header: {error}") from None
    try:
        frames = table.iloc[:, 0].astype(int).to_numpy()
        values = table.iloc[:, 1:].astype(float).to_numpy()
    except ValueError as error:
        raise BadInputError(path, f"non-numeric value ({error})") from None
    bad = ~np.isin(values, (0, 1, UNKNOWN))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise BadInputError(path, f"line {row + 2}: value {values[row, column]:g} for AU{codes[column]} is not 0, 1 or 9")
    values[values == UNKNOWN] = np.nan
    return kind, pd.DataFrame(values, index=pd.Index(frames, name="frame"), columns=codes)


def occurrence_to_model_aus(table: pd.DataFrame) -> np.ndarray:
    """(frames, 18) presence with NaN where unknown or not coded. Codes that are one model AU
    (23 and 24; 26 and 27) merge: present when any is present, absent only when all are known
    absent, else unknown."""
    out = np.full((len(table), NUM_AUS), np.nan, np.float32)
    groups: dict[int, list[int]] = {}
    for code in table.columns:
        index = FACS_CODE_TO_INDEX.get(int(code))
        if index is not None:
            groups.setdefault(index, []).append(code)
    for index, codes in groups.items():
        values = table[codes].to_numpy(np.float32)
        present = (values == 1).any(axis=1)
        absent = (values == 0).all(axis=1)
        out[:, index] = np.where(present, 1.0, np.where(absent, 0.0, np.nan))
    return out


def protocol_only(labels: np.ndarray) -> np.ndarray:
    """(18,) presences with every AU outside the protocol's 12 set to NaN (not scored)."""
    keep = np.zeros(NUM_AUS, bool)
    keep[[FACS_CODE_TO_INDEX[c] for c in BP4D_PROTOCOL_AUS]] = True
    return np.where(keep, labels, np.nan).astype(np.float32)


def read_bp4d(root: str | Path, layout: BP4DLayout = BP4DLayout(), report: SkipReport | None = None) -> pd.DataFrame:
    """One row per coded frame: ``subject``, ``task``, ``frame``, ``image``, ``labels`` (18
    presences with NaN), ``release`` (bp4d / bp4d+). A broken file is reported and skipped."""
    report = report if report is not None else SkipReport()
    folder = Path(root) / layout.labels
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise BadInputError(folder, "no AU_OCC CSV files (BP4D's AUCoding/AU_OCC)")
    rows = []
    for path in files:
        match = re.fullmatch(r"([A-Za-z]+\d+)_(T\d+)", path.stem)
        if not match:
            report.skip(path, "file name is not <subject>_<task>.csv")
            continue
        subject, task = match.groups()
        try:
            release, table = read_occurrence_csv(path)
        except BadInputError as error:
            report.add(error)
            continue
        labels = occurrence_to_model_aus(table)
        for frame, label in zip(table.index, labels):
            image = Path(root) / layout.images / subject / task / f"{frame:0{layout.frame_digits}d}{layout.extension}"
            rows.append({"subject": subject, "task": task, "frame": int(frame), "image": str(image), "labels": label,
                         "release": release, "label_file": str(path)})
    if not rows:
        raise BadInputError(folder, "no usable AU_OCC files")
    return pd.DataFrame(rows)


def read_disfa(root: str | Path, layout: DISFALayout = DISFALayout(), report: SkipReport | None = None) -> pd.DataFrame:
    """One row per frame coded for every DISFA AU: ``subject``, ``frame``, ``image``,
    ``intensity`` (12 values 0-5 in ``DISFA_AUS`` order). A subject with a broken or missing file
    is reported and skipped."""
    report = report if report is not None else SkipReport()
    folder = Path(root) / layout.labels
    subjects = sorted(p for p in folder.glob("SN*") if p.is_dir())
    if not subjects:
        raise BadInputError(folder, "no SN* subject folders (DISFA's ActionUnit_Labels)")
    rows = []
    for subject_dir in subjects:
        subject = subject_dir.name
        columns = {}
        try:
            for au in DISFA_AUS:
                path = subject_dir / f"{subject}_au{au}.txt"
                if not path.is_file():
                    raise BadInputError(path, "missing")
                text = read_text(path)
                if not text.strip():
                    raise BadInputError(path, "empty file")
                try:
                    data = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)
                except ValueError as error:
                    raise BadInputError(path, f"not frame,intensity lines ({error})") from None
                if data.shape[1] != 2 or ((data[:, 1] < 0) | (data[:, 1] > 5)).any():
                    raise BadInputError(path, "intensities must be 0-5 in frame,intensity lines")
                columns[au] = pd.Series(data[:, 1], index=data[:, 0].astype(int))
        except BadInputError as error:
            report.add(error)
            continue
        table = pd.DataFrame(columns).dropna()
        for frame, values in zip(table.index, table.to_numpy(np.float32)):
            image = Path(root) / layout.images / subject / f"{frame:0{layout.frame_digits}d}{layout.extension}"
            rows.append({"subject": subject, "frame": int(frame), "image": str(image), "intensity": values})
    if not rows:
        raise BadInputError(folder, "no usable DISFA subjects")
    return pd.DataFrame(rows)


def disfa_to_model_aus(intensity: np.ndarray, threshold: float | None = 2.0,
                       aus: tuple[int, ...] = DISFA_DETECTION_AUS) -> np.ndarray:
    """(18,) model-AU vector from DISFA's 12 intensities: presence (intensity >= ``threshold``)
    for the ``aus`` of the protocol, or the intensities themselves (``threshold=None``); every
    other model AU is NaN (not coded)."""
    out = np.full(NUM_AUS, np.nan, np.float32)
    for value, au in zip(intensity, DISFA_AUS):
        if au not in aus:
            continue
        index = FACS_CODE_TO_INDEX[au]
        out[index] = float(value >= threshold) if threshold is not None else float(value)
    return out
