"""Albumentations pipelines: augmentation for training only, normalisation for every split."""

from __future__ import annotations

import albumentations as A
from albumentations.pytorch import ToTensorV2


def train_transform(mean, std, augment: bool = True, seed: int | None = None) -> A.Compose:
    """Albumentations keeps its own random state: ``seed`` makes the augmentation repeatable."""
    steps = []
    if augment:
        # Small geometric jitter on top of alignment, and photometric changes; a horizontal flip
        # is safe because every trained AU label is bilateral.
        steps += [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.95, 1.05), translate_percent=(-0.03, 0.03), rotate=(-5, 5), p=0.7),
            A.RandomBrightnessContrast(0.2, 0.2, p=0.7),
            A.ToGray(p=0.1),
        ]
    return A.Compose(steps + [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()], seed=seed)


def eval_transform(mean, std) -> A.Compose:
    return A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])
