"""The CK+ (Extended Cohn-Kanade) release layout, read (``facslab.synth.ckplus`` writes generated data in it).

    cohn-kanade-images/S005/001/S005_001_00000001.png   frames, neutral (first) to peak (last)
    Landmarks/S005/001/S005_001_00000001_landmarks.txt  68 lines "x y", every frame
    FACS/S005/001/S005_001_00000011_facs.txt            peak frame only: "code intensity" lines
    Emotion/S005/001/S005_001_00000011_emotion.txt      some sequences only: one emotion code

Every number in the text files is written ``%16.7e``; readers split on whitespace and never rely
on the padding. FACS intensity 0 means "present, not graded"; 1-5 are A-E.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.badinput import BadInputError, SkipReport
from facslab.emotions import EMOTIONS

FRAME_SHAPE = (490, 640)  # H, W


@dataclass(frozen=True)
class CKPlusLayout:
    """Folder names of a CK+ copy; the release's names by default."""

    images: str = "cohn-kanade-images"
    landmarks: str = "Landmarks"
    facs: str = "FACS"
    emotion: str = "Emotion"


def parse_numbers(path: str | Path, columns: int) -> np.ndarray:
    """A CK+ text file as an (n, columns) float array; ``BadInputError`` when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(path, f"unreadable ({error})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != columns:
            raise BadInputError(path, f"line {number} has {len(fields)} numbers, expected {columns}")
        try:
            rows.append([float(v) for v in fields])
        except ValueError:
            raise BadInputError(path, f"line {number} is not numeric: {line.strip()[:40]!r}") from None
    if not rows:
        raise BadInputError(path, "empty label file")
    return np.asarray(rows)


def read_landmarks(path: str | Path) -> np.ndarray:
    points = parse_numbers(path, 2)
    if len(points) != 68:
        raise BadInputError(path, f"{len(points)} landmarks, expected 68")
    return points


def read_facs(path: str | Path) -> dict[int, float]:
    """``{FACS code: intensity}`` from a CK+ FACS file."""
    table = parse_numbers(path, 2)
    codes = {}
    for code, intensity in table:
        if code != int(code) or code <= 0 or not 0 <= intensity <= 5:
            raise BadInputError(path, f"invalid FACS entry: code {code:g}, intensity {intensity:g}")
        codes[int(code)] = float(intensity)
    return codes


def read_emotion(path: str | Path) -> int:
    value = parse_numbers(path, 1)
    code = float(value[0, 0])
    if len(value) != 1 or code != int(code) or not 0 <= code < len(EMOTIONS):
        raise BadInputError(path, f"invalid emotion code {code:g}")
    return int(code)


def read_ckplus(root: str | Path, layout: CKPlusLayout = CKPlusLayout(),
                report: SkipReport | None = None, facs_required: bool = True) -> pd.DataFrame:
    """One row per sequence: subject, sequence, frame paths, peak FACS codes, emotion (or NA).

    Sequences whose FACS file is missing or broken are skipped and recorded in ``report``; with
    ``facs_required=False`` (a reader of the emotion labels only) they are kept with ``facs``
    None. Landmark files are only located here (``*_landmarks`` columns, None when absent).
    """
    root = Path(root)
    report = report if report is not None else SkipReport()
    images = root / layout.images
    if not images.is_dir():
        raise BadInputError(images, "CK+ image folder not found (set the layout's folder names?)")
    rows = []
    for seq_dir in sorted(p for p in images.glob("*/*") if p.is_dir()):
        subject, sequence = seq_dir.parent.name, seq_dir.name
        frames = sorted(seq_dir.glob("*.png"))
        if not frames:
            report.skip(seq_dir, "sequence folder has no PNG frames")
            continue
        rel = Path(subject) / sequence
        peak = frames[-1]
        facs_path = root / layout.facs / rel / f"{peak.stem}_facs.txt"
        try:
            facs = read_facs(facs_path)
        except BadInputError as error:
            if facs_required:
                report.add(error)
                continue
            facs = None
        emotion_path = root / layout.emotion / rel / f"{peak.stem}_emotion.txt"
        emotion = pd.NA
        if emotion_path.exists():
            try:
                emotion = read_emotion(emotion_path)
            except BadInputError as error:
                report.add(error)  # the AU labels are still good; only the emotion is dropped

        def landmarks_of(frame: Path) -> str | None:
            path = root / layout.landmarks / rel / f"{frame.stem}_landmarks.txt"
            return str(path) if path.exists() else None

        rows.append(dict(
            subject=subject, sequence=sequence, n_frames=len(frames),
            neutral_image=str(frames[0]), peak_image=str(peak),
            neutral_landmarks=landmarks_of(frames[0]), peak_landmarks=landmarks_of(peak),
            facs=facs, facs_file=str(facs_path), emotion=emotion,
        ))
    if not rows:
        raise BadInputError(images, "no usable CK+ sequences found")
    table = pd.DataFrame(rows)
    for column in ("neutral_landmarks", "peak_landmarks"):  # keep None, not NaN, for "absent"
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table
