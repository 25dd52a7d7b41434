"""Mini-Xception (Arriaga et al., "Real-time Convolutional Neural Networks for Emotion and Gender
Classification", 2017): a stem of two 3x3 convolutions, then four residual modules of
depthwise-separable convolutions, then a 3x3 convolution to the classes and global average
pooling. About 58 k parameters at 7 classes.

Written to match the Keras original layer for layer, so its weights port exactly
(``facslab.ports.keras_fer``): BatchNorm epsilon 1e-3, Keras's momentum 0.99 (PyTorch's 0.01),
unpadded stem convolutions, and TensorFlow's "same" max pooling, which pads only at the bottom and
right when the padding is odd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN = {"eps": 1e-3, "momentum": 0.01}


class TFSameMaxPool(nn.Module):
    """Max pooling with TensorFlow's "same" padding (extra padding at the bottom/right)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel_size - size, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel_size, self.stride)


class SeparableConv2d(nn.Sequential):
    """Keras's SeparableConv2D (depth multiplier 1, "same", no bias): depthwise then pointwise."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False))


class ResidualModule(nn.Module):
    """Two separable convolutions and a same-padded 3x3/2 max pool, plus a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.separable1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, **KERAS_BN)
        self.separable2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, **KERAS_BN)
        self.pool = TFSameMaxPool(3, 2)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, **KERAS_BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.separable1(x)))
        y = self.pool(self.bn2(self.separable2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class Stem(nn.Sequential):
    def __init__(self, in_channels: int = 1, width: int = 8):
        super().__init__(nn.Conv2d(in_channels, width, 3, bias=False), nn.BatchNorm2d(width, **KERAS_BN), nn.ReLU(),
                         nn.Conv2d(width, width, 3, bias=False), nn.BatchNorm2d(width, **KERAS_BN), nn.ReLU())


class ConvClassifierHead(nn.Module):
    """The original's head: a 3x3 convolution to one map per class, globally averaged (logits)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(x)).mean(dim=(2, 3))


class MiniXceptionTrunk(nn.Sequential):
    """Stem and residual modules; outputs the last feature map (``widths[-1]`` channels)."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)):
        modules = [Stem(in_channels)]
        previous = 8
        for width in widths:
            modules.append(ResidualModule(previous, width))
            previous = width
        super().__init__(*modules)
        self.out_channels = previous
