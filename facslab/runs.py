"""What every training run logs to MLflow, and finding runs again (e.g. the pretraining to start from)."""

from __future__ import annotations

import logging

import mlflow
import torch
import yaml

from datamodules.base import AUFaceDataModule
from facslab import plots
from facslab.tracking import artifact_dir, git_commit, log_table
from lightning_modules.au_detector import AUDetector

log = logging.getLogger(__name__)


def flat_params(prefix: str, values: dict) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flat_params(name, value))
        else:
            out[name] = str(value)[:500]
    return out


def log_run_basics(config: dict, dm: AUFaceDataModule, stage: str) -> None:
    """Resolved config, parameters, git commit, data split and skip report of the active run."""
    mlflow.set_tags({"stage": stage, "git_commit": git_commit(), "datamodule": type(dm).__name__})
    mlflow.log_params(flat_params("", config))
    mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")
    log_table(dm.split_table(), "data/split.csv")
    if len(dm.report):
        log_table(dm.report.to_frame(), "data/skipped.csv")
    mlflow.log_metrics({"data_train": len(dm.positions("train")), "data_val": len(dm.positions("val")),
                        "data_test": len(dm.positions("test")), "data_skipped": len(dm.report)})


def log_weights(model: AUDetector, path: str = "weights") -> None:
    with artifact_dir() as folder:
        torch.save(model.state_dict(), folder / "model.pt")
        mlflow.log_artifact(str(folder / "model.pt"), path)


def log_curves(histories: dict[str, list[dict]], path: str, title: str) -> None:
    if any(histories.values()):
        mlflow.log_figure(plots.training_curves(histories, title), path)


def find_pretraining(backbone: str, image_size: int, experiment: str, fraction: float | None = None) -> str | None:
    """URI of the weights of the newest finished pretraining run for this backbone and input size
    (and fraction of the pretraining data, when given)."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = (f"tags.stage = 'pretrain' and tags.backbone = '{backbone}' and "
             f"tags.image_size = '{image_size}' and attributes.status = 'FINISHED'")
    if fraction is not None:
        query += f" and tags.fraction = '{fraction}'"
    runs = mlflow.search_runs([exp.experiment_id], output_format="list", max_results=1,
                              order_by=["attributes.start_time DESC"], filter_string=query)
    return f"runs:/{runs[0].info.run_id}/weights/model.pt" if runs else None


def resolve_init(init_from: str | None, backbone: str, image_size: int, experiment: str) -> str | None:
    """The weights a run starts from: ``auto`` is the newest pretraining of this backbone and input
    size (None when there is none), anything else is taken as given."""
    if init_from == "auto":
        return find_pretraining(backbone, image_size, experiment)
    return init_from
