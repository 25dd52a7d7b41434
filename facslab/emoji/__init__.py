"""Emoji matching: the emoji whose AU label vector agrees most with a face's detected AUs.

The agreement vector has 19 entries: the model's 17 AUs other than AU43, then left-eye-closed and
right-eye-closed (the subject's own sides) from the eye aspect ratio, which replaces AU43 because
the emojis need the eyes separately (😉). The default agreement is Cohen's kappa; accuracy,
Jaccard and a region-aware score plug in. Ties go to the emoji listed first in the table, and the
result says that there was a tie.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facslab.au import AU_INDEX, AU_LABELS, AUS

DEFAULT_TABLE = Path(__file__).with_name("emojis.csv")
VECTOR_AUS: tuple[str, ...] = tuple(a for a in AU_LABELS if a != "43")
VECTOR_NAMES: tuple[str, ...] = tuple(f"AU{a}" for a in VECTOR_AUS) + ("left_eye_closed", "right_eye_closed")
_REGION = {au.label: au.region for au in AUS}
VECTOR_REGIONS: tuple[str, ...] = tuple(_REGION[a] for a in VECTOR_AUS) + ("eyes", "eyes")


def agreement_vector(decisions, left_eye_closed: bool, right_eye_closed: bool) -> np.ndarray:
    """19 binary entries from 18 AU decisions (model order) and the two eye states."""
    decisions = np.asarray(decisions, dtype=bool)
    aus = [decisions[AU_INDEX[a]] for a in VECTOR_AUS]
    return np.array(aus + [left_eye_closed, right_eye_closed], dtype=np.int8)


@dataclass(frozen=True)
class Emoji:
    char: str
    name: str
    vector: np.ndarray = field(compare=False)

    @property
    def aus(self) -> list[str]:
        return [VECTOR_NAMES[k].removeprefix("AU") for k in np.flatnonzero(self.vector)]


def load_emojis(path: str | Path = DEFAULT_TABLE) -> list[Emoji]:
    """The emoji table: ``emoji,name,aus,left_eye_closed,right_eye_closed`` with ``aus`` as
    space-separated model AU labels (``1 5 12 25 26/27``). Users may edit or replace it."""
    path = Path(path)
    emojis = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            try:
                decisions = np.zeros(len(AU_LABELS), bool)
                for label in (row["aus"] or "").split():
                    if label not in AU_INDEX or label == "43":
                        raise ValueError(f"unknown AU {label!r} (use the model's labels, eyes in their own columns)")
                    decisions[AU_INDEX[label]] = True
                vector = agreement_vector(decisions, row["left_eye_closed"].strip() == "1",
                                          row["right_eye_closed"].strip() == "1")
            except (KeyError, AttributeError, ValueError) as error:
                raise ValueError(f"{path}: line {number}: {error}") from None
            emojis.append(Emoji(row["emoji"], row["name"], vector))
    if not emojis:
        raise ValueError(f"{path}: no emojis")
    return emojis


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary vectors (scikit-learn's ``cohen_kappa_score`` gives the same).

    When both vectors are constant kappa is 0/0; it is defined here as 1 when they are equal (a
    neutral face matches the neutral emoji perfectly) and 0 otherwise.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    po = float(np.mean(a == b))
    pa, pb = a.mean(), b.mean()
    pe = float(pa * pb + (1 - pa) * (1 - pb))
    if pe >= 1.0:
        return 1.0 if po == 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def accuracy(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a, bool) == np.asarray(b, bool)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of the active entries; 1 when neither has any."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def region_aware(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the face regions (brows, eyes, cheeks/nose, mouth) of the Jaccard agreement in the
    region, with half credit for what differs when both vectors move that region: a face that
    raises its brows differently from the emoji still agrees that the brows move."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    regions = np.asarray(VECTOR_REGIONS)
    scores = []
    for region in ("brows", "eyes", "cheeks_nose", "mouth"):
        ra, rb = a[regions == region], b[regions == region]
        j = jaccard(ra, rb)
        if ra.any() and rb.any():
            j += 0.5 * (1 - j)
        scores.append(j)
    return float(np.mean(scores))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "kappa": cohen_kappa, "accuracy": accuracy, "jaccard": jaccard, "region": region_aware,
}


@dataclass
class Match:
    emoji: Emoji
    score: float
    ranking: list[tuple[Emoji, float]]  # best first; equal scores in table order
    tied_with: list[Emoji]  # other emojis with the best score (the first listed won)
    metric: str

    def as_dict(self) -> dict:
        return {"emoji": self.emoji.char, "name": self.emoji.name, "score": round(self.score, 4),
                "metric": self.metric, "tied_with": [e.char for e in self.tied_with],
                "ranking": [{"emoji": e.char, "score": round(s, 4)} for e, s in self.ranking]}


def match_emoji(vector: np.ndarray, emojis: list[Emoji] | None = None, metric: str = "kappa") -> Match:
    """The best-agreeing emoji for a 19-entry agreement vector."""
    emojis = emojis if emojis is not None else load_emojis()
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    vector = np.asarray(vector)
    if vector.shape != (len(VECTOR_NAMES),):
        raise ValueError(f"agreement vector must have {len(VECTOR_NAMES)} entries, got {vector.shape}")
    scores = [METRICS[metric](vector, e.vector) for e in emojis]
    order = sorted(range(len(emojis)), key=lambda k: (-round(scores[k], 12), k))  # stable: table order
    ranking = [(emojis[k], scores[k]) for k in order]
    best = ranking[0][1]
    tied = [e for e, s in ranking[1:] if abs(s - best) < 1e-12]
    return Match(ranking[0][0], best, ranking, tied, metric)
