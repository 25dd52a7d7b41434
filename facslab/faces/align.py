"""Aligning a face to a square crop with the eyes level, from whatever landmarks are at hand.

The crop is a similarity transform (rotation, scale, shift) that puts the two eye centres at
fixed points, as the report does ("rotated by the angle between the pupils, cropped tightly").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AlignmentSpec:
    """Output crop: ``size`` pixels square, eye centres at ``eye_y`` of the height and
    ``eye_distance`` of the width apart. The defaults crop from just above the brows to the chin."""

    size: int = 224
    eye_y: float = 0.4
    eye_distance: float = 0.36

    def eye_targets(self) -> np.ndarray:
        half = self.eye_distance / 2
        return np.array([[0.5 - half, self.eye_y], [0.5 + half, self.eye_y]]) * self.size


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """(2, 2) centres of the image-left and image-right eye from 68-point (iBUG), dlib 5-point
    or 2-point (already eye centres) landmarks."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(points) == 68:
        eyes = np.stack([points[36:42].mean(0), points[42:48].mean(0)])
    elif len(points) == 5:
        # dlib's 5-point model: two corners of each eye (0-1, 2-3) and the nose base (4)
        eyes = np.stack([points[0:2].mean(0), points[2:4].mean(0)])
    elif len(points) == 2:
        eyes = points
    else:
        raise ValueError(f"expected 68, 5 or 2 landmarks, got {len(points)}")
    return eyes[np.argsort(eyes[:, 0])]


def alignment_matrix(eyes: np.ndarray, spec: AlignmentSpec) -> np.ndarray:
    """2x3 similarity transform taking the (image-left, image-right) eye centres to the spec's."""
    src, dst = np.asarray(eyes, dtype=np.float64), spec.eye_targets()
    # A similarity is a complex multiplication z -> a z + b: solve it from the two points.
    zs, zd = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    if zs[1] == zs[0]:
        raise ValueError("the two eye centres coincide")
    a = (zd[1] - zd[0]) / (zs[1] - zs[0])
    b = zd[0] - a * zs[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def align_face(image: np.ndarray, landmarks: np.ndarray, spec: AlignmentSpec = AlignmentSpec()) -> np.ndarray:
    """The aligned square crop of ``image`` (H, W, 3) for a face with these landmarks."""
    matrix = alignment_matrix(eye_centres(landmarks), spec)
    return cv2.warpAffine(image, matrix, (spec.size, spec.size), flags=cv2.INTER_AREA
                          if abs(np.linalg.det(matrix[:, :2])) < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
