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

from facslab.synth import mark_generated
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


#: AffectNet's training counts per code (0-10): the imbalance the copy keeps.
AFFECTNET_COUNTS = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750, 33088, 11645, 82414)
#: The renderer's emotion for each AffectNet code 0-7.
AFFECTNET_TO_RENDERER = ("neutral", "happy", "sadness", "surprise", "fear", "disgust", "anger", "contempt")


def _affectnet_image(code: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """A photo-sized image for an AffectNet code: a face showing the code's emotion somewhere in
    it (codes 8-9: some expression; 10: no face). Returns it, the 68 landmarks, valence, arousal."""
    height, width = int(rng.integers(180, 320)), int(rng.integers(180, 320))
    if code == 10:
        image = np.full((height, width, 3), rng.integers(40, 220, 3), np.uint8)
        image = cv2.GaussianBlur(image + rng.integers(0, 40, image.shape).astype(np.uint8), (0, 0), 3)
        return image, None, float("nan"), float("nan")
    emotion = AFFECTNET_TO_RENDERER[code] if code < 8 else AFFECTNET_TO_RENDERER[int(rng.integers(0, 8))]
    sample = sample_emotion_expression(emotion, rng)
    interocular = min(height, width) * rng.uniform(0.18, 0.3)
    centre = (width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.55))
    image, landmarks = render_face(Identity.sample(rng), sample.expression, Pose(centre, interocular, rng.normal(0, 8)),
                                   (height, width), Conditions.sample(rng), rng)
    if code >= 8:
        return image, landmarks, float("nan"), float("nan")
    return image, landmarks, sample.valence, sample.arousal


