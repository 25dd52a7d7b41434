"""Sampling plausible AU combinations: CK+'s posed prototypes plus extra AUs, so all 18 occur."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facslab.au import AU_INDEX, NUM_AUS
from facslab.synth.face import Expression

#: CK+ emotion codes.
EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")

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
