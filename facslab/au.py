"""The Action Unit catalogue: the 18 AUs the model predicts, and how dataset codes map onto them.

Some model AUs merge FACS codes that datasets and detectors code separately: 23/24 (lip
tightener / pressor), 26/27 (jaw drop / mouth stretch) and 43 (eyes closed, which OpenFace
reports as AU45, blink).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionUnit:
    label: str  # as the model names it: "1", "23/24", "43"
    facs_codes: tuple[int, ...]  # the FACS codes that count as this AU
    name: str
    region: str  # brows, eyes, cheeks_nose, mouth: used by region-aware matching
    #: where in an eye-aligned face the action shows: the upper face (down to the cheeks), the
    #: lower face (from the nose wings down), or both (AU9 wrinkles the bridge and lifts the wings)
    face_half: str


AUS: tuple[ActionUnit, ...] = (
    ActionUnit("1", (1,), "Inner Brow Raiser", "brows", "upper"),
    ActionUnit("2", (2,), "Outer Brow Raiser", "brows", "upper"),
    ActionUnit("4", (4,), "Brow Lowerer", "brows", "upper"),
    ActionUnit("5", (5,), "Upper Lid Raiser", "eyes", "upper"),
    ActionUnit("6", (6,), "Cheek Raiser", "cheeks_nose", "upper"),
    ActionUnit("7", (7,), "Lid Tightener", "eyes", "upper"),
    ActionUnit("9", (9,), "Nose Wrinkler", "cheeks_nose", "both"),
    ActionUnit("10", (10,), "Upper Lip Raiser", "mouth", "lower"),
    ActionUnit("12", (12,), "Lip Corner Puller", "mouth", "lower"),
    ActionUnit("14", (14,), "Dimpler", "mouth", "lower"),
    ActionUnit("15", (15,), "Lip Corner Depressor", "mouth", "lower"),
    ActionUnit("17", (17,), "Chin Raiser", "mouth", "lower"),
    ActionUnit("20", (20,), "Lip Stretcher", "mouth", "lower"),
    ActionUnit("23/24", (23, 24), "Lip Tightener / Lip Pressor", "mouth", "lower"),
    ActionUnit("25", (25,), "Lips Part", "mouth", "lower"),
    ActionUnit("26/27", (26, 27), "Jaw Drop / Mouth Stretch", "mouth", "lower"),
    ActionUnit("28", (28,), "Lip Suck", "mouth", "lower"),
    ActionUnit("43", (43, 45), "Eyes Closed", "eyes", "upper"),
)
AU_LABELS: tuple[str, ...] = tuple(au.label for au in AUS)
NUM_AUS = len(AUS)
AU_INDEX: dict[str, int] = {au.label: i for i, au in enumerate(AUS)}
#: AUs by the half of the face that shows them (see ``ActionUnit.face_half``)
FACE_HALF_AUS: dict[str, tuple[int, ...]] = {
    half: tuple(i for i, au in enumerate(AUS) if au.face_half == half) for half in ("upper", "lower", "both")}

#: FACS code (as CK+ writes it) -> model AU index; codes not listed are not trained.
FACS_CODE_TO_INDEX: dict[int, int] = {code: i for i, au in enumerate(AUS) for code in au.facs_codes}

#: OpenFace 2.0 AU numbers, in the order it writes them. ``_r`` (intensity) has all but 28;
#: ``_c`` (presence) has all of them, 28 placed before 45.
OPENFACE_R_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
OPENFACE_C_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
OPENFACE_R_COLUMNS: tuple[str, ...] = tuple(f"AU{n:02d}_r" for n in OPENFACE_R_AUS)
OPENFACE_C_COLUMNS: tuple[str, ...] = tuple(f"AU{n:02d}_c" for n in OPENFACE_C_AUS)
#: OpenFace presence column -> model AU index (23 -> 23/24, 26 -> 26/27, 45 -> 43).
OPENFACE_C_TO_INDEX: dict[str, int] = {
    f"AU{n:02d}_c": FACS_CODE_TO_INDEX[n] for n in OPENFACE_C_AUS
}


def openface_columns(suffix: str) -> tuple[str, ...]:
    """One OpenFace-style column per model AU, in the model's order: ``_c`` presence, ``_p``
    probability, ``_r`` intensity (23/24 -> AU23_*, 26/27 -> AU26_*, 43 -> AU45_*)."""
    by_index = {index: column.removesuffix("_c") for column, index in OPENFACE_C_TO_INDEX.items()}
    return tuple(f"{by_index[k]}_{suffix}" for k in range(NUM_AUS))


def au_index(label: str | int) -> int:
    """Index of an AU in the model's output, from its label ("23/24") or any FACS code (24)."""
    if isinstance(label, (int, np.integer)):
        return FACS_CODE_TO_INDEX[int(label)]
    if label in AU_INDEX:
        return AU_INDEX[label]
    return FACS_CODE_TO_INDEX[int(label)]


def labels_from_facs_codes(
    codes: dict[int, float], min_intensity: int = 1, ungraded: str = "positive"
) -> np.ndarray:
    """18-AU presence vector from a CK+ FACS table ``{code: intensity}``.

    CK+ writes intensity 0 for an AU that is present but was not graded, 1-5 for A-E. An AU is
    positive when graded at ``min_intensity`` or above; an ungraded AU is positive
    (``ungraded="positive"``), negative (``"negative"``), or makes the whole sample unusable
    (``"reject"`` raises ``ValueError``) — explicit, so it is never mislabelled by accident.
    Codes outside the 18 are ignored here (they stay in the raw table).
    """
    if ungraded not in ("positive", "negative", "reject"):
        raise ValueError(f"ungraded must be positive, negative or reject, not {ungraded!r}")
    labels = np.zeros(NUM_AUS, dtype=np.float32)
    for code, intensity in codes.items():
        index = FACS_CODE_TO_INDEX.get(int(code))
        if index is None:
            continue
        if intensity == 0:
            if ungraded == "reject":
                raise ValueError(f"AU {code} is present but not graded (intensity 0)")
            present = ungraded == "positive"
        else:
            present = intensity >= min_intensity
        labels[index] = max(labels[index], float(present))
    return labels


def intensities_from_facs_codes(codes: dict[int, float]) -> np.ndarray:
    """18-AU intensity vector (0 absent, 1-5 for FACS A-E) from a CK+ FACS table. An AU coded
    present but not graded (intensity 0) has no known intensity: NaN, masked out of training and
    metrics. Codes that are one model AU (23, 24) take the larger intensity."""
    values = np.zeros(NUM_AUS, dtype=np.float32)
    for code, intensity in codes.items():
        index = FACS_CODE_TO_INDEX.get(int(code))
        if index is None:
            continue
        if intensity == 0:
            values[index] = np.nan if values[index] == 0 else values[index]
        else:
            values[index] = np.nanmax([values[index], float(intensity)])
    return values