def write_affectnet(root: str | Path, n_train: int = 400, n_test_per_code: int = 6, seed: int = 0,
                    release: str = "csv", progress: bool = True) -> Path:
    """Write an AffectNet copy: the CSV release (``Manually_Annotated_file_lists`` and
    ``Manually_Annotated_Images``) or the 2021 one (``train_set``/``val_set`` with ``.npy``
    annotations). Training follows AffectNet's imbalance over codes 0-10, the validation (test)
    set has ``n_test_per_code`` images of every code; -2 marks missing valence/arousal; one
    training image is zero bytes, one a truncated JPEG and one a PNG named .jpg."""
    from facslab.formats import affectnet as an

    if release not in ("csv", "2021"):
        raise ValueError(f"release must be csv or 2021, not {release!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    weights = np.array(AFFECTNET_COUNTS, float)
    train_codes = rng.choice(11, n_train, p=weights / weights.sum())
    train_codes[:8] = np.arange(8)  # every emotion present, however small the copy
    plan = {"train": train_codes, "test": np.repeat(np.arange(11), n_test_per_code)}
    emotions = np.flatnonzero(train_codes[8:] < 8) + 8  # broken files among emotion rows, which readers use
    broken = {"train": dict(zip(rng.choice(emotions, 3, replace=False), ("empty", "truncated", "png")))}
    bar = tqdm(total=sum(len(v) for v in plan.values()), desc="AffectNet images", disable=not progress)
    for split, codes in plan.items():
        rows = []
        for number, code in enumerate(codes):
            item_rng = np.random.default_rng([seed, 0 if split == "train" else 1, number])
            image, landmarks, valence, arousal = _affectnet_image(int(code), item_rng)
            if release == "2021":  # the re-release's 224x224 crops around the face
                image, landmarks = _crop_224(image, landmarks)
            name = f"{item_rng.integers(1, 1000)}/{item_rng.bytes(28).hex()}.jpg"
            kind = broken.get(split, {}).get(number)
            if release == "csv":
                path = root / an.IMAGES / name
            else:
                path = root / an.RELEASE_2021[split] / "images" / f"{number}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_image(path, image, kind)
            va = [an.NOT_ANNOTATED if np.isnan(v) else round(v, 6) for v in (valence, arousal)]
            if release == "2021":
                notes = path.parent.parent / "annotations"
                notes.mkdir(exist_ok=True)
                np.save(notes / f"{number}_exp.npy", np.array(str(int(code))))
                np.save(notes / f"{number}_val.npy", np.array(str(va[0])))
                np.save(notes / f"{number}_aro.npy", np.array(str(va[1])))
                np.save(notes / f"{number}_lnd.npy", (landmarks if landmarks is not None else np.zeros((68, 2))).ravel())
            else:
                if landmarks is not None:
                    left, top = landmarks.min(0)
                    right, bottom = landmarks.max(0)
                    box = [int(left), int(top - 0.35 * (bottom - top)), int(right - left), int(1.35 * (bottom - top))]
                    points = ";".join(f"{v:.2f}" for v in landmarks.ravel())
                else:
                    box, points = [0, 0, image.shape[1], image.shape[0]], ""
                rows.append([name, *box, points, int(code), *va])
            bar.update()
        if release == "csv":
            folder = root / an.LISTS
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / an.SPLIT_FILES[split], "w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(an.COLUMNS)
                writer.writerows(rows)
    bar.close()
    mark_generated(root, "AffectNet", seed)
    return root


def _crop_224(image: np.ndarray, landmarks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    if landmarks is None:
        return cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA), None
    (left, top), (right, bottom) = landmarks.min(0), landmarks.max(0)
    side = 1.5 * max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2 - 0.1 * side
    matrix = np.array([[224 / side, 0, 112 - cx * 224 / side], [0, 224 / side, 112 - cy * 224 / side]])
    crop = cv2.warpAffine(image, matrix, (224, 224), borderMode=cv2.BORDER_REPLICATE)
    return crop, landmarks @ matrix[:, :2].T + matrix[:, 2]


def _write_image(path: Path, image: np.ndarray, kind: str | None) -> None:
    """A JPEG as AffectNet ships it, or one of its broken files."""
    if kind == "empty":
        path.write_bytes(b"")
        return
    if kind == "png":  # a PNG behind a .jpg name: readable, though not JPEG
        ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        path.write_bytes(data.tobytes())
        return
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    path.write_bytes(data.tobytes()[: len(data) // 3] if kind == "truncated" else data.tobytes())


#: RAF-DB basic's class counts (surprise ... neutral), kept as proportions.
RAFDB_COUNTS = (1619, 355, 877, 5957, 2460, 867, 3204)
RAFDB_TO_RENDERER = ("surprise", "fear", "disgust", "happy", "sadness", "anger", "neutral")


def write_rafdb(root: str | Path, n_images: int = 300, seed: int = 0, fixed_spelling: bool = False,
                progress: bool = True) -> Path:
    """Write RAF-DB basic: the label list (the release's misspelt name unless ``fixed_spelling``)
    and aligned 100x100 colour faces, about 80 % ``train_`` and 20 % ``test_``, in RAF-DB's class
    proportions; one line without a label, one with label 8, and one listed image missing."""
    from facslab.formats import rafdb

    root = Path(root)
    rng = np.random.default_rng(seed)
    weights = np.array(RAFDB_COUNTS, float)
    labels = rng.choice(len(weights), n_images, p=weights / weights.sum())
    labels[:len(weights)] = np.arange(len(weights))
    test = rng.random(n_images) < 0.2
    test[:len(weights)] = False
    folder = root / rafdb.ALIGNED
    folder.mkdir(parents=True, exist_ok=True)
    lines, counters = [], {"train": 0, "test": 0}
    for number in tqdm(range(n_images), desc="RAF-DB images", disable=not progress):
        role = "test" if test[number] else "train"
        counters[role] += 1
        name = f"{role}_{counters[role]:05d}.jpg"
        image, _ = render_emotion_face(RAFDB_TO_RENDERER[labels[number]], np.random.default_rng([seed, number]),
                                       rafdb.SIDE, eye_y=0.42, eye_distance=0.34)
        if number != n_images - 1:  # the last listed image is missing, as in damaged copies
            cv2.imwrite(str(folder / f"{Path(name).stem}_aligned.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        lines.append(f"{name} {labels[number] + 1}")
    lines.insert(len(lines) // 3, f"train_{counters['train'] + 1:05d}.jpg")  # no label
    lines.insert(len(lines) // 2, f"train_{counters['train'] + 2:05d}.jpg 8")  # out of range
    label_file = root / rafdb.LABEL_FILES[1 if fixed_spelling else 0]
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("\n".join(lines) + "\n")
    mark_generated(root, "RAF-DB", seed)
    return label_file
