"""Generated copies of the AU video datasets in their release layouts (readers:
``facslab.formats.bp4d``): per subject and task a short video whose AUs rise from neutral to an
apex and fall back (onset -> apex -> offset), drawn by the face renderer. A BP4D task shows the
emotion it induces (``bp4d.TASK_EMOTIONS``) as a spontaneous display in each participant's own
style: some of the display's AUs left out, an AU of their own added."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facslab.au import AU_INDEX, AUS, FACS_CODE_TO_INDEX, NUM_AUS
from facslab.formats import bp4d
from facslab.synth import mark_generated
from facslab.synth.expressions import sample_posed_expression
from facslab.synth.face import Conditions, Expression, Identity, Pose, render_face

FRAME_SIDE = 192


def envelope(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Onset -> apex -> offset: a rise, a hold and a fall, each about a third, over ``n_frames``."""
    t = np.linspace(0, 1, n_frames)
    rise, fall = rng.uniform(0.2, 0.35), rng.uniform(0.65, 0.8)
    return np.clip(np.minimum(t / rise, (1 - t) / (1 - fall)), 0, 1)


def au_sequence(rng: np.random.Generator, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 18) FACS intensities 0-5 of a posed expression's dynamics, and the envelope."""
    posed = sample_posed_expression(rng, extra_au_rate=0.05)
    shape = envelope(n_frames, rng)
    return posed.expression.aus[None, :] * shape[:, None], shape


#: What a task's induced emotion shows in the generated copy. Spontaneous displays are partial and
#: mixed, one reason the FACS manual's posed prototypes match them poorly: pain as Prkachin's brow
#: lowering, cheek raise, lid tightening, nose wrinkle, upper-lip raise and eye closure; embarrassment
#: as a smile held back by a lip press, eyes down; skepticism as a raised brow with a frown.
INDUCED_DISPLAYS: dict[str, tuple[str, ...]] = {
    "happy": ("6", "12", "10", "25"),
    "sadness": ("1", "4", "15", "17"),
    "surprise": ("1", "2", "5", "25"),
    "embarrassment": ("12", "14", "23/24", "43"),
    "fear": ("1", "2", "4", "20", "25"),
    "pain": ("4", "6", "7", "9", "10", "43"),
    "anger": ("4", "7", "23/24", "17"),
    "disgust": ("4", "9", "10", "15", "17"),
    "skepticism": ("2", "4", "14", "17"),
}


def personal_style(emotion: str, rng: np.random.Generator) -> np.ndarray:
    """(18,) 0/1: the AUs one participant shows for an emotion (each of the display's AUs missing
    with probability 0.3, at least two kept; a protocol AU of their own added half the time)."""
    display = [AU_INDEX[label] for label in INDUCED_DISPLAYS[emotion]]
    kept = [k for k in display if rng.random() >= 0.3]
    kept = kept if len(kept) >= 2 else list(rng.choice(display, 2, replace=False))
    style = np.zeros(NUM_AUS, np.float32)
    style[kept] = 1
    if rng.random() < 0.5:
        style[FACS_CODE_TO_INDEX[int(rng.choice(bp4d.BP4D_PROTOCOL_AUS))]] = 1
    return style


