"""Sampling plausible AU combinations: CK+'s posed prototypes plus extra AUs, so all 18 occur."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facslab.au import AU_INDEX, NUM_AUS
from facslab.synth.face import Expression


#: Prototypical AUs per emotion (EMFACS-style), as posed in CK+.
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "anger": ("4", "5", "7", "23/24", "17"),
    "contempt": ("12", "14"),
    "disgust": ("9", "10", "17", "25"),
    "fear": ("1", "2", "4", "5", "20", "25", "26/27"),
    "happy": ("6", "12", "25"),
    "sadness": ("1", "4", "15", "17"),
    "surprise": ("1", "2", "5", "25", "26/27"),
}
#: Posed actions that are no emotion: they make AU28 and AU43 (and winks) common enough to learn.
ACTIONS: dict[str, tuple[str, ...]] = {
    "eyes_closed": ("43",),
    "lip_suck": ("28",),
    "wink": ("12",),
    "squint": ("6", "7"),
}

#: FACS codes CK+ codes that the model does not train on (kept in the raw tables).
UNTRAINED_CODES = (11, 13, 16, 18, 21, 31, 38, 39, 54, 62, 64)


@dataclass(frozen=True)
class PosedExpression:
    expression: Expression
    emotion: str | None  # a CK+ emotion name when the pose is a validated prototype
    extra_codes: dict[int, int]  # untrained FACS codes with their intensity


def sample_posed_expression(rng: np.random.Generator, extra_au_rate: float = 0.08) -> PosedExpression:
    """A CK+-like posed expression: a prototype, some AUs dropped or added, intensities 1-5."""
    names = list(PROTOTYPES) + list(ACTIONS)
    weights = np.array([1.0] * len(PROTOTYPES) + [0.6] * len(ACTIONS))
    name = names[rng.choice(len(names), p=weights / weights.sum())]
    core = PROTOTYPES.get(name) or ACTIONS[name]
    aus = np.zeros(NUM_AUS, dtype=np.float32)
    for label in core:
        if len(core) > 2 and rng.random() < 0.15:
            continue  # posers do not always show every prototype AU
        aus[AU_INDEX[label]] = rng.integers(1, 6)
    if not aus.any():
        aus[AU_INDEX[core[0]]] = rng.integers(1, 6)
    extra = rng.random(NUM_AUS) < extra_au_rate
    aus[extra & (aus == 0)] = rng.integers(1, 6, size=int((extra & (aus == 0)).sum()))
    closure = None
    if name == "wink":
        closed = float(rng.integers(3, 6))
        closure = (closed, 0.0) if rng.random() < 0.5 else (0.0, closed)
        aus[AU_INDEX["43"]] = closed
    extra_codes = {int(c): int(rng.integers(0, 6)) for c in UNTRAINED_CODES if rng.random() < 0.03}
    emotion = name if name in PROTOTYPES and (aus > 0).sum() >= 2 else None
    return PosedExpression(Expression(aus, closure), emotion, extra_codes)


def sample_spontaneous_expression(rng: np.random.Generator, neutral_rate: float = 0.25) -> Expression:
    """An in-the-wild expression (CelebA): often neutral or a smile, sometimes a prototype."""
    if rng.random() < neutral_rate:
        return Expression()
    return sample_posed_expression(rng, extra_au_rate=0.05).expression


#: Where each emotion usually sits on the valence/arousal circumplex (Russell; AffectNet's
#: annotations cluster there): centre (valence, arousal) and spread.
AFFECT_REGIONS: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.12), "happy": (0.7, 0.35, 0.15), "sadness": (-0.6, -0.35, 0.15),
    "surprise": (0.2, 0.75, 0.15), "fear": (-0.55, 0.7, 0.15), "disgust": (-0.65, 0.3, 0.15),
    "anger": (-0.55, 0.65, 0.15), "contempt": (-0.45, 0.2, 0.15),
}


@dataclass(frozen=True)
class EmotionSample:
    expression: Expression
    emotion: str  # a CK+ emotion name (``facslab.emotions.EMOTIONS``)
    valence: float
    arousal: float


def sample_emotion_expression(emotion: str, rng: np.random.Generator, intensity: tuple[float, float] = (0.35, 1.0),
                              extra_au_rate: float = 0.05) -> EmotionSample:
    """The emotion drawn as its prototypical AUs at a random overall intensity (a faint to a full
    display), with valence/arousal around the emotion's usual region and scaled with the intensity."""
    if emotion not in AFFECT_REGIONS:
        raise ValueError(f"unknown emotion {emotion!r}; choose from {', '.join(AFFECT_REGIONS)}")
    aus = np.zeros(NUM_AUS, dtype=np.float32)
    strength = float(rng.uniform(*intensity))
    for label in PROTOTYPES.get(emotion, ()):
        if rng.random() < 0.1:
            continue  # not every prototype AU shows every time
        aus[AU_INDEX[label]] = float(np.clip(rng.normal(4.5, 0.6), 1, 5)) * strength
    extra = rng.random(NUM_AUS) < extra_au_rate
    aus[extra & (aus == 0)] = rng.uniform(0.5, 2.0, int((extra & (aus == 0)).sum()))
    valence, arousal, spread = AFFECT_REGIONS[emotion]
    scale = 0.4 + 0.6 * strength
    point = np.clip(np.array([valence, arousal]) * scale + rng.normal(0, spread, 2), -1, 1)
    return EmotionSample(Expression(aus), emotion, float(point[0]), float(point[1]))
