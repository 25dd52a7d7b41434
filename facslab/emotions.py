"""The emotion catalogue, beside the AU catalogue (``facslab.au``): CK+'s emotion codes. Each
emotion dataset's own class list stays with its reader (FER-2013, AffectNet and RAF-DB number
their classes differently)."""

#: CK+ emotion codes: the number in an ``_emotion.txt`` file is the index here.
EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")

#: the two axes of the circumplex model (valence/arousal models output them in this order)
DIMENSIONS = ("valence", "arousal")


def affect_fields(values) -> dict:
    """Valence and arousal as a face's JSON fields."""
    return {d: round(float(v), 4) for d, v in zip(DIMENSIONS, values)}


def affect_summary(values) -> str:
    """Valence and arousal in a few words (the terminal, the drawing, the page)."""
    return ", ".join(f"{d} {float(v):+.2f}" for d, v in zip(DIMENSIONS, values))
