"""RAF-DB basic: ``basic/EmoLabel/list_patition_label.txt`` (sic; some copies fix the spelling to
``list_partition_label.txt``), no header, lines ``train_00001.jpg 5``; the split is the name's
prefix (``train_`` / ``test_``); codes 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
6 Anger, 7 Neutral. Aligned 100x100 faces in ``basic/Image/aligned/<stem>_aligned.jpg``.
A line that does not parse is skipped and reported with its file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from facslab.badinput import BadInputError, MissingInputError, SkipReport, read_text

CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
LABEL_FILES = ("basic/EmoLabel/list_patition_label.txt", "basic/EmoLabel/list_partition_label.txt")
ALIGNED = "basic/Image/aligned"
SIDE = 100


def label_file(root: str | Path) -> Path:
    root = Path(root)
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    raise MissingInputError(root, f"no {' or '.join(LABEL_FILES)} (RAF-DB basic)")


#: RAF-DB's compound list names its images with four digits (``train_0001.jpg``) and codes 1-11;
#: its codes 1-7 exist in the basic list too, so only the names tell the lists apart
_COMPOUND_NAME = re.compile(r"^(train|test)_\d{4}\.jpg$")
_BASIC_NAME = re.compile(r"^(train|test)_\d{5}\.jpg$")


def _refuse_compound_list(path: Path, lines: list[str]) -> None:
    names = [line.split()[0] for line in lines if line.strip()]
    compound = sum(bool(_COMPOUND_NAME.match(name)) for name in names)
    basic = sum(bool(_BASIC_NAME.match(name)) for name in names)
    if compound > basic:
        raise BadInputError(path, f"this is RAF-DB's compound list ({compound} names like train_0001.jpg, codes 1-11), "
                                  "not the basic one (train_00001.jpg, codes 1-7): put the basic list here")


def read_rafdb(root: str | Path, report: SkipReport | None = None) -> pd.DataFrame:
    """One row per labelled image: ``name``, ``image`` (the aligned file), ``label`` (0-based
    index into ``CLASSES``), ``role`` (train or test, from the name)."""
    report = report if report is not None else SkipReport()
    root = Path(root)
    path = label_file(root)
    lines = read_text(path).splitlines()
    _refuse_compound_list(path, lines)
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parts = line.split()
            if len(parts) != 2:
                raise ValueError("expected '<name> <label>'")
            name, code = parts[0], int(parts[1])
            if not 1 <= code <= len(CLASSES):
                raise ValueError(f"label {code} outside 1-{len(CLASSES)}")
            role = name.split("_", 1)[0]
            if role not in ("train", "test"):
                raise ValueError(f"name {name} starts with neither train_ nor test_")
        except ValueError as error:
            report.skip(f"{path}:{number}", f"{error} in {line.strip()!r}")
            continue
        image = root / ALIGNED / f"{Path(name).stem}_aligned.jpg"
        rows.append({"name": name, "image": str(image), "label": code - 1, "role": role})
    if not rows:
        raise BadInputError(path, "no usable lines")
    return pd.DataFrame(rows)
