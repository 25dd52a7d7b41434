"""The CelebA release layout (aligned images), read (``facslab.synth.celeba`` writes generated data in it).

    img_align_celeba/000001.jpg          178x218 JPEG, roughly aligned on the eyes
    list_landmarks_align_celeba.txt      count line, header line, "000001.jpg 69 109 106 113 ..."
    list_attr_celeba.txt                 count line, 40 attribute names, rows of 1 / -1
    list_eval_partition.txt              "000001.jpg 0" (0 train, 1 validation, 2 test)
    identity_CelebA.txt                  "000001.jpg 2880"

Rows are split on whitespace; the release pads columns with varying spaces and ends the
attribute header with a trailing space, neither of which a reader may depend on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.badinput import BadInputError

IMAGE_SHAPE = (218, 178)  # H, W
LANDMARK_COLUMNS = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)


@dataclass(frozen=True)
class CelebALayout:
    """File and folder names of a CelebA copy; the release's names by default."""

    images: str = "img_align_celeba"
    landmarks: str = "list_landmarks_align_celeba.txt"
    attributes: str = "list_attr_celeba.txt"
    partition: str = "list_eval_partition.txt"
    identity: str = "identity_CelebA.txt"


def _read_table(path: Path, with_header: bool) -> tuple[list[str] | None, list[list[str]]]:
    """Rows of a CelebA list file, split on whitespace: (header names or None, rows)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(path, f"unreadable ({error})") from None
    header = None
    if with_header:
        if len(lines) < 2:
            raise BadInputError(path, "expected a count line and a header line")
        try:
            count = int(lines[0].split()[0])
        except (ValueError, IndexError):
            raise BadInputError(path, f"first line should be the image count, got {lines[0][:40]!r}") from None
        header, lines = lines[1].split(), lines[2:]
    rows = [line.split() for line in lines if line.strip()]
    width = 1 + (len(header) if header else 1)
    for number, row in enumerate(rows, 3 if with_header else 1):
        if len(row) != width:
            raise BadInputError(path, f"line {number} has {len(row)} fields, expected {width}")
    if with_header and count != len(rows):
        raise BadInputError(path, f"count line says {count} images but {len(rows)} rows follow")
    return header, rows


def _int_frame(path: Path, header: list[str], rows: list[list[str]]) -> pd.DataFrame:
    try:
        values = np.array([[int(v) for v in row[1:]] for row in rows], dtype=np.int64)
    except ValueError as error:
        raise BadInputError(path, f"non-integer value ({error})") from None
    frame = pd.DataFrame(values.reshape(len(rows), len(header)), columns=header)
    frame.insert(0, "image", [row[0] for row in rows])
    return frame


def read_celeba(root: str | Path, layout: CelebALayout = CelebALayout()) -> pd.DataFrame:
    """One row per image: file name, 5 landmarks, 40 attributes (1/-1), and partition and
    identity when those files are present."""
    root = Path(root)
    path = root / layout.landmarks
    header, rows = _read_table(path, with_header=True)
    missing = [c for c in LANDMARK_COLUMNS if c not in header]
    if missing:
        raise BadInputError(path, f"missing landmark columns: {', '.join(missing)}")
    table = _int_frame(path, header, rows)
    path = root / layout.attributes
    header, rows = _read_table(path, with_header=True)
    if "Male" not in header:
        raise BadInputError(path, "missing attribute column: Male")
    attributes = _int_frame(path, header, rows)
    table = table.merge(attributes, on="image", how="inner", validate="one_to_one")
    for name, column in ((layout.partition, "partition"), (layout.identity, "identity")):
        path = root / name
        if path.exists():
            _, rows = _read_table(path, with_header=False)
            table = table.merge(_int_frame(path, [column], rows), on="image", how="left")
    return table
