"""The landmark-patch transformer: a transformer whose tokens are patches cut around facial parts
(brows, eyes, nose, mouth corners and centre, chin and jaw) instead of a fixed grid, trained from
scratch, so that what it attends to is a face part by construction.

Each patch is embedded by one small convolution stack shared by all patches; each token gets a
learned embedding of its patch's identity (torchvision's ViT encoder's position embedding, one per
token), a class token is prepended, and the encoder's final class token is the feature.

Where the patches are cut: at the parts' places in facslab's aligned crop (eyes level at 40 % of
the height, 36 % of the width apart, ``facslab.faces.align.AlignmentSpec``), the mean of the 68
dlib landmarks of each part over 200 neutral faces of the generator (``PART_TEMPLATE``). The
astronaut's own landmarks lie within 0.06 of the crop of it (her smile lifts the mouth corners). Per-face
landmarks (from a dataset's files or dlib at run time) are not used yet: docs/explain.md says so.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import Encoder

#: part -> (x, y) in fractions of the aligned crop (the iBUG-68 points averaged: brows 17-21 and
#: 22-26, eyes 36-41 and 42-47, nose tip 30, mouth corners 48 and 54, mouth centre 62+66, chin 8,
#: jaw 4 and 12); "right" and "left" are the subject's, as FACS codes them
PART_TEMPLATE: dict[str, tuple[float, float]] = {
    "right_brow": (0.312, 0.264), "left_brow": (0.688, 0.264),
    "right_eye": (0.320, 0.400), "left_eye": (0.680, 0.400),
    "nose": (0.500, 0.604),
    "mouth_right": (0.353, 0.773), "mouth_left": (0.647, 0.773), "mouth_centre": (0.500, 0.773),
    "chin": (0.500, 0.984), "jaw_right": (0.243, 0.849), "jaw_left": (0.757, 0.849),
}


class LandmarkPatchEmbedding(nn.Module):
    """Patches around the parts -> tokens: shared convolutions, a class token, one learned
    embedding per token (the first stage of the trunk)."""

    def __init__(self, image_size: int, in_channels: int, parts: tuple[str, ...], patch_size: int, hidden_dim: int,
                 pos_embedding: nn.Parameter):
        super().__init__()
        unknown = [p for p in parts if p not in PART_TEMPLATE]
        if unknown:
            raise ValueError(f"unknown face parts {unknown}; choose from {', '.join(PART_TEMPLATE)}")
        self.parts, self.patch_size, self.image_size = tuple(parts), patch_size, image_size
        # top-left corners in the image padded by half a patch, so a part at the crop's edge (the
        # chin) still gets a whole patch
        self.corners = [(round(y * image_size), round(x * image_size)) for x, y in (PART_TEMPLATE[p] for p in parts)]
        width = max(16, hidden_dim // 4)
        # a 4x4 layout survives into the token: a lifted lip corner is a shape within the patch
        self.embed = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(1), nn.Linear(16 * width, hidden_dim))
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embedding = pos_embedding

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, parts, C, p, p): the patch around each part."""
        half = self.patch_size // 2
        padded = nn.functional.pad(x, (half, half, half, half))
        p = self.patch_size
        return torch.stack([padded[:, :, y:y + p, x_:x_ + p] for y, x_ in self.corners], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patches(x)
        n, parts = patches.shape[:2]
        tokens = self.embed(patches.flatten(0, 1)).reshape(n, parts, -1)
        tokens = torch.cat([self.class_token.expand(n, -1, -1), tokens], dim=1)
        return tokens + self.pos_embedding

    def token_map(self, weights: torch.Tensor) -> torch.Tensor:
        """(N, S, S) image map of per-patch weights (N, parts): each weight spread evenly over its
        patch (overlaps add), for saliency overlays."""
        half, p, s = self.patch_size // 2, self.patch_size, self.image_size
        canvas = weights.new_zeros(weights.shape[0], s + 2 * half, s + 2 * half)
        for k, (y, x) in enumerate(self.corners):
            canvas[:, y:y + p, x:x + p] += weights[:, k, None, None] / (p * p)
        return canvas[:, half:half + s, half:half + s]


def landmark_patch_transformer(image_size: int, in_channels: int = 3, parts: tuple[str, ...] = tuple(PART_TEMPLATE),
                               patch_fraction: float = 0.25, hidden_dim: int = 128, depth: int = 4, heads: int = 4,
                               dropout: float = 0.1):
    """(embedding, encoder) of a landmark-patch transformer for ``image_size`` crops; patches are
    ``patch_fraction`` of the crop a side. The encoder's final LayerNorm of the class token is the
    feature (``lightning_modules.backbones.landmark_patches`` chains them)."""
    patch_size = max(8, int(round(patch_fraction * image_size)))
    encoder = Encoder(len(parts) + 1, depth, heads, hidden_dim, 2 * hidden_dim, dropout, dropout)
    nn.init.normal_(encoder.pos_embedding, std=0.02)
    embedding = LandmarkPatchEmbedding(image_size, in_channels, parts, patch_size, hidden_dim, encoder.pos_embedding)
    return embedding, encoder
