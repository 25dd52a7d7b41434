"""Fitting one task model on one datamodule: the piece pretraining, sweeps and the registry share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.apply_func import move_data_to_device
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from datamodules.base import AUFaceDataModule, FaceDataModule
from lightning_modules.au_detector import AUDetector
from lightning_modules.base import BackboneModule

log = logging.getLogger(__name__)

#: the file a resumable fit keeps its state in (see ``fit``'s ``checkpoint_dir``)
LAST_CHECKPOINT = "last.ckpt"


@dataclass
class TrainerConfig:
    """How long and how to train (the Lightning Trainer's side of a config)."""

    max_epochs: int = 20
    min_epochs: int = 1
    patience: int = 3  # early stopping on validation loss
    progress: bool = True
    deterministic: bool = True
    threads: int | None = None  # torch threads per process (None: torch's default)
    accelerator: str = "auto"  # auto: a GPU when there is one, else the CPU
    devices: int | str = "auto"  # auto: one device (a run trains in one process: check_one_process)
    precision: str = "32-true"  # e.g. 16-mixed or bf16-mixed on a GPU
    #: images and convolution weights in channels-last memory order while training: on a CPU fit
    #: ran 1.07x as fast at 64 px and 1.13x at 128 px (bench/throughput.py). Off by default: its
    #: other rounding moved the demo's held-out F1 from 0.719 to 0.687, below the demo's 0.70
    #: (within the interval, 0.65-0.78), so the demo's figures stay those of the default order
    channels_last: bool = False
    #: train on cached outputs of the frozen blocks (computed once, reused by every epoch, fold and
    #: trial); needs the datamodule's augment: false, since only unaugmented crops can be cached
    feature_cache: bool = False
    #: class tasks: weight the loss by inverse class frequency of the training split
    class_weights: bool = False
    #: any other ``lightning.Trainer`` argument (gradient_clip_val, accumulate_grad_batches,
    #: strategy, ...), checked against its signature when the config is read
    trainer: dict[str, Any] = field(default_factory=dict)


class LogCheckpointedEpochs(Callback):
    """The epoch's checkpoint is written before the logger writes that epoch's training metrics:
    a process killed in between resumes after the epoch, whose metrics the run then never gets.
    The resumed fit writes them from the checkpoint's history, at the step of that epoch's other
    metrics, before its first epoch."""

    def __init__(self, client, run_id: str, prefix: str = ""):
        self.client, self.run_id, self.prefix = client, run_id, prefix

    def on_train_start(self, trainer, module) -> None:
        keys = {name: f"{self.prefix}-{name}" if self.prefix else name for name in module.history_metrics}
        logged = {name: self.client.get_metric_history(self.run_id, key) for name, key in keys.items()}
        steps = max(logged.values(), key=len)  # the metric the kill did not cut short
        for name, key in keys.items():
            for epoch in range(len(logged[name]), min(len(module.history), len(steps))):
                if name in module.history[epoch]:
                    self.client.log_metric(self.run_id, key, module.history[epoch][name],
                                           step=sorted(m.step for m in steps)[epoch])


class KeepBestWeights(Callback):
    """Remembers the weights of the best validation epoch (by ``monitor``: the task's
    ``selected_by()``, by default its objective) and restores them at the end: early
    stopping without writing checkpoints to disk every epoch. Frozen blocks (a task's
    ``frozen_modules()``) are left out of the copy: they stay bit-identical, and copying a frozen
    trunk after every improving epoch cost more than training the head on cached features."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, not {mode!r}")
        self.monitor, self.sign = monitor, 1.0 if mode == "min" else -1.0
        self.best, self.best_epoch, self.state = float("inf"), -1, None
        self.val_loss = float("nan")  # the validation loss of the kept epoch
        self.frozen: tuple[str, ...] = ()  # state-dict prefixes of the frozen modules

    def on_fit_start(self, trainer, module):
        frozen = {id(m) for m in getattr(module, "frozen_modules", lambda: [])()}
        self.frozen = tuple(f"{name}." for name, m in module.named_modules() if id(m) in frozen)

    # on_validation_end, not on_validation_epoch_end: callbacks' epoch-end hooks run before the
    # module's, which logs the whole-epoch metrics (val_ccc, val_pr_auc)
    def on_validation_end(self, trainer, module):
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and not trainer.sanity_checking and self.sign * float(value) < self.best:
            self.best, self.best_epoch = self.sign * float(value), trainer.current_epoch
            self.val_loss = float(trainer.callback_metrics.get("val_loss", float("nan")))
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items() if not k.startswith(self.frozen)}

    # in a resumable fit's checkpoint, so the weights kept before an interruption are not lost
    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "val_loss": self.val_loss, "state": self.state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self.val_loss, self.state = state_dict["val_loss"], state_dict["state"]

    def on_fit_end(self, trainer, module):
        if self.state is not None:
            missing, unexpected = module.load_state_dict(self.state, strict=False)
            if unexpected or any(not k.startswith(self.frozen) for k in missing):
                raise RuntimeError(f"best weights do not match the model: missing {missing}, unexpected {unexpected}")


class _RunLogger(MLFlowLogger):
    """MLFlowLogger writing metrics into an existing run; parameters are logged by the caller once
    per run (Lightning would re-log them per fold, and MLflow refuses a changed parameter)."""

    def log_hyperparams(self, params) -> None:
        pass

    def finalize(self, status: str = "success") -> None:
        pass  # the caller owns the run and ends it


@dataclass
class FitResult:
    model: BackboneModule
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def bce_pos_weight(positive_rate: np.ndarray) -> list[float]:
    """BCE ``pos_weight`` per AU, negatives / positives of the training split, kept in 1-20."""
    rate = np.clip(positive_rate, 0.01, 0.99)
    return [float(v) for v in np.clip((1 - rate) / rate, 1.0, 20.0)]


def build_model(model_args: dict, dm: AUFaceDataModule, pos_weight: bool = True,
                init_from: str | None = None) -> AUDetector:
    """An AUDetector for a set-up datamodule: input size and normalisation from the data, optional
    BCE ``pos_weight`` from the training split's label frequencies, optional initial weights."""
    args = dict(model_args)
    args.update(image_size=dm.image_size, mean=list(dm.mean), std=list(dm.std))
    if pos_weight:
        args["pos_weight"] = bce_pos_weight(dm.positive_rate("train"))
    model = AUDetector(**args)
    if init_from:
        load_weights(model, init_from)
    return model


def load_weights(model: BackboneModule, uri: str) -> None:
    """Initialise a task model from saved weights: a file, or an MLflow artifact / model URI
    (``runs:/<run id>/weights/model.pt``, ``models:/<name>@<alias>``)."""
    path = Path(uri)
    if not path.exists():
        import mlflow

        if uri.startswith("models:/"):
            path = next(Path(mlflow.artifacts.download_artifacts(uri)).rglob("model.pt"))
        else:
            if uri.startswith("runs:/") and uri.rstrip("/").count("/") == 2:
                uri = uri.rstrip("/") + "/weights/model.pt"
            path = Path(mlflow.artifacts.download_artifacts(uri))
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    # The backbone must fit; head layers of another size (a different hidden_size) start fresh.
    reshaped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if any(k.startswith("backbone.") for k in reshaped):
        raise ValueError(f"{uri}: weights do not fit backbone {model.hparams.backbone} ({reshaped[0]} has another shape)")
    state = {k: v for k, v in state.items() if k not in reshaped and not k.startswith("loss.")}
    missing, _ = model.load_state_dict(state, strict=False)
    backbone_missing = [k for k in missing if k.startswith("backbone.")]
    if backbone_missing:
        raise ValueError(f"{uri}: weights do not fit backbone {model.hparams.backbone} "
                         f"({len(backbone_missing)} missing keys, e.g. {backbone_missing[0]})")
    if reshaped:
        log.info("%s: %s re-initialised (other shape)", uri, ", ".join(reshaped))
    log.info("initialised from %s", uri)


def check_one_process(config: TrainerConfig, trainer: L.Trainer | None = None) -> None:
    """Refuse a training Lightning would spread over several processes (DDP: ``train.devices`` 2 or
    -1 on several GPUs, or a cluster launcher's environment; ``auto`` is one device). A run's MLflow
    run, its sweep trial, its pruning, its kept epoch and its curves live in the process that calls
    ``fit``; Lightning's DDP launches the command again in each new process (each would start its
    own run and trial) or trains in spawned ones (whose kept epoch and curves never come back)."""
    from facslab.errors import ConfigError

    if trainer is None:  # only to read what Lightning makes of the settings; it trains nothing
        trainer = L.Trainer(accelerator=config.accelerator, devices=lightning_devices(config), precision=config.precision,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, **config.trainer)
    if trainer.world_size > 1:
        cause = (f"train.devices {config.devices!r}" if lightning_devices(config) != 1 else
                 f"this environment (train.devices 1; strategy {type(trainer.strategy).__name__}, "
                 f"{trainer.num_nodes} node(s): a cluster launcher's variables?)")
        raise ConfigError(f"{cause} makes Lightning train in {trainer.world_size} processes; facslab trains a run in "
                          "one process: set train.devices: 1. A sweep uses several GPUs with one worker per GPU on the "
                          "shared study (CUDA_VISIBLE_DEVICES=k facslab sweep ..., docs/training.md)")


def lightning_devices(config: TrainerConfig) -> int | str:
    """Lightning's ``devices`` for a config: ``auto`` is one device, not Lightning's every GPU."""
    return 1 if config.devices == "auto" else config.devices


def fit(model: BackboneModule, dm: FaceDataModule, config: TrainerConfig, run_id: str | None = None,
        tracking_uri: str | None = None, prefix: str = "", epochs: int | None = None,
        callbacks: list[Callback] = (), checkpoint_dir: Path | None = None) -> FitResult:
    """Train; with a validation split, early-stop on its loss and keep the best epoch's weights.
    ``epochs`` fixes the number of epochs (used when there is no validation split); ``callbacks``
    are added (e.g. Optuna's pruning callback). With ``checkpoint_dir`` the state after every epoch
    (weights, optimiser, early stopping, kept weights, curves) is written to ``last.ckpt`` there,
    and a fit that finds one continues after its epoch."""
    if config.threads:
        torch.set_num_threads(config.threads)
    has_val = len(dm.positions("val")) > 0
    callbacks = list(callbacks)
    monitor, mode = model.selected_by()
    keeper = KeepBestWeights(monitor, mode)
    if has_val and epochs is None:
        callbacks += [EarlyStopping(monitor, patience=config.patience, mode=mode), keeper]
    resume_from = None
    if checkpoint_dir is not None:
        # after the module's epoch-end hook (which records the epoch's curves), overwriting one file
        callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
                                         save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False))
        if (Path(checkpoint_dir) / LAST_CHECKPOINT).exists():
            resume_from = str(Path(checkpoint_dir) / LAST_CHECKPOINT)
    logger = False
    if run_id is not None:
        import mlflow

        # explicit URI: without one Lightning's logger falls back to the refused ./mlruns file store
        logger = _RunLogger(tracking_uri=tracking_uri or mlflow.get_tracking_uri(), run_id=run_id, prefix=prefix)
        if resume_from is not None:
            callbacks.append(LogCheckpointedEpochs(mlflow.MlflowClient(tracking_uri or mlflow.get_tracking_uri()),
                                                   run_id, prefix))
    trainer = L.Trainer(
        max_epochs=epochs or config.max_epochs, min_epochs=min(config.min_epochs, epochs or config.max_epochs),
        accelerator=config.accelerator, devices=lightning_devices(config), precision=config.precision, logger=logger,
        callbacks=callbacks, enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=config.progress, enable_model_summary=False, deterministic=config.deterministic,
        num_sanity_val_steps=0, log_every_n_steps=1,
        limit_val_batches=1.0 if has_val else 0, **config.trainer,
    )
    check_one_process(config, trainer)
    model.schedule_epochs = config.max_epochs  # fixed ``epochs`` stop early in the same schedule
    model.channels_last = config.channels_last
    dm.with_landmarks = model.takes_landmarks
    use_cache = config.feature_cache and bool(model.frozen_stages())
    if config.feature_cache and dm.augment:
        raise ValueError("train.feature_cache needs the datamodule's augment: false (cached features are of "
                         "unaugmented crops); set augment: false (a sweep: datamodule.augment, pretraining: data.augment), or train.feature_cache: false")
    if use_cache and getattr(dm, "mix_halves", 0):
        raise ValueError("train.feature_cache needs the datamodule's mix_halves: 0 (cached features are of "
                         "whole crops); set mix_halves: 0 (a sweep: datamodule.mix_halves), or train.feature_cache: false")
    if run_id is not None:  # what the run really used, not only what was asked for
        import mlflow

        client = mlflow.MlflowClient(tracking_uri or mlflow.get_tracking_uri())
        device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
        cache = ("on (augmentation off)" if use_cache else "off (no frozen stage)" if config.feature_cache
                 else f"off (augmentation {'on' if dm.augment else 'off'})")
        for key, value in {"accelerator": f"{device} x{trainer.num_devices} {trainer.precision}",
                           "feature_cache": cache}.items():
            client.set_tag(run_id, key, value)
    if use_cache:
        from datamodules.features import cached_features

        dm.features = cached_features(model, dm, ("train", "val") if has_val else ("train",), config.progress)
        model.feature_input = True
    try:
        # the checkpoint is this fit's own, written under the store: its datamodule settings hold
        # config classes (e.g. a dataset layout) that a weights-only load refuses
        trainer.fit(model, datamodule=dm, ckpt_path=resume_from, weights_only=False if resume_from else None)
    finally:
        model.feature_input, dm.features, dm.with_landmarks = False, None, False
    if has_val and epochs is None:
        return FitResult(model, keeper.best_epoch, keeper.val_loss, trainer.current_epoch, model.history)
    return FitResult(model, trainer.current_epoch - 1, float("nan"), trainer.current_epoch, model.history)


@torch.inference_mode()
def predict(model: BackboneModule, loader) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, labels) over a loader, in eval mode, on the model's device: the task's
    ``outputs_from_logits`` (AU or class probabilities)."""
    model.eval()
    device = next(model.parameters()).device
    probs, labels = [], []
    for inputs, y in loader:
        probs.append(model.outputs_from_logits(model(move_data_to_device(inputs, device))).float().cpu().numpy())
        labels.append(y.numpy())
    if not probs:
        return np.zeros((0, 18), np.float32), np.zeros((0, 18), np.float32)
    return np.concatenate(probs), np.concatenate(labels)
