"""The MLflow Model Registry: the final model of a sweep, its one test evaluation, and the
``champion`` alias, which moves only when the new model's cross-validated score beats the
champion's on the same split. The test split is looked at once per version and chooses nothing."""

from __future__ import annotations

import base64
import io
import json
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
from facslab.predictor import CONFIG_FILE, AUPredictor
from facslab.runs import log_curves, log_run_basics
from facslab.tracking import log_figure, log_table, setup_tracking
from facslab.training import build_model, fit

log = logging.getLogger(__name__)
PIP_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "lightning", "mlflow", "dlib-bin",
                    "face-recognition-models", "opencv-python-headless", "pillow", "pandas", "onnxruntime"]


class AUPyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavour: input rows with ``image`` (base64 image file bytes) give one output
    row per detected face: box, AU decisions and probabilities, eye states and the matched emoji."""

    def load_context(self, context):
        from facslab.analysis import FaceAnalyzer

        self.model_dir = Path(context.artifacts["model_dir"])
        self.predictor = AUPredictor.load(self.model_dir)
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


def load_predictor(uri: str, runtime: str = "auto", threads: int | None = None) -> AUPredictor:
    """An AUPredictor from a registered model or run model URI (``models:/facslab-au@champion``),
    a local MLflow model folder (with ``MLmodel``), or a folder saved by ``AUPredictor.save``.
    ``runtime`` and ``threads``: see ``AUPredictor.load``."""
    path = Path(uri)
    if path.is_dir() and not (path / "MLmodel").exists():
        return AUPredictor.load(path, runtime=runtime, threads=threads)
    if not path.exists() and not uri.startswith(("models:/", "runs:/", "mlflow-artifacts:", "file:")):
        raise FileNotFoundError(f"model not found: {uri} (give a models:/ or runs:/ URI, or a model folder)")
    model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if runtime == "auto" and threads is None:
        return model.predictor
    return AUPredictor.load(model.model_dir, runtime=runtime, threads=threads)


def log_predictor(predictor: AUPredictor, registered_name: str | None = None):
    """Log (and register) the predictor as a pyfunc model; its folder carries the ONNX export,
    whose parity with PyTorch is logged to the active run."""
    with tempfile.TemporaryDirectory() as folder:
        model_dir = predictor.save(Path(folder) / "au_model")
        parity = json.loads((model_dir / CONFIG_FILE).read_text())["onnx"]["max_abs_logit_difference"]
        mlflow.log_metric("onnx_max_abs_logit_difference", parity)
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("mlflow_model_code.py")),
            artifacts={"model_dir": str(model_dir)},
            registered_model_name=registered_name, pip_requirements=PIP_REQUIREMENTS,
        )


def test_predictions(predictor: AUPredictor, dm: CKPlusDataModule) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of a predictor on a set-up datamodule's test split."""
    positions = dm.positions("test")
    probs = predictor.predict_aligned(np.asarray(dm.cached.crops[positions]))
    return probs, dm.labels_array()[positions]


@dataclass
class Registration:
    run_id: str
    version: str
    cv_pr_auc: float
    cv_pr_auc_std: float
    test_pr_auc: float
    test_ci: tuple[float, float]
    champion_cv: float | None
    promoted: bool
    reason: str
    table: pd.DataFrame

    def summary(self, config: RegisterConfig) -> str:
        outcome = f"alias {config.alias} moved here" if self.promoted else f"alias {config.alias} kept"
        lo, hi = self.test_ci
        return (f"registered {config.name} version {self.version}: cross-validated PR-AUC {self.cv_pr_auc:.3f} ± "
                f"{self.cv_pr_auc_std:.3f}; {outcome} ({self.reason}). Held-out test subjects, looked at once: "
                f"PR-AUC {self.test_pr_auc:.3f} (95% CI {lo:.3f}-{hi:.3f}), F1 {mean_row(self.table)['f1']:.3f}")


def provenance(dm: CKPlusDataModule, init_from: str | None) -> dict[str, str]:
    """What a model was trained on: every dataset it saw, and whether any of it was real."""
    from facslab.runs import init_data

    pretraining = init_data(init_from)
    seen = [(dm.dataset_name, dm.generated)] + ([pretraining] if pretraining else [])
    datasets = [f"{name} ({'generated' if made else 'real'})" for name, made in seen]
    generated = [made for _, made in seen]
    trained_on = "generated" if all(generated) else ("real" if not any(generated) else "mixed")
    return {"trained_on": trained_on, "datasets": ", ".join(datasets)}


