"""How a FACS intensity (0-5) becomes the strength of what the face generator draws."""

from __future__ import annotations

import numpy as np


#: Effect strength of a trace (intensity 1, FACS "A") action. Real trace AUs are subtle; drawn
#: at 1/5 of the apex they would be under a pixel at the demo's 64 px crops, so a coded AU starts
#: at this visible floor and still grows with every intensity step.
TRACE_STRENGTH = 0.5


def intensity_strength(intensity: float) -> float:
    """Effect strength 0-1 of a FACS intensity 0-5: 0 at 0, ``TRACE_STRENGTH`` at 1 (A), 1 at 5 (E),
    linear in between, so the frames between neutral and peak grow continuously."""
    x = float(np.clip(intensity, 0.0, 5.0))
    if x <= 1.0:
        return TRACE_STRENGTH * x
    return TRACE_STRENGTH + (1.0 - TRACE_STRENGTH) * (x - 1.0) / 4.0


def lip_roll(strength: float) -> float:
    """How far AU28 has rolled the lips in (0-1) at an effect strength: already most of the way
    at trace (0.7), since the lips turning inward is what FACS scores for AU28 at any intensity,
    and still growing to the apex."""
    return float(np.sqrt(max(strength, 0.0)))


def eye_closure_fraction(intensity: float) -> float:
    """How far an eye is shut for an AU43 intensity: any coded AU43 is a (nearly) closed eye."""
    return 0.0 if intensity <= 0 else 0.8 + 0.2 * min(intensity, 5.0) / 5.0
