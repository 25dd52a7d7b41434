"""AU detection and valence/arousal regression from one backbone (the seed's VGG/ResNet
multi-task). Outputs 18 AU logits and 2 affect values; a dataset annotates either part or both,
and the missing part is NaN, masked out of the loss and the metrics (``AUAffectDataModule``
mixes CK+'s AUs with AffectNet's valence/arousal). A sweep maximises the mean of the validation
AU PR-AUC and the valence/arousal CCC."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facslab.au import NUM_AUS
from facslab.errors import ConfigError
from facslab.metrics import concordance
from lightning_modules.au_detector import AUDetector, AUHead, au_pr_auc

AFFECT = 2


class AUAffectModel(AUDetector):
    """Args: as ``AUDetector``, plus ``affect_weight``: the valence/arousal loss's weight against
    the AU BCE; ``affect_loss``: ccc or mse."""

    objective = "val_au_affect"
    history_metrics = ("train_loss", "val_loss", "val_pr_auc", "val_ccc", "val_au_affect")

    def __init__(
        self,
        backbone: str = "resnet18",
        unfrozen_blocks: int = 1,
        hidden_size: int = 256,
        dropout: float = 0.2,
        affect_weight: float = 1.0,
        affect_loss: str = "ccc",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        pos_weight: Sequence[float] | None = None,
        thresholds: Sequence[float] | None = None,
        weights: str | None = None,
        image_size: int = 224,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        lr_schedule: str = "constant",
    ):
        super().__init__(backbone, unfrozen_blocks, hidden_size, dropout, lr, betas, weight_decay, pos_weight,
                         thresholds, weights, image_size, mean, std, lr_schedule)
        self.save_hyperparameters()
        if affect_loss not in ("ccc", "mse"):
            raise ConfigError(f"affect_loss must be ccc or mse, not {affect_loss!r}")
        self.head = AUHead(self.head.net[1].in_features, hidden_size, dropout, outputs=NUM_AUS + AFFECT)

    def outputs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.sigmoid(logits[:, :NUM_AUS]), torch.tanh(logits[:, NUM_AUS:])], 1)

    def affect_loss(self, affect: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(target).any(1)
        if known.sum() < 2:
            return affect.sum() * 0.0
        if self.hparams.affect_loss == "mse":
            return nn.functional.mse_loss(affect[known], target[known])
        return 1 - concordance(affect[known], target[known]).mean()

    def masked_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        au = super().masked_loss(logits[:, :NUM_AUS], labels[:, :NUM_AUS])
        affect = self.affect_loss(torch.tanh(logits[:, NUM_AUS:]), labels[:, NUM_AUS:])
        return au + self.hparams.affect_weight * affect

    def validation_metrics(self, outputs, labels):
        pr_auc = au_pr_auc(outputs[:, :NUM_AUS], labels[:, :NUM_AUS])
        affect, target = outputs[:, NUM_AUS:], labels[:, NUM_AUS:]
        known = ~torch.isnan(target).any(1)
        ccc = concordance(affect[known], target[known]).mean() if known.sum() >= 2 else torch.tensor(0.0)
        return {"val_pr_auc": pr_auc, "val_ccc": ccc, "val_au_affect": (pr_auc + ccc) / 2}
