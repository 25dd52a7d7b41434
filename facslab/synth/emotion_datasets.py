"""Generated copies of the emotion datasets in their release layouts (see
``facslab.formats.fer2013`` for the reader). Every emotion is the face renderer's drawing of its
prototypical AUs at a random intensity, so a model can learn it; the copies reproduce the real
files' quirks: class imbalance, quoted and unquoted pixel fields, corrupt rows, and FER+ votes
that disagree with the original label or give none."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facslab.formats import mark_generated
from facslab.formats import fer2013 as fer
from facslab.synth.expressions import EmotionSample, sample_emotion_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face

#: FER-2013's class counts over its 35,887 rows: the imbalance the copy keeps (Disgust is rare).
FER2013_COUNTS = {"angry": 4953, "disgust": 547, "fear": 5121, "happy": 8989, "sad": 6077, "surprise": 4002,
                  "neutral": 6198}
#: The renderer's emotion names (CK+'s) for FER-2013's classes.
TO_RENDERER = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happy", "sad": "sadness",
               "surprise": "surprise", "neutral": "neutral"}
#: FER+ class of each renderer emotion.
TO_FERPLUS = {"neutral": "neutral", "happy": "happiness", "surprise": "surprise", "sadness": "sadness",
              "anger": "anger", "disgust": "disgust", "fear": "fear", "contempt": "contempt"}


def render_emotion_face(emotion: str, rng: np.random.Generator, size: int, eye_y: float = 0.4,
                        eye_distance: float = 0.36, jitter: float = 0.04, supersample: int = 3,
                        ) -> tuple[np.ndarray, EmotionSample]:
    """A ``size``-pixel square RGB face crop showing ``emotion`` (a renderer emotion name), framed
    like an aligned crop with some jitter; drawn ``supersample`` times larger, then reduced."""
    sample = sample_emotion_expression(emotion, rng)
    big = size * supersample
    centre = (big * (0.5 + rng.normal(0, jitter)), big * (eye_y + rng.normal(0, jitter)))
    pose = Pose(centre, big * eye_distance * rng.uniform(0.9, 1.1), rng.normal(0, 6))
    image, _ = render_face(Identity.sample(rng), sample.expression, pose, (big, big), Conditions.sample(rng), rng)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), sample


def _ferplus_votes(emotion: str, rng: np.random.Generator) -> np.ndarray:
    """10 taggers' votes: mostly the drawn emotion, some scattered, now and then mostly unknown."""
    votes = np.zeros(len(fer.FERPLUS_COLUMNS), np.int64)
    if rng.random() < 0.03:
        votes[fer.FERPLUS_COLUMNS.index("unknown")] += 6
    agree = int(rng.integers(4, 11))
    votes[fer.FERPLUS_COLUMNS.index(TO_FERPLUS[emotion])] += agree
    for _ in range(10 - votes.sum()):
        votes[int(rng.integers(0, len(fer.FERPLUS_COLUMNS)))] += 1
    return votes


def write_fer2013(root: str | Path, n_images: int = 700, seed: int = 0, variant: str = "fer2013",
                  quote_rate: float = 0.5, corrupt_rows: int = 2, ferplus: bool = True,
                  progress: bool = True) -> Path:
    """Write ``fer2013.csv`` (or ``icml_face_data.csv`` with ``variant="icml"``) with FER-2013's
    class proportions and its 80/10/10 Training/PublicTest/PrivateTest usage, and with
    ``ferplus`` the FER+ votes file beside it. ``quote_rate`` of the pixel fields are quoted;
    ``corrupt_rows`` rows are broken (a short pixel field, a label out of range)."""
    if variant not in ("fer2013", "icml"):
        raise ValueError(f"variant must be fer2013 or icml, not {variant!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(fer.CLASSES)
    weights = np.array([FER2013_COUNTS[name] for name in names], float)
    labels = rng.choice(len(names), n_images, p=weights / weights.sum())
    for k in range(len(names)):  # every class present, however small the copy
        labels[k] = k
    usage = rng.choice(list(fer.USAGES), n_images, p=[0.8, 0.1, 0.1])
    usage[:len(names)] = "Training"
    broken = sorted(rng.choice(np.arange(len(names), n_images), min(corrupt_rows, n_images - len(names)), replace=False))
    short_pixels = set(broken[0::2])  # the other broken rows get a label out of range
    path = root / ("fer2013.csv" if variant == "fer2013" else "icml_face_data.csv")
    votes = []
    with open(path, "w", newline="") as handle:
        handle.write("emotion,pixels,Usage\n" if variant == "fer2013" else "emotion, Usage, pixels\n")
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        for number in tqdm(range(n_images), desc="FER-2013 images", disable=not progress):
            emotion = TO_RENDERER[names[labels[number]]]
            image, _ = render_emotion_face(emotion, np.random.default_rng([seed, number]), fer.SIDE)
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            pixels = " ".join(str(v) for v in grey.ravel())
            label = str(labels[number])
            if number in broken:  # the quirks a reader must survive
                if number in short_pixels:
                    pixels = " ".join(pixels.split(" ")[:2000])
                else:
                    label = "9"
            if rng.random() < quote_rate:
                pixels = f'"{pixels}"'
            fields = [label, pixels, usage[number]] if variant == "fer2013" else [label, usage[number], pixels]
            handle.write(",".join(fields) + "\n")
            votes.append(_ferplus_votes(emotion, rng))
    if ferplus:
        with open(root / fer.FERPLUS_FILE, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("Usage", "Image name") + fer.FERPLUS_COLUMNS)
            for number, row_votes in enumerate(votes):
                face = row_votes[fer.FERPLUS_COLUMNS.index("NF")] < 5
                writer.writerow([usage[number], f"fer{number:07d}.png" if face else "", *row_votes.tolist()])
    mark_generated(root, "FER-2013", seed)
    return path