def register_best(config: SweepConfig, study: optuna.Study) -> Registration:
    """Retrain the study's best configuration on the whole training split, evaluate it once on the
    held-out test split, log and register it. The alias moves when the best configuration's
    cross-validated score beats the champion's on the same split: the test split chooses nothing."""
    if config.register is None:
        raise ValueError("the sweep config has register: null")
    setup_tracking(config.tracking_uri, config.experiment)
    best = study.best_trial
    model_args, train = best.user_attrs["model"], best.user_attrs["train"]
    train_config = TrainConfig(**train)
    init_from = best.user_attrs["init_from"]  # pinned when the study started
    thresholds = best.user_attrs["thresholds"]
    epochs = max(1, int(best.user_attrs["epochs"]))
    cv, cv_std = float(best.value), float(best.user_attrs.get("cv_std", float("nan")))
    L.seed_everything(int(config.data.get("seed", 0)), workers=True)
    dm = CKPlusDataModule(**{**config.data, "fold": None})
    dm.setup("fit")
    split_id = dm.split_id()
    parent = study.user_attrs.get("mlflow_parent_run_id")
    name = f"final {config.study} trial {best.number:03d}"
    with mlflow.start_run(run_name=name, nested=parent is not None, parent_run_id=parent) as run:
        origin = provenance(dm, init_from)
        mlflow.set_tags({"backbone": model_args.get("backbone", "resnet18"), "trial": str(best.number),
                         "init_from": init_from or "random", "study": config.study, **origin})
        log_run_basics({"model": model_args, "train": train, "data": config.data, "epochs": epochs,
                        "study": config.study, "trial": best.number}, dm, stage="final")
        mlflow.log_metrics({"cv_pr_auc": cv, "cv_pr_auc_std": cv_std})
        model = build_model(model_args, dm, train_config.pos_weight, init_from=init_from)
        result = fit(model, dm, train_config, run_id=run.info.run_id, epochs=epochs)
        model.thresholds.copy_(model.thresholds.new_tensor(thresholds))
        predictor = AUPredictor(result.model, dm.spec, provenance=origin)
        probs, labels = test_predictions(predictor, dm)
        # the one look at the test split: reported, never used to choose anything
        subjects = dm.samples.loc[dm.positions("test"), "subject"].to_numpy()
        table = per_au_metrics(probs, labels, predictor.thresholds, groups=subjects)
        mean = mean_row(table)
        lo, hi = float(mean["pr_auc_lo"]), float(mean["pr_auc_hi"])
        mlflow.log_metrics({**{f"test_{k}": float(mean[k]) for k in ("precision", "recall", "f1", "pr_auc")},
                            "test_pr_auc_ci_lo": lo, "test_pr_auc_ci_hi": hi,
                            "test_f1_ci_lo": float(mean["f1_lo"]), "test_f1_ci_hi": float(mean["f1_hi"])})
        log_table(table, "metrics/test_per_au.csv")
        log_figure(plots.pr_curves(probs, labels, "test PR curves"), "plots/test_pr_curves.png")
        log_curves({"final": result.history}, "plots/training_curves.png", name)
        champion = champion_record(config)
        promoted, reason = promotion(cv, split_id, champion)
        info = log_predictor(predictor, config.register.name)
        version = str(info.registered_model_version)
        client = MlflowClient()
        if promoted:
            client.set_registered_model_alias(config.register.name, config.register.alias, version)
        for key, value in {"cv_pr_auc": repr(cv), "cv_pr_auc_std": f"{cv_std:.4f}", "split_id": split_id,
                           "test_pr_auc": f"{mean['pr_auc']:.4f}", "test_pr_auc_ci95": f"{lo:.4f}-{hi:.4f}",
                           "study": config.study, "trial": str(best.number), "init_from": init_from or "random",
                           **origin}.items():
            client.set_model_version_tag(config.register.name, version, key, value)
        mlflow.set_tags({"registered_version": version, "promoted": str(promoted), "promotion": reason})
        log.info("registered %s version %s: %s", config.register.name, version, reason)
        return Registration(run.info.run_id, version, cv, cv_std, float(mean["pr_auc"]), (lo, hi),
                            None if champion is None else champion["cv"], promoted, reason, table)


def champion_record(config: SweepConfig) -> dict | None:
    """The current champion's recorded cross-validated score and split id (no new test look)."""
    try:
        version = MlflowClient().get_model_version_by_alias(config.register.name, config.register.alias)
    except MlflowException:
        return None
    tags = version.tags
    cv = float(tags["cv_pr_auc"]) if "cv_pr_auc" in tags else None
    return {"version": version.version, "cv": cv, "split_id": tags.get("split_id")}


def promotion(cv: float, split_id: str, champion: dict | None) -> tuple[bool, str]:
    """Like with like: cross-validated scores on the same split."""
    if champion is None:
        return True, "no champion yet"
    if champion["cv"] is None or champion["split_id"] != split_id:
        return False, (f"split mismatch: champion version {champion['version']} was cross-validated on split "
                       f"{champion['split_id']}, this model on {split_id}; not comparable, not promoted")
    if cv > champion["cv"]:
        return True, f"cross-validated PR-AUC {cv:.4f} beats the champion's {champion['cv']:.4f} on split {split_id}"
    return False, f"cross-validated PR-AUC {cv:.4f} does not beat the champion's {champion['cv']:.4f} on split {split_id}"
