"""Imaging conditions of a generated photograph (lighting, blur, noise, background, gaze) and how
they are applied to the drawn face (``facslab.synth.face.render_face``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Conditions:
    """Imaging conditions: lighting, blur and noise."""

    brightness: float = 1.0
    light_gradient: float = 0.0
    light_angle: float = 0.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    background: tuple[int, int, int] = (180, 180, 180)
    gaze: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Conditions:
        return cls(
            brightness=rng.uniform(0.75, 1.15),
            light_gradient=rng.uniform(0.0, 0.35),
            light_angle=rng.uniform(0, 2 * np.pi),
            blur_sigma=rng.uniform(0.0, 1.2),
            noise_sigma=rng.uniform(0.0, 6.0),
            background=tuple(int(v) for v in rng.integers(40, 230, 3)),
            gaze=tuple(rng.normal(0, 0.02, 2)),
        )


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed field of Gaussian noise; images take random windows of it. Drawing fresh normals
    for every pixel costs more than the whole drawing of the face."""
    return np.random.default_rng(12345).standard_normal((1024, 1024, 3), dtype=np.float32)


def apply_conditions(image: np.ndarray, c: Conditions, rng: np.random.Generator) -> None:
    """Blur, uneven light and sensor noise applied to a drawn image, in place."""
    h, w = image.shape[:2]
    if c.blur_sigma > 0.05:
        cv2.GaussianBlur(image, (0, 0), c.blur_sigma, dst=image)
    gx = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.float32(np.cos(c.light_angle) * c.light_gradient)
    gy = np.linspace(-0.5, 0.5, h, dtype=np.float32) * np.float32(np.sin(c.light_angle) * c.light_gradient)
    light = np.float32(c.brightness) * (1 + gy[:, None] + gx[None, :])
    out = image.astype(np.float32)
    out *= light[..., None]
    if c.noise_sigma > 0.05:
        bank = _noise_bank()
        if h <= bank.shape[0] and w <= bank.shape[1]:
            y, x = rng.integers(0, bank.shape[0] - h + 1), rng.integers(0, bank.shape[1] - w + 1)
            noise = bank[y:y + h, x:x + w]
        else:
            noise = rng.standard_normal(out.shape, dtype=np.float32)
        out += noise * np.float32(c.noise_sigma)
    np.clip(out, 0, 255, out=out)
    image[:] = out.astype(np.uint8)
