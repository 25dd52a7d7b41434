"""Frozen blocks stay frozen through ``Trainer.fit``: Lightning's own fine-tuning machinery.

Lightning (>= 2.2) does not call ``LightningModule.train()`` during ``fit``; it saves and restores
each submodule's mode around validation. So freezing cannot live in a ``train()`` override: this
callback freezes the blocks before training (no gradients, BatchNorm statistics not tracked) and
puts them in eval mode at the start of every training epoch, after validation restored the modes.
Frozen parameters and BatchNorm buffers stay bit-identical, and dropout inside a frozen part is
off, so the frozen prefix is a fixed function of the image (what a feature cache needs).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import BaseFinetuning


class FrozenBlocks(BaseFinetuning):
    """Freezes ``pl_module.frozen_modules()`` for the whole fit."""

    def freeze_before_training(self, pl_module) -> None:
        modules = pl_module.frozen_modules()
        if modules:
            self.freeze(modules, train_bn=False)
            for module in modules:
                module.eval()

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        for module in pl_module.frozen_modules():
            module.eval()
