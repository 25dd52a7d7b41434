"""AU -> emotion judged on CK+'s emotion labels: the FACS rule table, the learned co-occurrence
table (its threshold searched by an Optuna sweep over the training split's subject-exclusive
folds, each trial a nested MLflow run) and logistic regression, each applied to ground-truth AUs
and to the AUs a registered AU model predicts. The test subjects are looked at once, at the end;
every mapping is fitted on training subjects' ground-truth AUs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd

from facslab import plots
from facslab.au import AU_LABELS, labels_from_facs_codes
from facslab.au_emotion import RULES_FILE, RuleTable, logistic_regression
from facslab.evaluation import confusion, grouped_bootstrap
from facslab.mlflow_store import log_figure, log_table, setup_tracking

log = logging.getLogger(__name__)


@dataclass
class AUEmotionConfig:
    data: dict[str, Any] = field(default_factory=dict)  # CKPlusEmotionDataModule arguments (no fold)
    #: the AU model whose predictions are mapped too (None: ground-truth AUs only)
    au_model: str | None = "models:/facslab-au@champion"
    rules: str = str(RULES_FILE)  # the editable FACS rule table
    threshold_low: float = 0.05
    threshold_high: float = 0.95
    threshold_steps: int = 19  # grid points of the learned table's threshold (the sweep)
    min_intensity: int = 1  # FACS intensity at which an AU counts as present
    output: str = "reports/au_emotion"
    experiment: str = "facslab"
    tracking_uri: str | None = None


def _accuracy_f1(predicted: np.ndarray, truth: np.ndarray, n: int) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    # macro F1 over the classes the test split has (a class absent from it has no F1)
    return float((predicted == truth).mean()), float(f1_score(truth, predicted, labels=np.unique(truth),
                                                               average="macro", zero_division=0))


def _subject_ci(predicted, truth, subjects, n_boot=1000, seed=0) -> tuple[float, float]:
    lo, hi = grouped_bootstrap(lambda rows: [(predicted[rows] == truth[rows]).mean()], len(truth), subjects, n_boot, seed)
    return float(lo[0]), float(hi[0])


def search_threshold(au: np.ndarray, emotions: np.ndarray, folds: np.ndarray, classes, config: AUEmotionConfig) -> float:
    """The learned table's threshold with the best mean accuracy over the training folds."""
    grid = [round(float(v), 4) for v in np.linspace(config.threshold_low, config.threshold_high, config.threshold_steps)]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler({"threshold": grid}, seed=0))

    def objective(trial: optuna.Trial) -> float:
        threshold = trial.suggest_float("threshold", config.threshold_low, config.threshold_high)
        scores = []
        for fold in np.unique(folds):
            train, held = folds != fold, folds == fold
            table = RuleTable.learned(au[train], emotions[train], classes, threshold)
            scores.append(float((table.predict(au[held]) == emotions[held]).mean()))
        with mlflow.start_run(run_name=f"learned table threshold {threshold:.2f}", nested=True):
            mlflow.set_tags({"stage": "au-emotion-trial"})
            mlflow.log_param("threshold", threshold)
            mlflow.log_metrics({"cv_accuracy": float(np.mean(scores)), "cv_accuracy_std": float(np.std(scores))})
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=len(grid))
    return float(study.best_params["threshold"])


def predicted_aus(uri: str, config: AUEmotionConfig, positions: np.ndarray) -> np.ndarray:
    """The AU model's decisions on the same samples (cropped at the model's own input size)."""
    from datamodules import CKPlusEmotionDataModule
    from facslab.held_out import held_out_inputs
    from facslab.serving import load_predictor

    predictor = load_predictor(uri)
    dm = CKPlusEmotionDataModule(**{**config.data, "image_size": predictor.alignment.size, "fold": 0})
    dm.setup("fit")
    return predictor.decide(predictor.predict_aligned(held_out_inputs(dm, positions))).astype(np.float32)


