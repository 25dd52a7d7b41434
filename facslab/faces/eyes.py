"""Eye state from the 68-point landmarks: the eye aspect ratio (Soukupová & Čech, 2016).

EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) over the six points of one eye. Open eyes measure
about 0.25-0.4 (0.35-0.39 on skimage's astronaut photograph); a closed eye falls towards 0.05.
The default threshold, 0.2, is the usual one from that paper and sits between the two. The
report's "1.9" cannot be an EAR threshold (every eye would be closed): it is a typo, most likely
for 0.19, which behaves the same as 0.2.
"""

from __future__ import annotations

import numpy as np

EYE_CLOSED_THRESHOLD = 0.2


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """EAR of one eye's six landmarks, in iBUG order (corner, two upper, corner, two lower)."""
    eye = np.asarray(eye, dtype=np.float64)
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    horizontal = np.linalg.norm(eye[0] - eye[3])
    return float(vertical / (2.0 * horizontal)) if horizontal > 0 else 0.0


def eye_aspect_ratios(landmarks68: np.ndarray) -> tuple[float, float]:
    """(left, right) EAR of the subject's own left eye (points 42-47) and right eye (36-41)."""
    landmarks68 = np.asarray(landmarks68)
    return eye_aspect_ratio(landmarks68[42:48]), eye_aspect_ratio(landmarks68[36:42])


def eyes_closed(landmarks68: np.ndarray, threshold: float = EYE_CLOSED_THRESHOLD) -> tuple[bool, bool]:
    """(left closed, right closed), the subject's own sides."""
    left, right = eye_aspect_ratios(landmarks68)
    return left < threshold, right < threshold
