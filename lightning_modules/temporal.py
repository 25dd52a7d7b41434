"""AU detection over short stacks of aligned frames (the last frame's AUs), two ways:

* ``mobilenet3d``: a 3D depthwise-separable MobileNet-style network (Kopuklu et al., "Resource
  Efficient 3D Convolutional Neural Networks"): a 3x3x3 stem, then blocks of a depthwise 3x3x3
  and a pointwise 1x1x1 convolution, striding space and time, then global pooling;
* ``frames_gru``: the cheap baseline, a torchvision 2D backbone on every frame (its frozen
  blocks as for the AU detector), the per-frame features fed to a GRU whose last state is read.

Everything else (masked BCE, validation PR-AUC, decision thresholds) is the AU detector's.
Input: (batch, frames, channels, height, width).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facslab.au import NUM_AUS
from facslab.errors import ConfigError
from lightning_modules.au_detector import AUDetector, AUHead

ARCHITECTURES = ("mobilenet3d", "frames_gru")


def _separable3d(channels_in: int, channels_out: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(channels_in, channels_in, 3, stride=stride, padding=1, groups=channels_in, bias=False),
        nn.BatchNorm3d(channels_in), nn.ReLU6(inplace=True),
        nn.Conv3d(channels_in, channels_out, 1, bias=False), nn.BatchNorm3d(channels_out), nn.ReLU6(inplace=True))


class MobileNet3D(nn.Module):
    """(B, T, C, H, W) -> (B, features): a 3D depthwise-separable stack, ``width`` channels at the stem."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        plan = [(width, 2 * width, (1, 2, 2)), (2 * width, 4 * width, (2, 2, 2)), (4 * width, 4 * width, (1, 1, 1)),
                (4 * width, 8 * width, (2, 2, 2)), (8 * width, 8 * width, (1, 1, 1))]
        self.stem = nn.Sequential(nn.Conv3d(in_channels, width, 3, stride=(1, 2, 2), padding=1, bias=False),
                                  nn.BatchNorm3d(width), nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(*[_separable3d(a, b, s) for a, b, s in plan])
        self.features = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x.transpose(1, 2)))  # Conv3d takes (B, C, T, H, W)
        return x.mean(dim=(2, 3, 4))


class FramesGRU(nn.Module):
    """(B, T, C, H, W) -> (B, hidden): a 2D trunk per frame, then a GRU over the frames."""

    def __init__(self, trunk: nn.Module, features: int, hidden: int):
        super().__init__()
        self.trunk, self.gru = trunk, nn.GRU(features, hidden, batch_first=True)
        self.features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames = x.shape[:2]
        per_frame = self.trunk(x.flatten(0, 1)).reshape(batch, frames, -1)
        return self.gru(per_frame)[1][-1]


class TemporalAUDetector(AUDetector):
    """Per-frame AU occurrence from the ``window`` frames ending at it.

    Args:
        architecture: mobilenet3d or frames_gru.
        window: frames per stack (the datamodule's ``window``).
        width: mobilenet3d's stem channels.
        backbone, unfrozen_blocks, weights: frames_gru's 2D trunk (as for the AU detector).
        gru_size: frames_gru's hidden state.
        hidden_size, dropout: the head; lr, betas, weight_decay, lr_schedule: Adam.
        pos_weight, thresholds, image_size, mean, std: as for the AU detector.
    """

    def __init__(
        self,
        architecture: str = "mobilenet3d",
        window: int = 8,
        width: int = 16,
        backbone: str = "resnet18",
        unfrozen_blocks: int = -1,
        gru_size: int = 128,
        hidden_size: int = 128,
        dropout: float = 0.2,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        pos_weight: Sequence[float] | None = None,
        thresholds: Sequence[float] | None = None,
        weights: str | None = None,
        image_size: int = 64,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        lr_schedule: str = "constant",
    ):
        # past AUDetector's __init__ (its backbone and head are not these); super() also gives
        # save_hyperparameters the __class__ cell it reads the arguments through
        super(AUDetector, self).__init__()
        self.save_hyperparameters()
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {architecture!r}")
        if architecture == "mobilenet3d":
            self.backbone = MobileNet3D(len(mean), width)
            self._frozen, self._stages, self._prefix = [], [], 0
            self.feature_input, self.history = False, []
            features = self.backbone.features
        else:
            built = self.init_backbone(backbone, weights, unfrozen_blocks, in_channels=len(mean))
            self.backbone = FramesGRU(built.trunk, built.features, gru_size)
            features = gru_size
        self.head = AUHead(features, hidden_size, dropout)
        weight = torch.as_tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None
        self.loss = nn.BCEWithLogitsLoss(pos_weight=weight, reduction="none")
        self.register_buffer("thresholds", torch.as_tensor(
            thresholds if thresholds is not None else [0.5] * NUM_AUS, dtype=torch.float32))
        self._val_outputs = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def frozen_stages(self) -> list[nn.Module]:
        return []  # stacks are not cached as features: every epoch reads the crops
