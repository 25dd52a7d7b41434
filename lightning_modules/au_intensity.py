"""AU intensity (0-5, FACS A-E as 1-5) regression: CK+'s graded FACS codes, DISFA's frame
intensities. Uncoded AUs (NaN) are masked out of the loss and the metrics. A sweep maximises the
mean ICC(3,1) over the AUs the validation data grades; MAE is logged beside it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facslab.au import NUM_AUS
from facslab.errors import ConfigError
from facslab.metrics import icc_3_1
from lightning_modules.backbones import SPATIAL_OUTPUT
from lightning_modules.base import BackboneModule

LOSSES = ("mse", "l1", "smooth_l1")
MAX_INTENSITY = 5.0




def masked_regression_loss(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    known = ~torch.isnan(target)
    if not known.any():
        return pred.sum() * 0.0
    functions = {"mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "smooth_l1": nn.functional.smooth_l1_loss}
    if name not in functions:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {name!r}")
    return functions[name](pred[known], target[known])


class AUIntensityRegressor(BackboneModule):
    """Intensity 0-5 of each of the 18 AUs (a sigmoid head scaled to 0-5).

    Args:
        backbone, unfrozen_blocks, weights: as for the AU detector.
        hidden_size, dropout: the head.
        loss: mse, l1 or smooth_l1 (over the known intensities only).
        lr, betas, weight_decay, lr_schedule: Adam.
        image_size, mean, std: the input (from the data).
    """

    objective = "val_icc"
    history_metrics = ("train_loss", "val_loss", "val_icc")

    def __init__(
        self,
        backbone: str = "resnet18",
        unfrozen_blocks: int = 1,
        hidden_size: int = 256,
        dropout: float = 0.2,
        loss: str = "mse",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        weights: str | None = None,
        image_size: int = 64,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
    ):
        super().__init__()
        self.save_hyperparameters()
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        built = self.init_backbone(backbone, weights, unfrozen_blocks, in_channels=len(mean))
        pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)] if backbone in SPATIAL_OUTPUT else []
        self.head = nn.Sequential(*pool, nn.Dropout(dropout), nn.Linear(built.features, hidden_size), nn.LeakyReLU(0.01),
                                  nn.Dropout(dropout), nn.Linear(hidden_size, NUM_AUS))
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def outputs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return MAX_INTENSITY * torch.sigmoid(logits)

    def loss_from_logits(self, logits, target):
        return masked_regression_loss(self.hparams.loss, self.outputs_from_logits(logits), target)

    def validation_metrics(self, pred, target):
        # the test table's definition, on the epoch's outputs (facslab.metrics)
        p, t = pred.detach().float().cpu().numpy(), target.detach().float().cpu().numpy()
        icc = torch.tensor([icc_3_1(p[:, k], t[:, k]) for k in range(t.shape[1])], dtype=pred.dtype, device=pred.device)
        known = ~torch.isnan(target)
        return {"val_icc": torch.nan_to_num(icc[~torch.isnan(icc)].mean(), nan=0.0),
                "val_mae": (pred[known] - target[known]).abs().mean() if known.any() else torch.tensor(0.0)}
