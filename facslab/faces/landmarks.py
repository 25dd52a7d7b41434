"""The 68 landmarks of an aligned crop, for models that read face parts (the landmark-patch
transformer): from a dataset's own points, carried into the crop by the alignment, or from dlib's
68-point predictor run on the crop itself (datasets without 68 points, and the apps).

Points are (68, 2) ``x, y`` in the crop's pixels, in iBUG order (the subject's right eye 36-41 on
the image's left)."""

from __future__ import annotations

import cv2
import numpy as np

from facslab.faces.detect import Detection, predict_landmarks

#: where dlib's predictor starts from in an eye-aligned crop (left, top, right, bottom, fractions of
#: the side): between the HOG boxes found on 50 aligned generated faces (0.07, 0.16, 0.90, 0.99) and
#: on the aligned astronaut (0.13, 0.21, 0.82, 0.90). Points from it lie 0.022 of the side (mean)
#: from the generated faces' true points, and 0.021 from the astronaut's points found on the photo.
CROP_BOX = (0.10, 0.19, 0.86, 0.95)
#: the predictor's smallest working crop: smaller crops (FER-2013's 48 px) are enlarged first
MIN_SIDE = 128

#: index of each point's mirror image (iBUG-68): jaw, brows, nose wings, eyes, lips
MIRRORED_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 21, -1)) + list(range(21, 16, -1)) + [27, 28, 29, 30]
    + list(range(35, 30, -1)) + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def crop_landmarks(crops: np.ndarray) -> np.ndarray:
    """(N, 68, 2) float32 points of aligned RGB (or grey) uint8 crops (N, S, S[, C])."""
    crops = np.asarray(crops)
    out = np.empty((len(crops), 68, 2), np.float32)
    for k, crop in enumerate(crops):
        crop = np.ascontiguousarray(crop[..., 0] if crop.ndim == 3 and crop.shape[-1] == 1 else crop)
        side = crop.shape[0]
        scale = max(1.0, MIN_SIDE / side)
        if scale > 1:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        box = tuple(int(round(v * side * scale)) for v in CROP_BOX)
        out[k] = predict_landmarks(crop, Detection(box, 1.0), 68) / scale
    return out


def unmirror(points: np.ndarray) -> np.ndarray:
    """Points in iBUG order again after a horizontal flip: a flipped crop shows the subject's right
    eye on the image's right, which then plays the left eye (as any mirrored face's would)."""
    points = np.asarray(points)
    if points[36:42, 0].mean() > points[42:48, 0].mean():
        return points[MIRRORED_68]
    return points