def evaluate_au_emotion(config: AUEmotionConfig) -> pd.DataFrame:
    from datamodules import CKPlusEmotionDataModule

    setup_tracking(config.tracking_uri, config.experiment)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    dm = CKPlusEmotionDataModule(**{**config.data, "fold": 0})
    dm.setup("fit")
    samples = dm.samples[dm.samples["ok"]]
    uncoded = samples["facs"].isna()
    if uncoded.any():  # the emotion datamodule keeps them; rules over AUs cannot score them
        log.warning("%d labelled sequence(s) without a readable FACS file are left out of the AU rules",
                    int(uncoded.sum()))
        samples = samples[~uncoded]
    classes = dm.classes
    au = np.stack([labels_from_facs_codes(f, config.min_intensity) for f in samples["facs"]])
    emotions = samples["labels"].to_numpy()
    is_test = (samples["role"] == "test").to_numpy()
    folds = samples["fold"].to_numpy()
    subjects = samples["subject"].to_numpy()
    rules = RuleTable.from_csv(config.rules, classes)
    with mlflow.start_run(run_name="AU -> emotion on CK+") as run:
        mlflow.set_tags({"stage": "au-emotion", "dataset": dm.dataset_name, "data_generated": str(dm.generated).lower(),
                         "split_id": dm.split_id(), "au_model": config.au_model or "none"})
        mlflow.log_params({"rules": config.rules, "min_intensity": config.min_intensity, "classes": ",".join(classes)})
        threshold = search_threshold(au[~is_test], emotions[~is_test], folds[~is_test], classes, config)
        learned = RuleTable.learned(au[~is_test], emotions[~is_test], classes, threshold)
        regression = logistic_regression(au[~is_test], emotions[~is_test])
        mlflow.log_param("learned_threshold", threshold)
        frequencies = pd.DataFrame([np.nanmean(au[~is_test][emotions[~is_test] == k] > 0.5, axis=0)
                                    if (emotions[~is_test] == k).any() else np.full(len(AU_LABELS), np.nan)
                                    for k in range(len(classes))], index=list(classes),
                                   columns=[f"AU{a}" for a in AU_LABELS])
        frequencies.to_csv(out / "au_frequencies.csv")
        log_table(frequencies.reset_index(names="emotion"), "au_emotion/au_frequencies.csv")
        log_table(learned.as_frame(), "au_emotion/learned_table.csv")
        sources = {"ground-truth AUs": au[is_test]}
        if config.au_model:
            sources["predicted AUs"] = predicted_aus(config.au_model, config, samples.index[is_test].to_numpy())
        methods = {"FACS rule table": rules.predict, f"learned table (threshold {threshold:.2f})": learned.predict,
                   "logistic regression": regression.predict}
        rows, matrices = [], {}
        truth = emotions[is_test]
        for source, values in sources.items():
            for method, predict in methods.items():
                predicted = np.asarray(predict(values)).astype(int)
                accuracy, f1 = _accuracy_f1(predicted, truth, len(classes))
                lo, hi = _subject_ci(predicted, truth, subjects[is_test])
                rows.append({"aus": source, "method": method, "accuracy": accuracy, "accuracy_lo": lo,
                             "accuracy_hi": hi, "macro_f1": f1, "n": int(len(truth))})
                matrices[f"{method}\n{source}"] = confusion(np.eye(len(classes))[predicted], truth, len(classes))
        table = pd.DataFrame(rows)
        table.to_csv(out / "au_emotion.csv", index=False)
        (out / "au_emotion.md").write_text(markdown(table, dm, threshold))
        log_table(table, "au_emotion/results.csv")
        mlflow.log_text((out / "au_emotion.md").read_text(), "au_emotion/results.md")
        for row in rows:
            key = f"{row['method'].split(' (')[0]} {row['aus']}".replace(" ", "_").replace("-", "_")
            mlflow.log_metrics({f"test_accuracy_{key}": row["accuracy"], f"test_macro_f1_{key}": row["macro_f1"]})
        figure = plots.confusion_grid(matrices, classes, "AU -> emotion on held-out CK+ subjects")
        figure.savefig(out / "au_emotion_confusion.png", dpi=100)
        log_figure(figure, "au_emotion/confusion.png")
        heat = plots.heatmap(frequencies, "observed AU frequency per emotion (training subjects)")
        heat.savefig(out / "au_frequencies.png", dpi=100)
        log_figure(heat, "au_emotion/au_frequencies.png")
        log.info("AU -> emotion run %s", run.info.run_id)
    return table


def markdown(table: pd.DataFrame, dm, threshold: float) -> str:
    lines = [f"AU -> emotion on held-out CK+ subjects ({'generated' if dm.generated else 'real'} copy, "
             f"{int(table['n'].iloc[0])} test sequences, evaluated once; the learned table's threshold {threshold:.2f} "
             "was chosen on the training subjects' folds). Brackets: 95 % bootstrap over subjects.", "",
             "| AUs | method | accuracy | macro F1 |", "|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.aus} | {row.method} | {row.accuracy:.3f} [{row.accuracy_lo:.2f}, {row.accuracy_hi:.2f}] "
                     f"| {row.macro_f1:.3f} |")
    return "\n".join(lines) + "\n"
