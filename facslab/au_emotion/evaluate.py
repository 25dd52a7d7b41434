"""AU -> emotion judged on a dataset's emotion labels (CK+'s ``Emotion/`` files; BP4D / BP4D+'s
induced emotions): the FACS rule table, the learned co-occurrence table (its threshold searched by
an Optuna sweep over the training split's subject-exclusive folds, each trial a nested MLflow run)
and logistic regression, each applied to ground-truth AUs and to the AUs a registered AU model
predicts (a temporal model reads each frame's stack). Where a participant has several frames per
emotion (BP4D's videos) the learned table is also personalised: adjusted on the first half of each
of their videos and scored, beside the shared table, on the second halves (the prior's strength is
searched on the training folds the same way). The test subjects are looked at once, at the end;
every mapping is fitted on training subjects' ground-truth AUs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import mlflow
import numpy as np
import optuna
import pandas as pd

from facslab import plots
from facslab.au import AU_LABELS
from facslab.au_emotion import INDUCED_RULES_FILE, RULES_FILE, RuleTable, au_frequencies, logistic_regression, personalised
from facslab.class_args import ClassSpec, class_spec, full_path, resolved_arguments
from facslab.errors import ConfigError
from facslab.evaluation import confusion, grouped_bootstrap
from facslab.mlflow_store import log_figure, log_table, setup_tracking

log = logging.getLogger(__name__)

DATAMODULES = ("CKPlusEmotionDataModule", "BP4DEmotionDataModule", "BP4DEmotionSequenceDataModule")
#: the personalisation prior's grid, in frames of the participant's own (inf: the shared table)
STRENGTHS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, float("inf"))


@dataclass
class AUEmotionConfig:
    #: the emotion datamodule (``class_path``, ``init_args`` without a fold): one of ``DATAMODULES``
    datamodule: ClassSpec | None = None
    #: the AU model whose predictions are mapped too (None: ground-truth AUs only); a temporal
    #: model needs a sequence datamodule (its window is the model's)
    au_model: str | None = "models:/facslab-au@champion"
    rules: str | None = None  # the editable rule table; None: the shipped one covering the data's emotions
    threshold_low: float = 0.05
    threshold_high: float = 0.95
    threshold_steps: int = 19  # grid points of the learned table's threshold (the sweep)
    min_intensity: int = 1  # FACS intensity at which an AU counts as present (CK+)
    output: str = "reports/au_emotion"
    experiment: str = "facslab"
    tracking_uri: str | None = None

    class_fields: ClassVar[tuple[str, ...]] = ("datamodule",)

    def __post_init__(self):
        import datamodules

        spec = class_spec(self.datamodule) or ClassSpec("CKPlusEmotionDataModule")
        name = spec.class_path.rpartition(".")[2]
        if name not in DATAMODULES:
            raise ConfigError(f"datamodule: AU -> emotion needs emotion labels and AU codes on the same faces: "
                              f"{', '.join(DATAMODULES)}, not {spec.class_path}")
        cls = getattr(datamodules, name)
        self.datamodule = ClassSpec(full_path(cls), resolved_arguments("datamodule.init_args", cls, spec.init_args, ("fold",)))

    def build(self, **overrides):
        import datamodules

        cls = getattr(datamodules, self.datamodule.class_path.rpartition(".")[2])
        return cls(**{**self.datamodule.init_args, "fold": 0, **overrides})


def _accuracy_f1(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    # macro F1 over the classes the test split has (a class absent from it has no F1)
    return float((predicted == truth).mean()), float(f1_score(truth, predicted, labels=np.unique(truth),
                                                               average="macro", zero_division=0))


def _subject_ci(predicted, truth, subjects, n_boot=1000, seed=0) -> tuple[float, float]:
    lo, hi = grouped_bootstrap(lambda rows: [(predicted[rows] == truth[rows]).mean()], len(truth), subjects, n_boot, seed)
    return float(lo[0]), float(hi[0])


def _grid_search(name: str, grid: list[float], score_folds, label) -> float:
    """The grid value with the best mean score over the training folds (``score_folds(value)``:
    one score per fold), each value a nested MLflow run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler({name: grid}, seed=0))

    def objective(trial: optuna.Trial) -> float:
        value = trial.suggest_categorical(name, grid)
        scores = score_folds(value)
        with mlflow.start_run(run_name=label(value), nested=True):
            mlflow.set_tags({"stage": "au-emotion-trial", "searched": name})
            mlflow.log_param(name, value)
            mlflow.log_metrics({"cv_accuracy": float(np.mean(scores)), "cv_accuracy_std": float(np.std(scores))})
        return float(np.mean(scores))

    study.optimize(objective, n_trials=len(grid))
    return float(study.best_params[name])


