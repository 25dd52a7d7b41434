"""The landmark-patch transformer: a transformer whose tokens are patches cut around facial parts
(brows, eyes, nose, mouth corners and centre, chin and jaw) instead of a fixed grid, trained from
scratch, so that what it attends to is a face part by construction.

Each patch is embedded by one small convolution stack shared by all patches; each token gets a
learned embedding of its patch's identity (torchvision's ViT encoder's position embedding, one per
token), a class token is prepended, and the encoder's final class token is the feature.

Where the patches are cut: around each face's own landmarks, the input being ``(image, landmarks)``
with the 68 iBUG points in the crop's pixels (``facslab.faces.landmarks``: a dataset's own points
carried into the crop, or dlib's predictor on the crop). A part's place is the mean of its points
(``PART_POINTS``); its patch is read by ``grid_sample``, so parts near the crop's edge (the chin)
get zeros beyond it, and the whole model exports to ONNX with the landmarks as its second input.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import Encoder

#: part -> its iBUG-68 points (brows 17-21 and 22-26, eyes 36-41 and 42-47, nose tip 30, mouth
#: corners 48 and 54, mouth centre 62+66, chin 8, jaw 4 and 12); "right" and "left" are the
#: subject's, as FACS codes them
PART_POINTS: dict[str, tuple[int, ...]] = {
    "right_brow": tuple(range(17, 22)), "left_brow": tuple(range(22, 27)),
    "right_eye": tuple(range(36, 42)), "left_eye": tuple(range(42, 48)),
    "nose": (30,),
    "mouth_right": (48,), "mouth_left": (54,), "mouth_centre": (62, 66),
    "chin": (8,), "jaw_right": (4,), "jaw_left": (12,),
}


class LandmarkPatchEmbedding(nn.Module):
    """Patches around the parts -> tokens: shared convolutions, a class token, one learned
    embedding per token (the first stage of the trunk)."""

    def __init__(self, image_size: int, in_channels: int, parts: tuple[str, ...], patch_size: int, hidden_dim: int,
                 pos_embedding: nn.Parameter):
        super().__init__()
        unknown = [p for p in parts if p not in PART_POINTS]
        if unknown:
            raise ValueError(f"unknown face parts {unknown}; choose from {', '.join(PART_POINTS)}")
        self.parts, self.patch_size, self.image_size = tuple(parts), patch_size, image_size
        averaging = torch.zeros(len(parts), 68)
        for k, part in enumerate(parts):
            averaging[k, list(PART_POINTS[part])] = 1.0 / len(PART_POINTS[part])
        self.register_buffer("averaging", averaging, persistent=False)
        # a patch's pixel offsets from its part's place
        self.register_buffer("offsets", torch.arange(patch_size, dtype=torch.float32) - (patch_size - 1) / 2,
                             persistent=False)
        width = max(16, hidden_dim // 4)
        # a 4x4 layout survives into the token: a lifted lip corner is a shape within the patch
        self.embed = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(1), nn.Linear(16 * width, hidden_dim))
        # where each part is: a patch cut at its own landmark shows the part, not that it moved (a
        # raised brow sits in the middle of its patch as a lowered one does); its place in the crop does
        self.place = nn.Linear(2, hidden_dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embedding = pos_embedding

    def centres(self, landmarks: torch.Tensor) -> torch.Tensor:
        """(N, parts, 2) places (x, y, pixels) of the parts of faces with these (N, 68, 2) landmarks."""
        return torch.einsum("kj,njd->nkd", self.averaging, landmarks)

    def patches(self, x: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(N, parts, C, p, p): the patch around each part of each face."""
        n, c, s = x.shape[0], x.shape[1], self.image_size
        p, parts = self.patch_size, len(self.parts)
        centres = self.centres(landmarks)  # (N, K, 2)
        xs = centres[..., 0, None] + self.offsets  # (N, K, p)
        ys = centres[..., 1, None] + self.offsets
        grid = torch.stack([xs[:, :, None, :].expand(n, parts, p, p), ys[:, :, :, None].expand(n, parts, p, p)], -1)
        grid = (grid + 0.5) * (2.0 / s) - 1.0  # pixel centres -> grid_sample's [-1, 1]
        sampled = nn.functional.grid_sample(x, grid.reshape(n, parts * p, p, 2), mode="bilinear",
                                            padding_mode="zeros", align_corners=False)  # (N, C, K*p, p)
        return sampled.reshape(n, c, parts, p, p).transpose(1, 2)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, landmarks = inputs
        patches = self.patches(x, landmarks)
        n, parts = patches.shape[:2]
        places = self.centres(landmarks) * (2.0 / self.image_size) - 1.0  # [-1, 1] across the crop
        tokens = self.embed(patches.flatten(0, 1)).reshape(n, parts, -1) + self.place(places)
        tokens = torch.cat([self.class_token.expand(n, -1, -1), tokens], dim=1)
        return tokens + self.pos_embedding

    def token_map(self, weights: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(N, S, S) image map of per-patch weights (N, parts) of faces with these landmarks: each
        weight spread evenly over its patch (overlaps add), for saliency overlays."""
        half, p, s = self.patch_size // 2, self.patch_size, self.image_size
        canvas = weights.new_zeros(weights.shape[0], s + 2 * p, s + 2 * p)
        corners = (self.centres(landmarks.to(weights)).round().long() - half + p).clamp(0, s + p).tolist()
        for i, face in enumerate(corners):
            for k, (x, y) in enumerate(face):
                canvas[i, y:y + p, x:x + p] += weights[i, k] / (p * p)
        return canvas[:, p:p + s, p:p + s]


def landmark_patch_transformer(image_size: int, in_channels: int = 3, parts: tuple[str, ...] = tuple(PART_POINTS),
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
