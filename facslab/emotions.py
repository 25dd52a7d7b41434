"""The emotion catalogue, beside the AU catalogue (``facslab.au``): CK+'s emotion codes. Each
emotion dataset's own class list stays with its reader (FER-2013, AffectNet and RAF-DB number
their classes differently)."""

#: CK+ emotion codes: the number in an ``_emotion.txt`` file is the index here.
EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
