"""Valence and arousal regression (AffectNet's continuous labels, in [-1, 1]).

The loss is 1 - CCC (concordance correlation, the field's headline metric, which rewards getting
the scale and offset right as well as the ranking), MSE, or their sum; a sweep maximises the
mean validation CCC of valence and arousal. RMSE, Pearson correlation and sign agreement (SAGR)
are logged beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facslab.emotions import DIMENSIONS  # noqa: F401 (the axes, also imported from here)
from facslab.errors import ConfigError
from facslab.metrics import concordance
from lightning_modules.backbones import SPATIAL_OUTPUT
from lightning_modules.base import BackboneModule

LOSSES = ("ccc", "mse", "ccc+mse")




def regression_loss(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if name == "ccc":
        return 1 - concordance(pred, target).mean()
    if name == "mse":
        return nn.functional.mse_loss(pred, target)
    if name == "ccc+mse":
        return 1 - concordance(pred, target).mean() + nn.functional.mse_loss(pred, target)
    raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {name!r}")


class ValenceArousalRegressor(BackboneModule):
    """Valence and arousal of a face crop (a tanh head keeps both in [-1, 1]).

    Args:
        backbone, unfrozen_blocks, weights: as for the other tasks.
        dropout: before the head.
        loss: ccc, mse or ccc+mse.
        lr, betas, weight_decay, lr_schedule: Adam.
        image_size, channels, mean, std: the input (from the data).
    """

    objective = "val_ccc"
    # epochs are chosen by the objective (the base class's default): the loss can be MSE, which a
    # model shrunk towards the mean keeps low (on the 2026-11-30 demo the lowest-MSE epoch had CCC
    # 0.115 and a later one 0.325)
    history_metrics = ("train_loss", "val_loss", "val_ccc")

    def __init__(
        self,
        backbone: str = "resnet18",
        unfrozen_blocks: int = -1,
        dropout: float = 0.2,
        loss: str = "ccc",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        weights: str | None = None,
        image_size: int = 64,
        channels: int = 3,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
    ):
        super().__init__()
        self.save_hyperparameters()
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        built = self.init_backbone(backbone, weights, unfrozen_blocks, in_channels=channels)
        pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)] if backbone in SPATIAL_OUTPUT else []
        self.head = nn.Sequential(*pool, nn.Dropout(dropout), nn.Linear(built.features, len(DIMENSIONS)), nn.Tanh())
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def loss_from_logits(self, pred, target):
        return regression_loss(self.hparams.loss, pred, target)  # the tanh head's outputs are the prediction

    def validation_metrics(self, pred, target):
        ccc = concordance(pred, target)
        return {"val_ccc": ccc.mean(), **{f"val_ccc_{name}": ccc[k] for k, name in enumerate(DIMENSIONS)},
                "val_rmse": torch.sqrt(((pred - target) ** 2).mean())}
