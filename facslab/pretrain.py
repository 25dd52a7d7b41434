"""Stage 1: pretraining on CelebA with noisy OpenFace AU labels, as one MLflow run.

Pretraining is the longest stage (hours at 128 px on 2 CPU cores), so it keeps its state after
every epoch under ``<store>/checkpoints/<run id>``: run again with the same settings after an
interruption, it continues that run after its last finished epoch instead of starting over.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning as L
import mlflow

from datamodules import CelebANoisyDataModule
from facslab.config import PretrainConfig
from facslab.evaluation import mean_pr_auc, plain_bce
from facslab.run_records import find_pretraining, fraction_tag, log_curves, log_run_basics, log_weights
from facslab.local_store import store_dir
from facslab.mlflow_store import setup_tracking
from facslab.training import LAST_CHECKPOINT, build_model, check_one_process, fit, predict

log = logging.getLogger(__name__)


def checkpoint_dir(run_id: str) -> Path:
    """Where a pretraining run keeps its resumable state until it finishes (on this machine)."""
    return store_dir() / "checkpoints" / run_id


def interrupted_pretraining(config: PretrainConfig, image_size: int):
    """The newest unfinished pretraining run with these settings that left a checkpoint, or None."""
    run = find_pretraining(config.model.get("backbone", "resnet18"), image_size, config.experiment,
                           config.data.get("fraction", 1.0), config=config.resolved(), finished=False)
    if run is None or not (checkpoint_dir(run.info.run_id) / LAST_CHECKPOINT).exists():
        return None
    return run


def pretrain(config: PretrainConfig) -> str:
    """Train on CelebA-noisy; returns the MLflow run id (weights at ``runs:/<id>/weights/model.pt``)."""
    check_one_process(config.train)  # before the store is touched
    uri = setup_tracking(config.tracking_uri, config.experiment)
    seed = int(config.data.get("seed", 0))
    L.seed_everything(seed, workers=True)
    dm = CelebANoisyDataModule(**config.data)
    dm.setup("fit")
    init_from = config.train.init_from
    model = build_model(config.model, dm, config.train.pos_weight, init_from=init_from)
    hp = model.hparams
    fraction = config.data.get("fraction", 1.0)
    name = config.run_name or f"pretrain {hp.backbone} unfrozen{hp.unfrozen_blocks} frac{fraction:g} {dm.image_size}px"
    interrupted = interrupted_pretraining(config, dm.image_size)
    with mlflow.start_run(run_id=interrupted.info.run_id if interrupted else None,
                          run_name=None if interrupted else name) as run:
        checkpoints = checkpoint_dir(run.info.run_id)
        if interrupted:
            log.warning("pretraining run %s was interrupted: continuing it from %s", run.info.run_id,
                        checkpoints / LAST_CHECKPOINT)
            mlflow.set_tag("resumed", "true")
        else:
            mlflow.set_tags({"backbone": hp.backbone, "image_size": str(dm.image_size),
                             "fraction": fraction_tag(fraction), "unfrozen_blocks": str(hp.unfrozen_blocks)})
            log_run_basics(config.resolved(), dm, stage="pretrain")
            mlflow.set_tag("init_from", init_from or "random")
        result = fit(model, dm, config.train, run_id=run.info.run_id, tracking_uri=uri, checkpoint_dir=checkpoints)
        probs, labels = predict(result.model, dm.val_dataloader())
        mlflow.log_metrics({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                            "epochs_run": result.epochs_run, "val_pr_auc_best": mean_pr_auc(probs, labels),
                            # best_val_loss weighs positives by this fraction's own pos_weight: Fig. 4 compares this
                            "best_val_bce": plain_bce(probs, labels)})
        log_weights(result.model)
        log_curves({"pretrain": result.history}, "plots/training_curves.png", name)
        log.info("pretraining run %s: best val loss %.4f", run.info.run_id, result.best_val_loss)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is finished and holds its weights
    return run.info.run_id
