"""The CelebA release layout (aligned images): reading it, and writing generated data in it.

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

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.au import AU_INDEX
from facslab.formats import mark_generated
from facslab.badinput import BadInputError
from facslab.synth.expressions import sample_spontaneous_expression
from facslab.synth.face import Conditions, Identity, Pose, eye_closure_fraction, render_face

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


def _attributes(identity: Identity, traits: np.ndarray, aus: np.ndarray, blur: float) -> list[int]:
    hair = np.array(identity.hair)
    values = dict(zip(ATTRIBUTES, traits))
    values.update(
        Male=identity.male,
        Smiling=aus[AU_INDEX["12"]] >= 2,
        Mouth_Slightly_Open=aus[AU_INDEX["25"]] > 0,
        Blurry=blur > 1.0,
        Black_Hair=hair.mean() < 50,
        Blond_Hair=hair.mean() > 140 and hair[0] > hair[2] + 30,
        Gray_Hair=np.ptp(hair) < 25 and hair.mean() > 110,
        Brown_Hair=50 <= hair.mean() <= 140 and hair[0] > hair[2] + 20,
        No_Beard=True, Goatee=False, Mustache=False, Eyeglasses=False, Wearing_Hat=False,
        Bald=False, Wearing_Lipstick=(not identity.male) and traits[36],
    )
    return [1 if values[name] else -1 for name in ATTRIBUTES]


def write_celeba(
    root: str | Path,
    n_images: int = 500,
    images_per_identity: int = 8,
    seed: int = 0,
    layout: CelebALayout = CelebALayout(),
    jpeg_quality: int = 92,
    progress: bool = True,
) -> pd.DataFrame:
    """Generate a CelebA-format dataset; returns the truth per image (intensities, 68 landmarks)."""
    root = Path(root)
    (root / layout.images).mkdir(parents=True, exist_ok=True)
    mark_generated(root, "CelebA", seed)
    rng = np.random.default_rng([seed, 1])
    n_identities = max(1, int(np.ceil(n_images / images_per_identity)))
    identity_ids = rng.choice(np.arange(1, 10178), size=n_identities, replace=False)
    people = [Identity.sample(np.random.default_rng([seed, 2, int(i)])) for i in identity_ids]
    traits = rng.random((n_identities, len(ATTRIBUTES))) < 0.2
    owner = np.sort(rng.integers(0, n_identities, size=n_images))
    rng.shuffle(owner)
    truth, lm_rows, attr_rows = [], [], []
    for k in tqdm(range(n_images), desc="CelebA images", disable=not progress):
        name = f"{k + 1:06d}.jpg"
        img_rng = np.random.default_rng([seed, 3, k])
        person = people[owner[k]]
        expression = sample_spontaneous_expression(img_rng)
        conditions = Conditions.sample(img_rng)
        pose = Pose((89 + img_rng.normal(0, 2), 112 + img_rng.normal(0, 2)),
                    img_rng.uniform(34, 42), img_rng.uniform(-10, 10))
        image, landmarks = render_face(person, expression, pose, IMAGE_SHAPE, conditions, img_rng)
        cv2.imwrite(str(root / layout.images / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        five = np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[33],
                         landmarks[48], landmarks[54]])
        lm_rows.append(np.round(five).astype(int).ravel())
        attr_rows.append(_attributes(person, traits[owner[k]], expression.aus, conditions.blur_sigma))
        left, right = expression.eyes()
        truth.append(dict(image=name, identity=int(identity_ids[owner[k]]),
                          intensities=expression.aus.copy(), landmarks68=landmarks,
                          eye_closure=max(eye_closure_fraction(left), eye_closure_fraction(right)),
                          male=person.male))
    _write_list(root / layout.landmarks, LANDMARK_COLUMNS, lm_rows, width=5)
    _write_list(root / layout.attributes, ATTRIBUTES, attr_rows, width=3, trailing_space=True)
    partition = np.where(np.arange(n_images) < 0.8 * n_images, 0,
                         np.where(np.arange(n_images) < 0.9 * n_images, 1, 2))
    (root / layout.partition).write_text("".join(f"{k + 1:06d}.jpg {p}\n" for k, p in enumerate(partition)))
    (root / layout.identity).write_text("".join(f"{t['image']} {t['identity']}\n" for t in truth))
    return pd.DataFrame(truth)


def _write_list(path: Path, header, rows, width: int, trailing_space: bool = False) -> None:
    lines = [f"{len(rows)}", " ".join(header) + (" " if trailing_space else "")]
    lines += [f"{k + 1:06d}.jpg " + "".join(f"{v:>{width}d}" for v in row) for k, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
