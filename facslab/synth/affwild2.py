"""Generated Aff-Wild2 valence/arousal in the ABAW release's layout (``facslab.formats.affwild2``
reads it): per-video annotation files in Train_Set and Validation_Set and the cropped, aligned
112x112 frames. Valence and arousal move smoothly: each video passes through a few emotions, each
rising from and falling back to neutral, and the face shows the emotion at the same strength. One
video has two people (``_left``/``_right``), one a stretch annotated -5, one a stretch of missing
crops, as the release has."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.formats.affwild2 import ANNOTATIONS, FRAMES, HEADER, NOT_ANNOTATED, frame_name
from facslab.synth import mark_generated
from facslab.synth.expressions import AFFECT_REGIONS, sample_emotion_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face

CROP = 112


def _video(root: Path, folder: str, video: str, frames: int, rng: np.random.Generator,
           gap: tuple[int, int] | None = None, lost: tuple[int, int] | None = None) -> pd.DataFrame:
    identity, conditions = Identity.sample(rng), Conditions.sample(rng)
    emotions = list(AFFECT_REGIONS)
    values, rows = np.zeros((frames, 2), np.float32), []
    (root / FRAMES / video).mkdir(parents=True, exist_ok=True)
    segment_length = max(4, frames // int(rng.integers(2, 4)))
    for start in range(0, frames, segment_length):
        sample = sample_emotion_expression(emotions[int(rng.integers(len(emotions)))], rng)
        length = min(segment_length, frames - start)
        for t in range(length):
            strength = float(np.sin(np.pi * (t + 0.5) / length))  # neutral, the emotion, neutral again
            k = start + t
            values[k] = np.clip([sample.valence * strength, sample.arousal * strength], -1, 1)
            pose = Pose((CROP / 2 + rng.normal(0, 0.6), CROP * 0.4 + rng.normal(0, 0.6)), CROP * 0.3,
                        float(rng.normal(0, 1.5)))
            image, _ = render_face(identity, sample.expression.scaled(strength), pose, (CROP, CROP), conditions, rng)
            if lost is None or not lost[0] <= k < lost[1]:
                cv2.imwrite(str(root / FRAMES / video / frame_name(k + 1)), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            rows.append({"video": video, "frame": k + 1, "valence": values[k, 0], "arousal": values[k, 1],
                         "annotated": gap is None or not gap[0] <= k < gap[1],
                         "has_crop": lost is None or not lost[0] <= k < lost[1]})
    written = values.copy()
    if gap is not None:
        written[gap[0]:gap[1]] = NOT_ANNOTATED
    path = root / ANNOTATIONS / folder / f"{video}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n" + "".join(f"{v:.3f},{a:.3f}\n" if v != NOT_ANNOTATED else f"{v:g},{a:g}\n"
                                            for v, a in written))
    return pd.DataFrame(rows)


def write_affwild2(root: str | Path, n_train: int = 8, n_validation: int = 4, frames: int = 24, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """Write the copy; returns the truth per frame (video, frame, valence, arousal, annotated, has_crop)."""
    root = Path(root)
    mark_generated(root, "Aff-Wild2", seed)
    names = [("Train_Set", f"{k + 1}-30-1280x720") for k in range(n_train)]
    names += [("Validation_Set", f"{100 + k}-30-640x360") for k in range(n_validation)]
    names[0] = (names[0][0], names[0][1] + "_left")
    names.insert(1, (names[0][0], names[0][1].replace("_left", "_right")))  # two people in one video
    truth = []
    for k, (folder, video) in enumerate(tqdm(names, desc="Aff-Wild2 videos", disable=not progress)):
        rng = np.random.default_rng([seed, 21, k])
        gap = (frames // 3, frames // 3 + 3) if k == 2 else None
        lost = (frames - 4, frames - 2) if k == 3 else None
        truth.append(_video(root, folder, video, frames, rng, gap, lost).assign(set=folder))
    return pd.concat(truth, ignore_index=True)