def search_threshold(au: np.ndarray, emotions: np.ndarray, folds: np.ndarray, classes, config: AUEmotionConfig) -> float:
    """The learned table's threshold with the best mean accuracy over the training folds."""
    grid = [round(float(v), 4) for v in np.linspace(config.threshold_low, config.threshold_high, config.threshold_steps)]

    def score_folds(threshold):
        return [float((RuleTable.learned(au[folds != f], emotions[folds != f], classes, threshold).predict(au[folds == f])
                       == emotions[folds == f]).mean()) for f in np.unique(folds)]

    return _grid_search("threshold", grid, score_folds, lambda v: f"learned table threshold {v:.2f}")


def first_halves(samples: pd.DataFrame) -> np.ndarray:
    """Rows in the first half (by frame) of their video: where a personal table is adjusted."""
    rank = samples.groupby("video")["frame"].rank(method="first")
    size = samples.groupby("video")["frame"].transform("size")
    return (rank <= np.ceil(size / 2)).to_numpy()


def personal_accuracy(shared: np.ndarray, au, emotions, subjects, adapt, classes, threshold, strength) -> np.ndarray:
    """(rows,) whether each later-half row is right under its participant's personalised table
    (NaN for first-half rows)."""
    right = np.full(len(emotions), np.nan)
    for subject in np.unique(subjects):
        own, later = (subjects == subject) & adapt, (subjects == subject) & ~adapt
        table = personalised(shared, au[own], emotions[own], classes, threshold, strength)
        right[later] = table.predict(au[later]) == emotions[later]
    return right


def search_strength(au, emotions, folds, subjects, adapt, classes, threshold) -> float:
    """The personalisation prior's strength with the best mean later-half accuracy over the
    training folds (shared table from the other folds, each participant of the fold adjusted)."""

    def score_folds(strength):
        scores = []
        for f in np.unique(folds):
            shared = au_frequencies(au[folds != f], emotions[folds != f], len(classes))[0]
            held = folds == f
            right = personal_accuracy(shared, au[held], emotions[held], subjects[held], adapt[held], classes,
                                      threshold, strength)
            scores.append(float(np.nanmean(right)))
        return scores

    return _grid_search("strength", list(STRENGTHS), score_folds, lambda v: f"personalised table strength {v:g}")


def rules_file(config: AUEmotionConfig, classes: tuple[str, ...]) -> str:
    """The rule table to use: the configured one, or the first shipped one with a row for every class."""
    if config.rules:
        return config.rules
    for path in (RULES_FILE, INDUCED_RULES_FILE):
        if set(classes) <= set(pd.read_csv(path)["emotion"]):
            return str(path)
    raise ConfigError(f"no shipped rule table has a row for each of {', '.join(classes)}: give rules: FILE.csv")


def predicted_aus(config: AUEmotionConfig, positions: np.ndarray) -> np.ndarray:
    """The AU model's decisions on the same samples (cropped at the model's own input size; a
    temporal model reads the stacks of its own window)."""
    from facslab.held_out import held_out_inputs
    from facslab.serving import load_predictor

    predictor = load_predictor(config.au_model)
    sequence = "window" in config.datamodule.init_args
    if bool(predictor.window) != sequence:
        needs = ("a sequence datamodule (BP4DEmotionSequenceDataModule)" if predictor.window
                 else "a frame datamodule (not BP4DEmotionSequenceDataModule)")
        raise ConfigError(f"au_model {config.au_model} reads {'windows of frames' if predictor.window else 'one frame'}: "
                          f"it needs {needs}")
    dm = config.build(image_size=predictor.alignment.size, **({"window": predictor.window} if sequence else {}))
    dm.setup("fit")
    return predictor.decide(predictor.predict_aligned(held_out_inputs(dm, positions))).astype(np.float32)


