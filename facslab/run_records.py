"""What every training run logs to MLflow, and finding runs again (e.g. the pretraining to start from)."""

from __future__ import annotations

import logging

import mlflow
import torch
import yaml
from mlflow.data.sources import LocalArtifactDatasetSource

from datamodules.base import AUFaceDataModule
from facslab import plots
from facslab.errors import UsersMistake
from facslab.mlflow_store import artifact_dir, git_commit, log_dataset_input, log_figure, log_table
from lightning_modules.au_detector import AUDetector

log = logging.getLogger(__name__)


class MissingPretrainingError(UsersMistake, RuntimeError):
    """``init_from: auto`` found no pretraining run to start from."""


def flat_params(prefix: str, values: dict) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flat_params(name, value))
        else:
            out[name] = str(value)[:500]
    return out


def data_tags(dm: AUFaceDataModule) -> dict[str, str]:
    """Which data a run saw: dataset, generated or real, and the digests of the split and of the
    labels."""
    return {"dataset": dm.dataset_name, "data_generated": str(dm.generated).lower(), "split_id": dm.split_id(),
            "label_id": dm.label_id()}


def log_run_basics(config: dict, dm: AUFaceDataModule, stage: str) -> None:
    """Resolved config, parameters, git commit, data split (also as an MLflow dataset input) and
    skip report of the active run."""
    mlflow.set_tags({"stage": stage, "git_commit": git_commit(), "datamodule": type(dm).__name__, **data_tags(dm)})
    mlflow.log_params(flat_params("", config))
    mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")
    split = dm.split_table()
    log_table(split, "data/split.csv")
    # a local source named outright: resolved from a path, MLflow finds two equal local sources and warns (mlflow#9702)
    dataset = mlflow.data.from_pandas(split, source=LocalArtifactDatasetSource(str(dm.root.resolve())), digest=dm.split_id(),
                                      name=f"{dm.dataset_name}{' (generated)' if dm.generated else ''}")
    log_dataset_input(dataset, context=stage)
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
        log_figure(plots.training_curves(histories, title), path)  # closes it: sweeps draw hundreds


def fraction_tag(fraction: float) -> str:
    return str(float(fraction))


#: pretraining config entries that say where and how visibly it runs, not what it learns
RUN_ONLY_PARAMS = ("data.cache_dir", "data.num_workers", "data.preprocess_workers", "data.progress",
                   "train.progress", "train.threads", "experiment", "tracking_uri", "run_name")


def same_settings(run, config: dict) -> bool:
    """Whether a run was logged (``log_run_basics``) with exactly the settings of ``config``, a
    resolved config as a dict (``PretrainConfig.resolved``), apart from ``RUN_ONLY_PARAMS``: both
    ways, so a setting only one side has counts as different."""
    wanted = {k: v for k, v in flat_params("", config).items() if k not in RUN_ONLY_PARAMS}
    logged = {k: v for k, v in run.data.params.items() if k not in RUN_ONLY_PARAMS}
    return logged == wanted


def find_pretraining(backbone: str, image_size: int, experiment: str, fraction: float = 1.0,
                     config: dict | None = None, finished: bool = True):
    """The newest pretraining run (an ``mlflow.entities.Run``) of this backbone, input size and
    fraction of the pretraining data, or None. With ``config``: only a run with its settings
    (``same_settings``). ``finished=False``: a run that did not finish (interrupted or killed)."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = (f"tags.stage = 'pretrain' and tags.backbone = '{backbone}' and "
             f"tags.image_size = '{image_size}' and tags.fraction = '{fraction_tag(fraction)}' "
             f"and attributes.status {'=' if finished else '!='} 'FINISHED'")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list", max_results=200,
                              order_by=["attributes.start_time DESC"], filter_string=query)
    return next((run for run in runs if config is None or same_settings(run, config)), None)


def weights_uri(run) -> str:
    return f"runs:/{run.info.run_id}/weights/model.pt"


def resolve_init(init_from: str | None, backbone: str, image_size: int, experiment: str,
                 fraction: float = 1.0) -> str | None:
    """The weights a run starts from. ``auto``: the newest finished pretraining of this backbone,
    input size and fraction, pinned by its run id; with none, an error that says what to run.
    Anything else is taken as given (None: random weights)."""
    if init_from != "auto":
        return init_from
    run = find_pretraining(backbone, image_size, experiment, fraction)
    if run is None:
        raise MissingPretrainingError(
            f"init_from: auto found no finished pretraining run of {backbone} at {image_size} px on "
            f"{fraction:.0%} of the pretraining data in experiment {experiment!r}. Run:\n"
            f"  facslab pretrain --config configs/pretrain/demo.yaml --config.model.backbone {backbone} "
            f"--config.data.image_size {image_size} --config.data.fraction {fraction:g}\n"
            "or set train.init_from to a weights URI, or to null for random weights.")
    return weights_uri(run)


def init_data(init_from: str | None) -> tuple[str, bool] | None:
    """(dataset, generated) of the run behind ``runs:/<id>/…`` starting weights; None when that
    is not known (random weights, a file, another URI, a run without data tags)."""
    if not init_from or not init_from.startswith("runs:/"):
        return None
    tags = mlflow.get_run(init_from.removeprefix("runs:/").split("/")[0]).data.tags
    if "data_generated" not in tags:
        return None
    return tags.get("dataset", "pretraining"), tags["data_generated"] == "true"
