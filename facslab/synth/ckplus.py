"""Generated CK+ in the release's layout (``facslab.formats.ckplus`` reads it): posed sequences
from neutral to peak, 68-point landmark files for every frame, FACS codes as a coder writes them,
emotion files for some sequences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.au import AU_INDEX
from facslab.emotions import EMOTIONS
from facslab.formats.ckplus import FRAME_SHAPE, CKPlusLayout
from facslab.synth import mark_generated
from facslab.synth.expressions import PosedExpression, sample_posed_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face


def format_numbers(rows: np.ndarray) -> str:
    """CK+'s text format: every number ``%16.7e``, one row a line."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    return "".join("".join(f"{v:16.7e}" for v in row) + "\n" for row in rows)


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
    expressions: Callable[[np.random.Generator], PosedExpression] = sample_posed_expression,
) -> pd.DataFrame:
    """Generate a CK+-format dataset; returns the truth: one row per sequence, rendered intensities.

    ``n_sequences``: the total, spread unevenly over the subjects as in the release (123 subjects,
    593 sequences); otherwise every subject has ``sequences_per_subject``. ``expressions`` draws each
    sequence's peak expression (CK+'s posed prototypes by default; a test may pose single AUs)."""
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
            posed = expressions(sub_rng)
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
