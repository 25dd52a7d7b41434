"""Typed configs for pretraining, sweeps and registration; read from YAML by jsonargparse, so any
field can also be overridden on the command line (``--train.max_epochs 2``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from facslab.training import TrainerConfig


@dataclass
class TrainConfig(TrainerConfig):
    pos_weight: bool = True  # BCE pos_weight from the training split's label frequencies
    threshold_policy: str = "f1"  # fixed | f1: per-AU thresholds chosen on validation predictions
    init_from: str | None = "auto"  # auto: latest pretraining run of the same backbone; a URI; None


@dataclass
class PretrainConfig:
    """Pretraining on CelebA with noisy OpenFace labels."""

    data: dict[str, Any] = field(default_factory=dict)  # CelebANoisyDataModule arguments
    model: dict[str, Any] = field(default_factory=dict)  # AUDetector arguments
    train: TrainConfig = field(default_factory=lambda: TrainConfig(init_from=None))
    experiment: str = "facslab"
    tracking_uri: str | None = None
    run_name: str | None = None


@dataclass
class RegisterConfig:
    name: str = "facslab-au"  # registered model name
    alias: str = "champion"


@dataclass
class SweepConfig:
    """An Optuna study over the fine-tuning on CK+, scored by cross-validated PR-AUC."""

    study: str = "ckplus-au"
    data: dict[str, Any] = field(default_factory=dict)  # CKPlusDataModule arguments (no fold)
    model: dict[str, Any] = field(default_factory=dict)  # fixed AUDetector arguments
    train: TrainConfig = field(default_factory=TrainConfig)
    #: searched parameters: ``{name: {choices: [...]}}`` or ``{name: {low, high, log}}``; a name is
    #: an AUDetector argument or a ``train`` field (threshold_policy, pos_weight).
    search: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_trials: int = 10  # total over all runs of the study (resumed studies count earlier trials)
    storage: str | None = None  # None: a journal file under mlruns/optuna; or a database URL
    sampler_seed: int = 0
    pruner: str = "wilcoxon"  # wilcoxon (meant for k-fold scores) | median | none
    experiment: str = "facslab"
    tracking_uri: str | None = None
    register: RegisterConfig | None = field(default_factory=RegisterConfig)  # None: do not register

    def to_dict(self) -> dict:
        return asdict(self)
