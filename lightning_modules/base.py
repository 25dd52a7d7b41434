"""What every facslab task shares (torchgeo's pattern: a task owns its losses, metrics and
freezing): a backbone with frozen blocks, the frozen-prefix split used by the feature cache,
Adam with an optional one-cycle schedule, and a per-epoch history for the training-curve plots.

A task subclass builds its head and declares its loss (``loss_from_logits``), its outputs
(``outputs_from_logits``), its validation metrics (``validation_metrics``, over the whole
validation epoch) and ``objective``: the validation metric a sweep maximises (and the pruner
watches). The training and validation steps are the same for every task, here.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from facslab.errors import ConfigError
from lightning_modules.backbones import build_backbone, freeze_all_but_last
from lightning_modules.freezing import FrozenBlocks


class BackboneModule(L.LightningModule):
    #: the validation metric a sweep maximises, logged once per validation epoch
    objective: str = "val_loss"
    #: what early stopping and the kept weights follow: (validation metric, "min" | "max"); None:
    #: the objective, maximised (a task keeps the epochs its own score prefers). A task that
    #: selects by something else says why beside its setting.
    selection: tuple[str, str] | None = None

    @classmethod
    def selected_by(cls) -> tuple[str, str]:
        return cls.selection or (cls.objective, "max")
    #: epochs a one-cycle learning-rate schedule spans (None: the fit's max_epochs)
    schedule_epochs: int | None = None
    #: arguments that change the model only under some values of another argument,
    #: ``{argument: (other, values)}``: a sweep refuses to search one where it has no effect
    argument_applies: dict[str, tuple[str, tuple]] = {}
    #: metrics copied into ``history`` at the end of every training epoch
    history_metrics: tuple[str, ...] = ("train_loss", "val_loss")
    #: the model's input is ``(images, landmarks)``, the crops' 68 points beside them (a backbone
    #: that reads face parts; ``init_backbone`` says)
    takes_landmarks: bool = False
    #: train with images and weights in channels-last memory order (``TrainerConfig.channels_last``)
    channels_last: bool = False

    def init_backbone(self, backbone: str, weights: str | None, unfrozen_blocks: int, **options):
        """Build the backbone, freeze all but its last ``unfrozen_blocks`` blocks; returns it."""
        options.setdefault("image_size", int(self.hparams.get("image_size", 224)))
        built = build_backbone(backbone, weights, **options)
        self.backbone = built.trunk
        # plain lists: the modules are registered once, under backbone
        self._frozen = freeze_all_but_last(built, unfrozen_blocks)
        self._stages, self._prefix = built.stages, len(self._frozen)
        self.feature_input = False  # True while training on cached frozen-prefix features
        self.takes_landmarks = "landmarks" in built.inputs
        self.history: list[dict] = []
        return built

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self.feature_input:
            return self.from_frozen(x)
        return self.head(self.backbone(x))

    def frozen_stages(self) -> list[nn.Module]:
        """The backbone's frozen stages, in order (empty when every block trains)."""
        return self._stages[:self._prefix]

    def frozen_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the frozen stages: a function of the image, the weights and the input
        size only (frozen modules run in eval mode), so it can be cached."""
        for stage in self.frozen_stages():
            x = stage(x)
        return x

    def from_frozen(self, features: torch.Tensor) -> torch.Tensor:
        """Outputs from ``frozen_prefix`` outputs: the trainable stages and the head."""
        for stage in self._stages[self._prefix:]:
            features = stage(features)
        return self.head(features)

    def frozen_modules(self) -> list[nn.Module]:
        """Backbone blocks that do not train (input side first)."""
        return list(self._frozen)

    def configure_callbacks(self):
        return [FrozenBlocks()]

    # the memory order is the fit's alone: the saved weights, the export and the apps keep the default
    def on_fit_start(self):
        if self.channels_last:
            self._order_weights(torch.channels_last)

    def on_fit_end(self):
        if self.channels_last:
            self._order_weights(torch.contiguous_format)

    def _order_weights(self, order: torch.memory_format) -> None:
        """The 4-d weights (2-d convolutions') in ``order``, in place (the optimiser keeps them);
        3-d convolutions (the temporal model's) have no channels-last order of that name."""
        for tensor in (*self.parameters(), *self.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=order)

    def _in_memory_order(self, inputs):
        """The images of a batch (4-d, alone or first of a tuple) in the fit's memory order."""
        if not self.channels_last:
            return inputs
        if isinstance(inputs, (tuple, list)):
            return (self._in_memory_order(inputs[0]), *inputs[1:])
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs

    def on_train_epoch_end(self):
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k in self.history_metrics}
        self.history.append({"epoch": self.current_epoch, **metrics})

    # a resumed fit (an interrupted pretraining) continues the curves instead of starting them again
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("history", []))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        # the fused kernel: on a CPU the per-tensor loop costs 10x more per step (20.7 against 1.9 ms
        # for ResNet-18's layer4), which dominated epochs on cached features
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.Adam(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                     weight_decay=self.hparams.weight_decay, fused=fused or None)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        if self.hparams.lr_schedule != "onecycle":
            raise ConfigError(f"lr_schedule must be constant or onecycle, not {self.hparams.lr_schedule!r}")
        # the cycle spans ``schedule_epochs`` (the cross-validation's max_epochs), not the epochs
        # this fit runs: a refit for the best epoch e gets the learning rates its folds had in epochs 1..e
        steps_per_epoch = math.ceil(self.trainer.estimated_stepping_batches / self.trainer.max_epochs)
        epochs = max(self.schedule_epochs or self.trainer.max_epochs, self.trainer.max_epochs)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.hparams.lr,
                                                       total_steps=steps_per_epoch * epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- the steps every task shares -------------------------------------------------------------
    def loss_from_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def validation_metrics(self, outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics over one validation epoch's outputs (``outputs_from_logits``) and labels."""
        raise NotImplementedError

    # a batch is (inputs, labels): inputs are images, (images, landmarks) or cached features
    def training_step(self, batch, batch_idx):
        inputs, labels = batch
        loss = self.loss_from_logits(self(self._in_memory_order(inputs)), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_idx):
        inputs, labels = batch
        logits = self(self._in_memory_order(inputs))
        self.log("val_loss", self.loss_from_logits(logits, labels), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(labels))
        self._val_outputs.append((self.outputs_from_logits(logits).detach(), labels.detach()))

    def on_validation_epoch_end(self):
        if not getattr(self, "_val_outputs", None):
            return
        outputs = torch.cat([p for p, _ in self._val_outputs])
        labels = torch.cat([y for _, y in self._val_outputs])
        self._val_outputs.clear()
        for name, value in self.validation_metrics(outputs, labels).items():
            self.log(name, value, prog_bar=name == self.objective)

    # -- what sweeps, the registry and the apps ask of a task ----------------------------------
    def outputs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """What the task predicts from its raw outputs (probabilities, scores)."""
        return logits

    def predict_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.outputs_from_logits(self(images))
