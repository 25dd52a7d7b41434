"""Stage 1: pretraining on CelebA with noisy OpenFace AU labels, as one MLflow run."""

from __future__ import annotations

import logging
from dataclasses import asdict

import lightning as L
import mlflow

from datamodules import CelebANoisyDataModule
from facslab.config import PretrainConfig
from facslab.evaluation import mean_pr_auc
from facslab.runs import fraction_tag, log_curves, log_run_basics, log_weights
from facslab.tracking import setup_tracking
from facslab.training import build_model, fit, predict

log = logging.getLogger(__name__)


def pretrain(config: PretrainConfig) -> str:
    """Train on CelebA-noisy; returns the MLflow run id (weights at ``runs:/<id>/weights/model.pt``)."""
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
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags({"backbone": hp.backbone, "image_size": str(dm.image_size), "fraction": fraction_tag(fraction),
                         "unfrozen_blocks": str(hp.unfrozen_blocks)})
        log_run_basics(asdict(config), dm, stage="pretrain")
        mlflow.set_tag("init_from", init_from or "random")
        result = fit(model, dm, config.train, run_id=run.info.run_id, tracking_uri=uri)
        probs, labels = predict(result.model, dm.val_dataloader())
        mlflow.log_metrics({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                            "epochs_run": result.epochs_run, "val_pr_auc_best": mean_pr_auc(probs, labels)})
        log_weights(result.model)
        log_curves({"pretrain": result.history}, "plots/training_curves.png", name)
        log.info("pretraining run %s: best val loss %.4f", run.info.run_id, result.best_val_loss)
        return run.info.run_id
