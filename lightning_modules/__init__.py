"""LightningModules, one per task (model, loss, validation metrics) on ``base.BackboneModule``:
the backbone, frozen blocks and the shared training steps; ``backbones`` builds every family."""