def evaluate_au_emotion(config: AUEmotionConfig) -> pd.DataFrame:
    setup_tracking(config.tracking_uri, config.experiment)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    dm = config.build()
    dm.setup("fit")
    all_aus = dm.true_aus(config.min_intensity)
    uncoded = np.isnan(all_aus).all(1)
    if uncoded.any():  # the emotion datamodule keeps them; rules over AUs cannot score them
        log.warning("%d labelled sample(s) without AU codes are left out of the AU rules", int(uncoded.sum()))
    keep = dm.samples["ok"].to_numpy() & ~uncoded
    samples, au = dm.samples[keep], all_aus[keep]
    coded = ~np.isnan(au).all(0)  # the AUs the dataset codes: a model's other AUs are not compared
    classes = dm.classes
    emotions = samples["labels"].to_numpy()
    is_test = (samples["role"] == "test").to_numpy()
    folds = samples["fold"].to_numpy()
    subjects = samples["subject"].to_numpy()
    rules_path = rules_file(config, classes)
    rules = RuleTable.from_csv(rules_path, classes)
    videos = "video" in samples.columns
    train = ~is_test
    with mlflow.start_run(run_name=f"AU -> emotion on {dm.dataset_name}") as run:
        mlflow.set_tags({"stage": "au-emotion", "dataset": dm.dataset_name, "data_generated": str(dm.generated).lower(),
                         "split_id": dm.split_id(), "au_model": config.au_model or "none"})
        mlflow.log_params({"rules": rules_path, "min_intensity": config.min_intensity, "classes": ",".join(classes),
                           "datamodule": config.datamodule.class_path})
        threshold = search_threshold(au[train], emotions[train], folds[train], classes, config)
        learned = RuleTable.learned(au[train], emotions[train], classes, threshold)
        regression = logistic_regression(au[train], emotions[train])
        mlflow.log_param("learned_threshold", threshold)
        shared = au_frequencies(au[train], emotions[train], len(classes))[0]
        frequencies = pd.DataFrame(shared, index=list(classes), columns=[f"AU{a}" for a in AU_LABELS]).loc[:, coded]
        frequencies.to_csv(out / "au_frequencies.csv")
        log_table(frequencies.reset_index(names="emotion"), "au_emotion/au_frequencies.csv")
        log_table(learned.as_frame(), "au_emotion/learned_table.csv")
        if videos:
            adapt = first_halves(samples)
            strength = search_strength(au[train], emotions[train], folds[train], subjects[train], adapt[train],
                                       classes, threshold)
            mlflow.log_param("personal_strength", strength)
        sources = {"ground-truth AUs": au[is_test]}
        if config.au_model:
            predicted = predicted_aus(config, samples.index[is_test].to_numpy())
            sources["predicted AUs"] = np.where(coded, predicted, np.nan)
        methods = {"FACS rule table": rules.predict, f"learned table (threshold {threshold:.2f})": learned.predict,
                   "logistic regression": regression.predict}
        rows, matrices = [], {}
        truth, test_subjects = emotions[is_test], subjects[is_test]
        for source, values in sources.items():
            for method, predict in methods.items():
                predicted_classes = np.asarray(predict(values)).astype(int)
                rows.append(_row(source, method, predicted_classes == truth, predicted_classes, truth, test_subjects))
                matrices[f"{method}\n{source}"] = confusion(np.eye(len(classes))[predicted_classes], truth, len(classes))
            if videos:  # the shared and the personalised table on the same later halves
                later = ~adapt[is_test]
                for method, value in (("shared table, later frames", float("inf")),
                                      (f"personalised table (strength {strength:g}), later frames", strength)):
                    right = personal_accuracy(shared, values, truth, test_subjects, adapt[is_test], classes, threshold, value)
                    rows.append(_row(source, method, right[later].astype(bool), None, truth[later], test_subjects[later]))
        table = pd.DataFrame(rows)
        table.to_csv(out / "au_emotion.csv", index=False)
        (out / "au_emotion.md").write_text(markdown(table, dm, threshold))
        log_table(table, "au_emotion/results.csv")
        mlflow.log_text((out / "au_emotion.md").read_text(), "au_emotion/results.md")
        for row in rows:
            key = f"{row['method'].split(' (')[0].split(',')[0]} {row['aus']}".replace(" ", "_").replace("-", "_")
            mlflow.log_metric(f"test_accuracy_{key}", row["accuracy"])
            if np.isfinite(row["macro_f1"]):
                mlflow.log_metric(f"test_macro_f1_{key}", row["macro_f1"])
        figure = plots.confusion_grid(matrices, classes, f"AU -> emotion on held-out {dm.dataset_name} subjects")
        figure.savefig(out / "au_emotion_confusion.png", dpi=100)
        log_figure(figure, "au_emotion/confusion.png")
        heat = plots.heatmap(frequencies, "observed AU frequency per emotion (training subjects)")
        heat.savefig(out / "au_frequencies.png", dpi=100)
        log_figure(heat, "au_emotion/au_frequencies.png")
        log.info("AU -> emotion run %s", run.info.run_id)
    return table


def _row(source, method, right, predicted, truth, subjects) -> dict:
    """One line of the table: accuracy with its subject interval (of that same accuracy), macro F1."""
    right = np.asarray(right, bool)
    lo, hi = _subject_ci(right.astype(int), np.ones(len(right), int), subjects)
    f1 = _accuracy_f1(predicted, truth)[1] if predicted is not None else float("nan")
    return {"aus": source, "method": method, "accuracy": float(right.mean()), "accuracy_lo": lo, "accuracy_hi": hi,
            "macro_f1": f1, "n": int(len(right)), "subjects": int(len(np.unique(subjects)))}


def markdown(table: pd.DataFrame, dm, threshold: float) -> str:
    lines = [f"AU -> emotion on held-out {dm.dataset_name} subjects ({'generated' if dm.generated else 'real'} copy, "
             f"evaluated once; the learned table's threshold {threshold:.2f} was chosen on the training subjects' "
             "folds). Brackets: 95 % bootstrap over subjects. The personalised rows score the later half of each "
             "test video after adjusting on its first half, beside the shared table on the same frames.", "",
             "| AUs | method | accuracy | macro F1 | frames | subjects |", "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        f1 = f"{row.macro_f1:.3f}" if np.isfinite(row.macro_f1) else "–"
        lines.append(f"| {row.aus} | {row.method} | {row.accuracy:.3f} [{row.accuracy_lo:.2f}, {row.accuracy_hi:.2f}] "
                     f"| {f1} | {row.n} | {row.subjects} |")
    return "\n".join(lines) + "\n"
