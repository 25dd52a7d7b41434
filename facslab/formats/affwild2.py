"""Aff-Wild2's valence/arousal annotations (the ABAW VA Estimation Challenge release), read.

    annotations/VA_Estimation_Challenge/Train_Set/<video>.txt       header "valence,arousal", then
    annotations/VA_Estimation_Challenge/Validation_Set/<video>.txt  one "v,a" line per frame
    cropped_aligned/<video>/00001.jpg                               the frame of line 1, and so on

Values are in [-1, 1]; -5 marks a frame that is not annotated. A video with two people is two
files, ``<video>_left`` and ``<video>_right``, each with its own folder of crops. The test set's
annotations are not released, so the official validation set is the test split here. Accepted
variants: a header in any case or with spaces, CRLF line ends, a ``Validation_Set`` named
``Val_Set``. (Layout as ABAW's releases and public loaders use it; see docs/data.md.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facslab.badinput import BadInputError, MissingInputError, SkipReport, read_text

ANNOTATIONS = Path("annotations") / "VA_Estimation_Challenge"
SETS = {"Train_Set": "train", "Validation_Set": "validation", "Val_Set": "validation"}
FRAMES = "cropped_aligned"
NOT_ANNOTATED = -5.0
HEADER = "valence,arousal"


def frame_name(frame: int) -> str:
    """The crop of the ``frame``-th annotation line (1-based)."""
    return f"{frame:05d}.jpg"


def read_va_file(path: str | Path) -> np.ndarray:
    """(frames, 2) valence and arousal of one video's file, NaN where a frame is not annotated."""
    lines = read_text(path).splitlines()
    if not lines or lines[0].replace(" ", "").strip().lower() != HEADER:
        raise BadInputError(path, f"first line must be {HEADER!r}, not {lines[0][:40] if lines else ''!r}")
    values = np.full((len(lines) - 1, 2), np.nan, np.float32)
    for k, line in enumerate(lines[1:]):
        fields = line.strip().split(",")
        try:
            pair = [float(f) for f in fields]
        except ValueError:
            raise BadInputError(path, f"line {k + 2}: {line.strip()!r} is not two numbers") from None
        if len(pair) != 2:
            raise BadInputError(path, f"line {k + 2}: {len(pair)} values, not valence,arousal")
        if NOT_ANNOTATED in pair:
            continue
        if not all(-1 <= v <= 1 for v in pair):
            raise BadInputError(path, f"line {k + 2}: {line.strip()!r} is outside [-1, 1] (and not {NOT_ANNOTATED:g})")
        values[k] = pair
    return values


def read_affwild2(root: str | Path, report: SkipReport | None = None) -> pd.DataFrame:
    """One row per annotated frame with its crop: video, set (train or validation), frame,
    image, valence, arousal. Frames not annotated are left out and counted per video
    (``attrs["not_annotated"]``); annotated frames without a crop are left out and reported, one
    line per video."""
    root = Path(root)
    report = report if report is not None else SkipReport()
    folders = [(root / ANNOTATIONS / name, split) for name, split in SETS.items() if (root / ANNOTATIONS / name).is_dir()]
    if not folders:
        raise MissingInputError(root / ANNOTATIONS, "no Train_Set or Validation_Set folder of VA annotations")
    tables, not_annotated = [], {}
    for folder, split in folders:
        for path in sorted(folder.glob("*.txt")):
            video = path.stem
            try:
                values = read_va_file(path)
            except BadInputError as error:
                report.add(error)
                continue
            frames = np.arange(1, len(values) + 1)
            images = [root / FRAMES / video / frame_name(f) for f in frames]
            annotated = ~np.isnan(values).any(1)
            present = np.array([p.is_file() for p in images])
            keep = annotated & present
            not_annotated[video] = int((~annotated).sum())  # the release's own gaps: counted, not errors
            if (annotated & ~present).any():
                lost = frames[annotated & ~present]
                report.skip(root / FRAMES / video, f"annotated frames without a crop ({len(lost)}, the first "
                                                   f"{frame_name(int(lost[0]))})")
            tables.append(pd.DataFrame({"video": video, "set": split, "frame": frames[keep],
                                        "image": [str(p) for p, k in zip(images, keep) if k],
                                        "valence": values[keep, 0], "arousal": values[keep, 1]}))
    if not tables:
        raise BadInputError(root / ANNOTATIONS, "no readable annotation file")
    table = pd.concat(tables, ignore_index=True)
    table.attrs["not_annotated"] = not_annotated
    return table
