"""The CK+ (Extended Cohn-Kanade) release layout: reading it, and writing generated data in it.

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

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.au import AU_INDEX
from facslab.formats import mark_generated
from facslab.badinput import BadInputError, SkipReport
from facslab.synth.expressions import EMOTIONS, sample_posed_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face

FRAME_SHAPE = (490, 640)  # H, W


@dataclass(frozen=True)
class CKPlusLayout:
    """Folder names of a CK+ copy; the release's names by default."""

    images: str = "cohn-kanade-images"
    landmarks: str = "Landmarks"
    facs: str = "FACS"
    emotion: str = "Emotion"


def format_numbers(rows: np.ndarray) -> str:
    """CK+'s text format: every number ``%16.7e``, one row a line."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    return "".join("".join(f"{v:16.7e}" for v in row) + "\n" for row in rows)


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


def _facs_codes_for(aus: np.ndarray, rng: np.random.Generator, ungraded_rate: float) -> dict[int, int]:
    """FACS codes as a coder would write them for rendered intensities."""
    codes = {}
    for label, index in AU_INDEX.items():
        intensity = int(round(float(aus[index])))
        if intensity <= 0:
            continue
        if label == "23/24":
            code = int(rng.choice([23, 24]))
        elif label == "26/27":
            code = 27 if intensity >= 4 and rng.random() < 0.5 else 26
        else:
            code = int(label)
        codes[code] = 0 if rng.random() < ungraded_rate else intensity
    return codes


def write_ckplus(
    root: str | Path,
    n_subjects: int = 20,
    sequences_per_subject: int = 3,
    frames: tuple[int, int] = (5, 8),
    seed: int = 0,
    layout: CKPlusLayout = CKPlusLayout(),
    colour_rate: float = 0.1,
    emotion_rate: float = 0.6,
    ungraded_rate: float = 0.2,
    progress: bool = True,
    n_sequences: int | None = None,
) -> pd.DataFrame:
    """Generate a CK+-format dataset; returns the truth: one row per sequence, rendered intensities.

    ``n_sequences``: the total, spread unevenly over the subjects as in the release (123 subjects,
    593 sequences); otherwise every subject has ``sequences_per_subject``."""
    root = Path(root)
    mark_generated(root, "CK+", seed)
    rng = np.random.default_rng(seed)
    subject_numbers = np.sort(rng.choice(np.arange(5, 1000), size=n_subjects, replace=False))
    if n_sequences is None:
        per_subject = np.full(n_subjects, sequences_per_subject)
    else:
        if n_sequences < n_subjects:
            raise ValueError(f"{n_sequences} sequences cannot give each of {n_subjects} subjects one")
        per_subject = 1 + np.random.default_rng([seed, 3]).multinomial(n_sequences - n_subjects,
                                                                       np.full(n_subjects, 1 / n_subjects))
    truth = []
    bar = tqdm(total=int(per_subject.sum()), desc="CK+ sequences", disable=not progress)
    for number, sequences_per_subject in zip(subject_numbers, per_subject):
        subject = f"S{number:03d}"
        sub_rng = np.random.default_rng([seed, int(number)])
        identity = Identity.sample(sub_rng)
        for q in range(1, sequences_per_subject + 1):
            sequence = f"{q:03d}"
            posed = sample_posed_expression(sub_rng)
            n = int(sub_rng.integers(frames[0], frames[1] + 1))
            conditions = Conditions.sample(sub_rng)
            conditions = Conditions(**{**conditions.__dict__, "background": (int(sub_rng.integers(90, 200)),) * 3})
            colour = sub_rng.random() < colour_rate
            centre = np.array([320 + sub_rng.uniform(-40, 40), 200 + sub_rng.uniform(-25, 25)])
            interocular = sub_rng.uniform(80, 105)
            roll = sub_rng.uniform(-10, 10)
            rel = Path(subject) / sequence
            for folder in (layout.images, layout.landmarks):
                (root / folder / rel).mkdir(parents=True, exist_ok=True)
            for f in range(1, n + 1):
                progress_to_peak = (f - 1) / (n - 1)
                pose = Pose(tuple(centre + sub_rng.normal(0, 1.0, 2) * f / n),
                            interocular * (1 + 0.01 * progress_to_peak), roll + 1.5 * progress_to_peak)
                image, landmarks = render_face(identity, posed.expression.scaled(progress_to_peak),
                                               pose, FRAME_SHAPE, conditions, sub_rng)
                stem = f"{subject}_{sequence}_{f:08d}"
                out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if colour else cv2.COLOR_RGB2GRAY)
                cv2.imwrite(str(root / layout.images / rel / f"{stem}.png"), out)
                (root / layout.landmarks / rel / f"{stem}_landmarks.txt").write_text(format_numbers(landmarks))
            codes = _facs_codes_for(posed.expression.aus, sub_rng, ungraded_rate)
            codes.update(posed.extra_codes)
            (root / layout.facs / rel).mkdir(parents=True, exist_ok=True)
            (root / layout.facs / rel / f"{stem}_facs.txt").write_text(
                format_numbers(np.array(sorted(codes.items()), dtype=np.float64).reshape(-1, 2))
                if codes else ""
            )
            emotion = None
            if posed.emotion is not None and sub_rng.random() < emotion_rate:
                emotion = EMOTIONS.index(posed.emotion)
                (root / layout.emotion / rel).mkdir(parents=True, exist_ok=True)
                (root / layout.emotion / rel / f"{stem}_emotion.txt").write_text(format_numbers([[emotion]]))
            left, right = posed.expression.eyes()
            truth.append(dict(subject=subject, sequence=sequence, n_frames=n,
                              peak_image=str(root / layout.images / rel / f"{stem}.png"),
                              intensities=posed.expression.aus.copy(), peak_landmarks=landmarks,
                              left_eye_closure=left,
                              right_eye_closure=right, facs=codes, emotion=emotion, colour=colour))
            bar.update()
    bar.close()
    return pd.DataFrame(truth)