def induced_sequence(style: np.ndarray, rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """(frames, 18) intensities 0-5 of one display of a participant's style, over an envelope."""
    strength = style * rng.uniform(2.0, 5.0, NUM_AUS)
    return (strength[None, :] * envelope(n_frames, rng)[:, None]).astype(np.float32)


def _render_video(folder: Path, intensities: np.ndarray, rng: np.random.Generator, digits: int, first: int,
                  identity: Identity | None = None) -> None:
    identity, conditions = identity or Identity.sample(rng), Conditions.sample(rng)
    centre = (FRAME_SIDE * rng.uniform(0.45, 0.55), FRAME_SIDE * rng.uniform(0.38, 0.46))
    interocular = FRAME_SIDE * rng.uniform(0.26, 0.32)
    folder.mkdir(parents=True, exist_ok=True)
    for k, aus in enumerate(intensities):
        pose = Pose((centre[0] + rng.normal(0, 0.8), centre[1] + rng.normal(0, 0.8)), interocular, rng.normal(0, 1.0))
        image, _ = render_face(identity, Expression(aus.astype(np.float32)), pose, (FRAME_SIDE, FRAME_SIDE), conditions, rng)
        cv2.imwrite(str(folder / f"{first + k:0{digits}d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])


def _codes_of(model_index: int, rng: np.random.Generator) -> int:
    """The FACS code a coder would write for a model AU (23/24 -> 23 or 24, 26/27 -> 26)."""
    codes = AUS[model_index].facs_codes
    return int(codes[rng.integers(len(codes))]) if len(codes) > 1 and codes[0] == 23 else int(codes[0])


def write_bp4d(root: str | Path, n_subjects: int = 6, tasks: tuple[str, ...] | None = None, frames: int = 12,
               seed: int = 0, release: str = "bp4d", unknown_rate: float = 0.03,
               layout: bp4d.BP4DLayout = bp4d.BP4DLayout(), progress: bool = True) -> Path:
    """BP4D (``release="bp4d"``: the 0..99 integer header) or BP4D+ (named AU columns) AU_OCC
    files and frame images of ``tasks`` (None: every task of the release); each participant has
    one face and, per induced emotion, one style; the first two frames of every video are outside
    the coded segment; ``unknown_rate`` of the protocol cells are 9 (unknown), and AUs BP4D does
    not code are 9 throughout."""
    if release not in ("bp4d", "bp4d+"):
        raise ValueError(f"release must be bp4d or bp4d+, not {release!r}")
    induced = bp4d.TASK_EMOTIONS[release]
    tasks = tuple(induced) if tasks is None else tuple(tasks)
    unknown_tasks = sorted(set(tasks) - set(induced))
    if unknown_tasks:
        raise ValueError(f"{release.upper()} has no task {', '.join(unknown_tasks)} (tasks: {', '.join(induced)})")
    root = Path(root)
    rng = np.random.default_rng(seed)
    labels = root / layout.labels
    labels.mkdir(parents=True, exist_ok=True)
    coded = sorted(set(bp4d.BP4D_PROTOCOL_AUS) | {5, 9, 11, 13, 16, 18, 20, 22, 27, 28, 43})
    names = [f"F{k + 1:03d}" if k % 2 == 0 else f"M{k + 1:03d}" for k in range(n_subjects)]
    for number, subject in enumerate(tqdm(names, desc=f"{release.upper()} videos", disable=not progress)):
        identity = Identity.sample(np.random.default_rng([seed, number, 1000]))
        emotions = sorted(set(induced[task] for task in tasks))
        styles = {e: personal_style(e, np.random.default_rng([seed, number, 2000, bp4d.INDUCED_EMOTIONS.index(e)]))
                  for e in emotions}
        for task in tasks:
            video_rng = np.random.default_rng([seed, number, int(task[1:])])
            intensities = induced_sequence(styles[induced[task]], video_rng, frames)
            _render_video(root / layout.images / subject / task, intensities, video_rng, layout.frame_digits, 0,
                          identity)
            present = intensities >= 1.0
            table = np.full((frames, 100), bp4d.UNKNOWN, np.int64)
            table[:, 0] = np.arange(frames)
            table[:, coded] = 0
            for index in range(NUM_AUS):
                code = _codes_of(index, video_rng)
                if code < 100 and code in coded:
                    table[present[:, index], code] = 1
            protocol = list(bp4d.BP4D_PROTOCOL_AUS)
            unknown = video_rng.random((frames, len(protocol))) < unknown_rate
            table[:, protocol] = np.where(unknown, bp4d.UNKNOWN, table[:, protocol])
            table = table[2:]  # the coded segment
            path = labels / f"{subject}_{task}.csv"
            if release == "bp4d":
                header = ",".join(str(k) for k in range(100))
                rows = table
            else:
                header = "Frame," + ",".join(f"AU{c}" for c in coded)
                rows = table[:, [0] + coded]
            path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    mark_generated(root, release.upper(), seed)
    return root


def write_disfa(root: str | Path, n_subjects: int = 6, frames: int = 16, seed: int = 0,
                layout: bp4d.DISFALayout = bp4d.DISFALayout(), progress: bool = True) -> Path:
    """DISFA's per-AU ``frame,intensity`` files (12 AUs, 1-based frames, 0-5) and frame images; a
    video holds a few expressions in turn."""
    root = Path(root)
    for number in tqdm(range(1, n_subjects + 1), desc="DISFA videos", disable=not progress):
        subject = f"SN{number:03d}"
        rng = np.random.default_rng([seed, number])
        parts = [au_sequence(rng, frames // 2)[0], au_sequence(rng, frames - frames // 2)[0]]
        intensities = np.concatenate(parts)
        _render_video(root / layout.images / subject, intensities, rng, layout.frame_digits, 1)
        folder = root / layout.labels / subject
        folder.mkdir(parents=True, exist_ok=True)
        for au in bp4d.DISFA_AUS:
            values = np.clip(np.round(intensities[:, FACS_CODE_TO_INDEX[au]]), 0, 5).astype(int)
            (folder / f"{subject}_au{au}.txt").write_text(
                "\n".join(f"{k + 1},{v}" for k, v in enumerate(values)) + "\n")
    mark_generated(root, "DISFA", seed)
    return root
