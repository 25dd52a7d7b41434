"""Generated CelebA in the release's layout (``facslab.formats.celeba`` reads it): aligned JPEGs
of spontaneous expressions, the landmark, attribute, partition and identity lists."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.au import AU_INDEX
from facslab.formats.celeba import ATTRIBUTES, IMAGE_SHAPE, LANDMARK_COLUMNS, CelebALayout
from facslab.synth import mark_generated
from facslab.synth.expressions import sample_spontaneous_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face
from facslab.synth.strength import eye_closure_fraction


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
