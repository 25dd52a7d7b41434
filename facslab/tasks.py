"""Tasks: what sweeps, the registry, reports and apps need to know about a kind of model, so that
one sweep, one registry and one report serve them all (a new task is one module: a
LightningModule, a ``Task`` and a ``TaskPredictor``; see docs/tasks.md).

A task says which LightningModule it trains and which arguments it derives from the data, how a
fold is scored (the objective a sweep maximises), what is summarised over the validation
predictions (and kept on the trial: the AU task's decision thresholds), how the test split is
evaluated (once, at registration), and how the trained model is packaged for the apps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import datamodules
from facslab import plots
from facslab.au import NUM_AUS
from facslab.evaluation import (affect_metrics, au_affect_interval, choose_thresholds, class_free_mean, class_row,
                                confusion, intensity_metrics, mean_pr_auc, mean_row, per_au_metrics, per_class_metrics)
from facslab.held_out import held_out_outputs, held_out_subjects, part_attention_on_test_faces, saliency_on_test_faces
from facslab.name_tables import import_path, register
from facslab.predictor import (AUAffectPredictor, AUIntensityPredictor, AUPredictor, EmotionPredictor, TaskPredictor,
                               TemporalAUPredictor, ValenceArousalPredictor)
from facslab.training import bce_pos_weight
from lightning_modules.au_affect import AUAffectModel
from lightning_modules.au_detector import AUDetector
from lightning_modules.au_intensity import AUIntensityRegressor
from lightning_modules.base import BackboneModule
from lightning_modules.emotion_classifier import EmotionClassifier
from lightning_modules.temporal import TemporalAUDetector
from lightning_modules.valence_arousal import ValenceArousalRegressor

@dataclass
class Evaluation:
    """Predictions summarised: ``metrics`` to log, ``tables`` and ``figures`` (artifact path ->
    object) to log, ``attrs`` to keep on the trial (chosen on validation data only), ``score``
    and ``interval``: the headline figure and its 95 % interval."""

    score: float
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    interval: tuple[float, float] = (float("nan"), float("nan"))
    secondary: str = ""  # e.g. "F1 0.71" for the registration line
    predictions: tuple[np.ndarray, np.ndarray] | None = None  # (outputs, labels) of the test split


#: task name -> its description, filled as the classes are defined (``Task.__init_subclass__``)
TASKS: dict[str, Task] = {}


class Task:
    """One kind of model, described once: every layer (sweeps, registry, report, apps) reads this.

    A subclass that sets ``name`` registers itself (defining the class is registering it); a task
    outside the project is named by its import path (``mypackage.tasks.SmileTask``) in a sweep
    config, and its models are loaded by their predictor's import path, saved with them."""

    name: str
    module_class: type[BackboneModule]
    predictor_class: type[TaskPredictor]
    default_datamodule: str
    registered_name: str
    metric: str  # the objective without its ``val_`` prefix: pr_auc, accuracy
    metric_label: str  # for people: PR-AUC, accuracy
    #: module arguments the training code derives from the data: never set in a config
    derived_model_args: tuple[str, ...] = ("image_size", "mean", "std")
    #: ``train`` fields a sweep may search (they change the objective)
    searchable_train_keys: tuple[str, ...] = ()
    #: whether ``train.init_from: auto`` starts trials from the AU pretraining of their backbone and size
    starts_from_au_pretraining = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a subclass that keeps its parent's name does not take it over
            register(TASKS, cls.name, cls, cls(), "task")

    @property
    def objective(self) -> str:
        return self.module_class.objective

    def datamodule_class(self, name: str | None = None):
        """A ``datamodules`` class by name, or any datamodule by its import path."""
        name = name or self.default_datamodule
        if "." in name:
            import lightning as L

            found = import_path(name, "datamodule")
            if not (isinstance(found, type) and issubclass(found, L.LightningDataModule)):
                raise ValueError(f"datamodule {name!r} is not a LightningDataModule class")
            return found
        if not hasattr(datamodules, name):
            known = [n for n in datamodules.__all__]
            raise ValueError(f"unknown datamodule {name!r}; known: {', '.join(known)}, or an import path")
        return getattr(datamodules, name)

    def build_model(self, model_args: dict, dm, train, init_from: str | None) -> BackboneModule:
        raise NotImplementedError

    def fold_score(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        raise NotImplementedError

    def summarise_validation(self, outputs: np.ndarray, labels: np.ndarray, dm, train) -> Evaluation:
        raise NotImplementedError

    def apply(self, model: BackboneModule, attrs: dict) -> None:
        """Put what was chosen on validation data (``summarise_validation``'s attrs) into the model."""

    def evaluate_test(self, predictor: TaskPredictor, dm) -> Evaluation:
        raise NotImplementedError

    def model_default(self, name: str):
        import inspect

        return inspect.signature(self.module_class.__init__).parameters[name].default

    def model_value(self, model_args: dict, name: str):
        """A module argument as the model will have it: given, or the module's default."""
        return model_args.get(name, self.model_default(name))

    def tags(self, model_args: dict) -> dict[str, str]:
        return {"task": self.name, "backbone": str(self.model_value(model_args, "backbone")),
                "unfrozen_blocks": str(self.model_value(model_args, "unfrozen_blocks"))}

    def run_name(self, number: int, model_args: dict) -> str:
        return (f"trial {number:03d} {self.model_value(model_args, 'backbone')} "
                f"unfrozen{self.model_value(model_args, 'unfrozen_blocks')} lr{self.model_value(model_args, 'lr'):.1e}")

    def resolve_init(self, setting: str | None, backbone: str, image_size: int, experiment: str,
                     fraction: float) -> str | None:
        """The starting weights of a sweep's trials (``train.init_from``): a URI, or None."""
        if setting == "auto" and not self.starts_from_au_pretraining:
            raise ValueError(f"train.init_from: auto finds AU pretraining runs; the {self.name} task has no "
                             "pretraining stage: give a weights URI, or null (and model.weights, e.g. fer)")
        from facslab.run_records import resolve_init

        return resolve_init(setting, backbone, image_size, experiment, fraction)


class AUTask(Task):
    """Multi-label AU detection, scored by mean PR-AUC; per-AU thresholds are chosen after the
    cross-validation on the out-of-fold predictions (they do not change PR-AUC, so they are never
    searched)."""

    name, module_class, predictor_class = "au", AUDetector, AUPredictor
    default_datamodule, registered_name = "CKPlusDataModule", "facslab-au"
    metric, metric_label = "pr_auc", "PR-AUC"
    derived_model_args = ("image_size", "mean", "std", "pos_weight", "thresholds")
    starts_from_au_pretraining = True
    searchable_train_keys = ("pos_weight",)

    def build_model(self, model_args, dm, train, init_from):
        from facslab.training import build_model

        return build_model(model_args, dm, train.pos_weight, init_from=init_from)

    def run_name(self, number, model_args):
        return f"{super().run_name(number, model_args)} h{self.model_value(model_args, 'hidden_size')}"

    def fold_score(self, outputs, labels):
        return mean_pr_auc(outputs, labels)

    def summarise_validation(self, outputs, labels, dm, train):
        thresholds = choose_thresholds(outputs, labels, train.threshold_policy)
        table = per_au_metrics(outputs, labels, thresholds)
        mean = mean_row(table)
        metrics = {"oof_pr_auc": float(mean["pr_auc"]), "oof_f1": float(mean["f1"]),
                   "oof_precision": float(mean["precision"]), "oof_recall": float(mean["recall"])}
        metrics.update({f"oof_pr_auc_AU{r.au.replace('/', '_')}": float(r.pr_auc)
                        for r in table.itertuples() if r.au != "mean" and not np.isnan(r.pr_auc)})
        return Evaluation(float(mean["pr_auc"]), metrics, {"metrics/oof_per_au.csv": table},
                          {"plots/pr_curves.png": plots.pr_curves(outputs, labels, "out-of-fold PR curves")},
                          {"thresholds": thresholds.tolist(), "threshold_policy": train.threshold_policy})

    def apply(self, model, attrs):
        model.thresholds.copy_(model.thresholds.new_tensor(attrs["thresholds"]))

    def evaluate_test(self, predictor, dm):
        probs, labels = held_out_outputs(predictor, dm)
        table = per_au_metrics(probs, labels, predictor.thresholds, groups=held_out_subjects(dm))
        mean = mean_row(table)
        lo, hi = float(mean["pr_auc_lo"]), float(mean["pr_auc_hi"])
        metrics = {**{f"test_{k}": float(mean[k]) for k in ("precision", "recall", "f1", "pr_auc")},
                   "test_pr_auc_ci_lo": lo, "test_pr_auc_ci_hi": hi,
                   "test_f1_ci_lo": float(mean["f1_lo"]), "test_f1_ci_hi": float(mean["f1_hi"])}
        return Evaluation(float(mean["pr_auc"]), metrics, {"metrics/test_per_au.csv": table},
                          {"plots/test_pr_curves.png": plots.pr_curves(probs, labels, "test PR curves"),
                           **saliency_on_test_faces(predictor, dm)},
                          interval=(lo, hi), secondary=f"F1 {mean['f1']:.3f}", predictions=(probs, labels))


class EmotionTask(Task):
    """Multi-class emotions, scored by accuracy (top-2, macro F1 and per-class recall beside it)."""

    name, module_class, predictor_class = "emotion", EmotionClassifier, EmotionPredictor
    default_datamodule, registered_name = "FER2013DataModule", EmotionPredictor.registered_name
    metric, metric_label = "accuracy", "accuracy"
    derived_model_args = ("image_size", "mean", "std", "channels", "classes", "class_weights")
    searchable_train_keys = ("class_weights",)

    def build_model(self, model_args, dm, train, init_from):
        from facslab.training import load_weights

        args = {**model_args, "image_size": dm.image_size, "mean": list(dm.mean), "std": list(dm.std),
                "channels": dm.channels, "classes": list(dm.classes)}
        if train.class_weights:
            counts = np.bincount(dm.labels_array()[dm.positions("train")], minlength=len(dm.classes)).astype(float)
            weights = counts.sum() / np.clip(counts, 1, None) / len(counts)
            args["class_weights"] = [float(w) for w in weights]
        model = EmotionClassifier(**args)
        if init_from:
            load_weights(model, init_from)
        return model

    def fold_score(self, outputs, labels):
        return float((outputs.argmax(1) == labels).mean()) if len(labels) else float("nan")

    def summarise_validation(self, outputs, labels, dm, train):
        table = per_class_metrics(outputs, labels, dm.classes)
        overall, mean = class_row(table, "overall"), class_row(table, "mean")
        metrics = {"oof_accuracy": float(overall["top1"]), "oof_top2_accuracy": float(overall["top2"]),
                   "oof_macro_f1": float(mean["f1"]), "oof_mean_class_accuracy": float(mean["top1"])}
        metrics.update({f"oof_recall_{r['class']}": float(r["top1"]) for _, r in table.iterrows()
                        if r["class"] not in ("mean", "overall") and not np.isnan(r["top1"])})
        figure = plots.confusion_matrix(confusion(outputs, labels, len(dm.classes)), dm.classes,
                                        "validation confusion matrix")
        return Evaluation(float(overall["top1"]), metrics, {"metrics/validation_per_class.csv": table},
                          {"plots/confusion_matrix.png": figure})

    def evaluate_test(self, predictor, dm):
        probs, labels = held_out_outputs(predictor, dm)
        table = per_class_metrics(probs, labels, dm.classes, groups=held_out_subjects(dm))
        overall, mean = class_row(table, "overall"), class_row(table, "mean")
        metrics = {"test_accuracy": float(overall["top1"]), "test_top2_accuracy": float(overall["top2"]),
                   "test_macro_f1": float(mean["f1"]), "test_mean_class_accuracy": float(mean["top1"]),
                   "test_accuracy_ci_lo": float(overall["top1_lo"]), "test_accuracy_ci_hi": float(overall["top1_hi"])}
        figure = plots.confusion_matrix(confusion(probs, labels, len(dm.classes)), dm.classes, "test confusion matrix")
        return Evaluation(float(overall["top1"]), metrics, {"metrics/test_per_class.csv": table,
                                                            **part_attention_on_test_faces(predictor, dm)},
                          {"plots/test_confusion_matrix.png": figure, **saliency_on_test_faces(predictor, dm)},
                          interval=(float(overall["top1_lo"]), float(overall["top1_hi"])),
                          secondary=f"top-2 {overall['top2']:.3f}, macro F1 {mean['f1']:.3f}", predictions=(probs, labels))


class ValenceArousalTask(Task):
    """Valence and arousal regression, scored by the mean CCC of the two (RMSE, PCC and SAGR
    beside it)."""

    name, module_class, predictor_class = "valence_arousal", ValenceArousalRegressor, ValenceArousalPredictor
    default_datamodule, registered_name = "AffectNetDataModule", "facslab-valence-arousal"
    metric, metric_label = "ccc", "CCC"
    derived_model_args = ("image_size", "mean", "std", "channels")

    def build_model(self, model_args, dm, train, init_from):
        from facslab.training import load_weights

        if getattr(dm, "target", None) != "valence_arousal":
            raise ValueError(f"the valence_arousal task needs a datamodule with target: valence_arousal "
                             f"({type(dm).__name__} gives {getattr(dm, 'target', 'class labels')})")
        model = ValenceArousalRegressor(**{**model_args, "image_size": dm.image_size, "mean": list(dm.mean),
                                           "std": list(dm.std), "channels": dm.channels})
        if init_from:
            load_weights(model, init_from)
        return model

    def fold_score(self, outputs, labels):
        return float(class_free_mean(affect_metrics(outputs, labels, n_boot=0), "ccc"))

    def summarise_validation(self, outputs, labels, dm, train):
        table = affect_metrics(outputs, labels, n_boot=0)
        metrics = {f"oof_{m}_{r.dimension}": float(getattr(r, m)) for r in table.itertuples() for m in ("rmse", "pcc", "ccc", "sagr")}
        figure = plots.valence_arousal_scatter(outputs, labels, "validation: predicted vs annotated")
        return Evaluation(class_free_mean(table, "ccc"), metrics, {"metrics/validation_affect.csv": table},
                          {"plots/valence_arousal.png": figure})

    def evaluate_test(self, predictor, dm):
        pred, true = held_out_outputs(predictor, dm)
        table = affect_metrics(pred, true, groups=held_out_subjects(dm))
        mean = table[table["dimension"] == "mean"].iloc[0]
        metrics = {f"test_{m}_{r.dimension}": float(getattr(r, m)) for r in table.itertuples() for m in ("rmse", "pcc", "ccc", "sagr")}
        metrics.update(test_ccc=float(mean["ccc"]), test_ccc_ci_lo=float(mean["ccc_lo"]), test_ccc_ci_hi=float(mean["ccc_hi"]))
        figure = plots.valence_arousal_scatter(pred, true, "test: predicted vs annotated")
        return Evaluation(float(mean["ccc"]), metrics, {"metrics/test_affect.csv": table},
                          {"plots/test_valence_arousal.png": figure, **saliency_on_test_faces(predictor, dm)}, interval=(float(mean["ccc_lo"]), float(mean["ccc_hi"])),
                          secondary=f"RMSE {mean['rmse']:.3f}, SAGR {mean['sagr']:.3f}", predictions=(pred, true))


class AUIntensityTask(Task):
    """AU intensity 0-5, scored by the mean ICC(3,1) over the AUs the data grades (MAE beside it)."""

    name, module_class, predictor_class = "au_intensity", AUIntensityRegressor, AUIntensityPredictor
    default_datamodule, registered_name = "DISFADataModule", "facslab-au-intensity"
    metric, metric_label = "icc", "ICC(3,1)"

    def build_model(self, model_args, dm, train, init_from):
        from facslab.training import load_weights

        if getattr(dm, "target", None) != "intensity":
            raise ValueError(f"the au_intensity task needs a datamodule with target: intensity "
                             f"({type(dm).__name__} gives {getattr(dm, 'target', 'presence')})")
        model = AUIntensityRegressor(**{**model_args, "image_size": dm.image_size, "mean": list(dm.mean),
                                        "std": list(dm.std)})
        if init_from:
            load_weights(model, init_from)
        return model

    def fold_score(self, outputs, labels):
        table = intensity_metrics(outputs, labels)
        return float(table.loc[table["au"] == "mean", "icc"].iloc[0])

    def summarise_validation(self, outputs, labels, dm, train):
        table = intensity_metrics(outputs, labels)
        metrics = {f"oof_{m}_AU{r.au.replace('/', '_')}": float(getattr(r, m)) for r in table.itertuples()
                   if r.au != "mean" for m in ("icc", "mae") if np.isfinite(getattr(r, m))}
        mean = table[table["au"] == "mean"].iloc[0]
        metrics.update(oof_icc=float(mean["icc"]), oof_mae=float(mean["mae"]))
        per_au = table[table["au"] != "mean"]
        figure = plots.bar_chart([f"AU{a}" for a in per_au["au"]], per_au["icc"].fillna(0), "ICC(3,1)",
                                 "validation ICC(3,1) per AU")
        return Evaluation(float(mean["icc"]), metrics, {"metrics/validation_intensity.csv": table},
                          {"plots/icc_per_au.png": figure})

    def evaluate_test(self, predictor, dm):
        pred, true = held_out_outputs(predictor, dm)
        table = intensity_metrics(pred, true, groups=held_out_subjects(dm))
        mean = table[table["au"] == "mean"].iloc[0]
        metrics = {f"test_{m}_AU{r.au.replace('/', '_')}": float(getattr(r, m)) for r in table.itertuples()
                   if r.au != "mean" for m in ("icc", "mae") if np.isfinite(getattr(r, m))}
        metrics.update(test_icc=float(mean["icc"]), test_mae=float(mean["mae"]), test_icc_ci_lo=float(mean["icc_lo"]),
                       test_icc_ci_hi=float(mean["icc_hi"]))
        per_au = table[table["au"] != "mean"]
        figure = plots.bar_chart([f"AU{a}" for a in per_au["au"]], per_au["icc"].fillna(0), "ICC(3,1)",
                                 "test ICC(3,1) per AU")
        return Evaluation(float(mean["icc"]), metrics, {"metrics/test_intensity.csv": table},
                          {"plots/test_icc_per_au.png": figure, **saliency_on_test_faces(predictor, dm)}, interval=(float(mean["icc_lo"]), float(mean["icc_hi"])),
                          secondary=f"MAE {mean['mae']:.3f}", predictions=(pred, true))


class TemporalAUTask(AUTask):
    """AU occurrence of a frame from the stack of frames ending at it (``TemporalAUDetector``);
    scored, thresholded and evaluated as the AU task."""

    name, module_class, predictor_class = "au_temporal", TemporalAUDetector, TemporalAUPredictor
    default_datamodule, registered_name = "BP4DSequenceDataModule", "facslab-au-temporal"
    derived_model_args = ("image_size", "mean", "std", "pos_weight", "thresholds", "window")
    starts_from_au_pretraining = False

    def build_model(self, model_args, dm, train, init_from):
        from facslab.training import load_weights

        if not hasattr(dm, "window"):
            raise ValueError(f"the au_temporal task needs a sequence datamodule (BP4DSequenceDataModule, "
                             f"CKPlusSequenceDataModule), not {type(dm).__name__}")
        args = {**model_args, "image_size": dm.image_size, "mean": list(dm.mean), "std": list(dm.std), "window": dm.window}
        if train.pos_weight:
            args["pos_weight"] = bce_pos_weight(dm.positive_rate("train"))
        model = TemporalAUDetector(**args)
        if init_from:
            load_weights(model, init_from)
        return model

    def run_name(self, number, model_args):
        return (f"trial {number:03d} {self.model_value(model_args, 'architecture')} "
                f"lr{self.model_value(model_args, 'lr'):.1e}")

    def tags(self, model_args):
        return {**super().tags(model_args), "architecture": str(self.model_value(model_args, "architecture"))}


class AUAffectTask(AUTask):
    """AUs and valence/arousal from one network (``AUAffectModel``), each scored on the rows that
    annotate it: the objective is the mean of the AU PR-AUC and the valence/arousal CCC."""

    name, module_class, predictor_class = "au_affect", AUAffectModel, AUAffectPredictor
    default_datamodule, registered_name = "AUAffectDataModule", "facslab-au-affect"
    metric, metric_label = "au_affect", "(PR-AUC + CCC) / 2"
    starts_from_au_pretraining = False

    def build_model(self, model_args, dm, train, init_from):
        from facslab.training import load_weights

        args = {**model_args, "image_size": dm.image_size, "mean": list(dm.mean), "std": list(dm.std)}
        if train.pos_weight:
            args["pos_weight"] = bce_pos_weight(dm.positive_rate("train")[:NUM_AUS])
        model = AUAffectModel(**args)
        if init_from:
            load_weights(model, init_from)
        return model

    @staticmethod
    def _parts(outputs, labels):
        affect_rows = ~np.isnan(labels[:, NUM_AUS:]).any(1)
        return (outputs[:, :NUM_AUS], labels[:, :NUM_AUS],
                outputs[affect_rows, NUM_AUS:], labels[affect_rows, NUM_AUS:])

    def fold_score(self, outputs, labels):
        probs, aus, affect, truth = self._parts(outputs, labels)
        ccc = class_free_mean(affect_metrics(affect, truth, n_boot=0), "ccc") if len(truth) > 1 else 0.0
        return (mean_pr_auc(probs, aus) + ccc) / 2

    def summarise_validation(self, outputs, labels, dm, train):
        probs, aus, affect, truth = self._parts(outputs, labels)
        au = super().summarise_validation(probs, aus, dm, train)
        table = affect_metrics(affect, truth, n_boot=0)
        ccc = class_free_mean(table, "ccc")
        au.metrics.update({f"oof_{m}_{r.dimension}": float(getattr(r, m)) for r in table.itertuples()
                           for m in ("rmse", "ccc")})
        au.tables["metrics/validation_affect.csv"] = table
        au.score = (au.score + ccc) / 2
        return au

    def evaluate_test(self, predictor, dm):
        outputs, labels = held_out_outputs(predictor, dm)
        probs, aus, affect, truth = self._parts(outputs, labels)
        rows = ~np.isnan(aus).all(1)
        subjects = held_out_subjects(dm)
        table = per_au_metrics(probs[rows], aus[rows], predictor.thresholds, groups=subjects[rows])
        mean = mean_row(table)
        affect_table = affect_metrics(affect, truth, groups=subjects[~np.isnan(labels[:, NUM_AUS:]).any(1)])
        va = affect_table[affect_table["dimension"] == "mean"].iloc[0]
        lo, hi = au_affect_interval(probs, aus, outputs[:, NUM_AUS:], labels[:, NUM_AUS:], subjects)
        metrics = {"test_pr_auc": float(mean["pr_auc"]), "test_f1": float(mean["f1"]), "test_ccc": float(va["ccc"]),
                   "test_rmse": float(va["rmse"]), "test_au_affect": (float(mean["pr_auc"]) + float(va["ccc"])) / 2,
                   "test_au_affect_ci_lo": lo, "test_au_affect_ci_hi": hi}
        return Evaluation(metrics["test_au_affect"], metrics,
                          {"metrics/test_per_au.csv": table, "metrics/test_affect.csv": affect_table},
                          {"plots/test_valence_arousal.png": plots.valence_arousal_scatter(affect, truth, "test"),
                           **saliency_on_test_faces(predictor, dm)},
                          secondary=(f"AU PR-AUC {mean['pr_auc']:.3f} ({mean['pr_auc_lo']:.3f}-{mean['pr_auc_hi']:.3f}), "
                                     f"CCC {va['ccc']:.3f} ({va['ccc_lo']:.3f}-{va['ccc_hi']:.3f})"),
                          interval=(lo, hi), predictions=(outputs, labels))


def get_task(name: str) -> Task:
    """A task by its registered name (au, emotion, ...) or by its class's import path."""
    if name in TASKS:
        return TASKS[name]
    if "." in name:
        task = import_path(name, "task")
        if not (isinstance(task, type) and issubclass(task, Task)) or "name" not in task.__dict__:
            raise ValueError(f"task {name!r} is not a facslab.tasks.Task subclass with a name of its own")
        return TASKS[task.name]  # registered when its module was imported
    raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}, or give a Task class's import path")
