"""Albumentations pipelines: augmentation for training only, normalisation for every split; and
mixing face halves across a training batch."""

from __future__ import annotations

import albumentations as A
import torch
from albumentations.pytorch import ToTensorV2

from facslab.au import FACE_HALF_AUS, NUM_AUS


def keypoint_params(keypoints: bool) -> dict:
    """``A.Compose`` arguments that move a crop's landmarks with every geometric change of the
    image (``keypoints=``), keeping points pushed off the crop; none when ``keypoints`` is False."""
    return {"keypoint_params": A.KeypointParams(format="xy", remove_invisible=False)} if keypoints else {}


def train_transform(mean, std, augment: bool = True, seed: int | None = None, keypoints: bool = False) -> A.Compose:
    """Albumentations keeps its own random state: ``seed`` makes the augmentation repeatable.
    ``keypoints``: the augmentation also moves a crop's landmarks (``keypoints=``)."""
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
    return A.Compose(steps + [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()], seed=seed,
                     **keypoint_params(keypoints and augment))


def eval_transform(mean, std) -> A.Compose:
    return A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()])


def mix_face_halves(images: torch.Tensor, labels: torch.Tensor, row: int, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch in which a ``rate`` fraction of the faces get another face's lower half (image rows
    ``row`` and down of eye-aligned crops). Their labels follow the halves: upper-face AUs from the
    face itself, lower-face AUs from the other, and an AU that shows in both halves (AU9) only
    where the two faces agree, unknown (NaN, left out of the loss) where not. Labels after the AUs
    (valence/arousal) belong to a whole face: unknown for a mixed one.

    Posed faces come as prototypes (anger's AU4+5+7 with 23/24, disgust's AU9+17 with 10), and a
    few hundred of them teach a network to read the lower-face AUs from the upper face; mixed
    halves take that shortcut away."""
    chosen = (torch.rand(len(images), device=images.device) < rate).nonzero().squeeze(1)
    if not len(chosen):
        return images, labels
    partner = torch.randperm(len(images), device=images.device)[chosen]
    mixed_images, mixed_labels = images.clone(), labels.clone()
    mixed_images[chosen, :, row:] = images[partner, :, row:]
    lower, both = list(FACE_HALF_AUS["lower"]), list(FACE_HALF_AUS["both"])
    mixed_labels[chosen[:, None], lower] = labels[partner[:, None], lower]
    own, other = labels[chosen[:, None], both], labels[partner[:, None], both]
    mixed_labels[chosen[:, None], both] = torch.where(own == other, own, torch.full_like(own, float("nan")))
    mixed_labels[chosen, NUM_AUS:] = float("nan")
    return mixed_images, mixed_labels
