"""The AU detector: a torchvision backbone, the report's small head, BCE loss and AU metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics.functional.classification import binary_average_precision

from facslab.au import AU_LABELS, NUM_AUS
from lightning_modules.base import BackboneModule


class AUHead(nn.Module):
    """features -> hidden fully connected layer with LeakyReLU -> one logit per AU."""

    def __init__(self, in_features: int, hidden_size: int = 256, dropout: float = 0.2, outputs: int = NUM_AUS):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden_size), nn.LeakyReLU(0.01),
                                 nn.Dropout(dropout), nn.Linear(hidden_size, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def au_pr_auc(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean PR-AUC over the AUs, each over its known labels (NaN: not coded); an AU with no
    positives has no PR-AUC and is left out."""
    ap = [binary_average_precision(probs[known, k], labels[known, k].int())
          for k in range(labels.shape[1]) for known in [~torch.isnan(labels[:, k])] if (labels[known, k] == 1).any()]
    return torch.stack(ap).mean() if ap else torch.tensor(0.0)


class AUDetector(BackboneModule):
    """Multi-label AU detection; a sweep maximises the mean validation PR-AUC.

    Args:
        backbone: torchvision model name (resnet18, vgg16, alexnet, ...).
        unfrozen_blocks: how many of the backbone's last blocks train; the rest is frozen (-1: all train).
        hidden_size, dropout: the head.
        lr, betas, weight_decay: Adam.
        lr_schedule: ``constant``, or ``onecycle`` (warm up to ``lr`` then anneal over the fit's
            steps: far fewer epochs for the same loss on a CPU budget).
        pos_weight: per-AU BCE positive weights (e.g. negatives / positives), or None.
        thresholds: per-AU decision thresholds (default 0.5), chosen later on validation data.
        weights: local backbone weights file or a TORCH_HOME-cached torchvision weights name.
        image_size, mean, std: what the model expects as input (stored with it for the apps).
    """

    objective = "val_pr_auc"
    history_metrics = ("train_loss", "val_loss", "val_pr_auc")

    def __init__(
        self,
        backbone: str = "resnet18",
        unfrozen_blocks: int = 1,
        hidden_size: int = 256,
        dropout: float = 0.2,
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
        super().__init__()
        self.save_hyperparameters()
        built = self.init_backbone(backbone, weights, unfrozen_blocks)
        self.head = AUHead(built.features, hidden_size, dropout)
        weight = torch.as_tensor(pos_weight, dtype=torch.float32) if pos_weight is not None else None
        self.loss = nn.BCEWithLogitsLoss(pos_weight=weight, reduction="none")
        self.register_buffer("thresholds", torch.as_tensor(
            thresholds if thresholds is not None else [0.5] * NUM_AUS, dtype=torch.float32))
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def masked_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE over the known labels only: NaN (not coded, BP4D's 9) is neither positive nor negative."""
        known = ~torch.isnan(labels)
        if bool(known.all()):  # nothing to mask: BCE's own fused mean (the same gradients, bit for bit, as before masking)
            return nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.loss.pos_weight)
        losses = self.loss(logits, torch.nan_to_num(labels))
        return (losses * known).sum() / known.sum().clamp(min=1)

    def loss_from_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.masked_loss(logits, labels)

    def validation_metrics(self, outputs, labels):
        return {"val_pr_auc": au_pr_auc(outputs, labels)}

    def outputs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    @property
    def au_labels(self) -> tuple[str, ...]:
        return AU_LABELS
