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
        spec = class_spec(self.datamodule) or ClassSpec("CKPlusEmotionDataModule")
        cls = _datamodule_class(spec.class_path)
        self.datamodule = ClassSpec(full_path(cls), resolved_arguments("datamodule.init_args", cls, spec.init_args, ("fold",)))
        if self.min_intensity != 1 and not cls.codes_au_intensity:
            raise ConfigError(f"min_intensity: {cls.__name__} codes AU occurrence, not intensity: it must be 1, "
                              f"not {self.min_intensity}")

    def build(self, **overrides):
        return _datamodule_class(self.datamodule.class_path)(**{**self.datamodule.init_args, "fold": 0, **overrides})


def _datamodule_class(path: str) -> type:
    """The datamodule class a config names (by import path, or by name among facslab's), which
    must give emotion labels and AU codes on the same faces (``true_aus``)."""
    import datamodules

    from facslab.name_tables import import_path

    try:
        cls = import_path(path, "datamodule") if "." in path else getattr(datamodules, path)
    except (ValueError, AttributeError):
        cls = None
    if not isinstance(cls, type) or not hasattr(cls, "true_aus"):
        raise ConfigError(f"datamodule: AU -> emotion needs emotion labels and AU codes on the same faces "
                          f"({', '.join(DATAMODULES)}), not {path}")
    return cls


def _accuracy_f1(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    # macro F1 over the classes the test split has (a class absent from it has no F1)
    return float((predicted == truth).mean()), float(f1_score(truth, predicted, labels=np.unique(truth),
                                                               average="macro", zero_division=0))


def _subject_ci(predicted, truth, subjects, n_boot=1000, seed=0) -> tuple[float, float]:
    lo, hi = grouped_bootstrap(lambda rows: [(predicted[rows] == truth[rows]).mean()], len(truth), subjects, n_boot, seed)
    return float(lo[0]), float(hi[0])


def _grid_search(name: str, grid: list[float], score_folds, label, prefer) -> float:
    """The grid value with the best mean score over the training folds (``score_folds(value)``:
    one score per fold), each value a nested MLflow run; among tied values the one ``prefer``
    ranks lowest."""
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
    best = max(t.value for t in study.trials)
    return float(min((t.params[name] for t in study.trials if np.isclose(t.value, best)), key=prefer))


def search_threshold(au: np.ndarray, emotions: np.ndarray, folds: np.ndarray, classes, config: AUEmotionConfig) -> float:
    """The learned table's threshold with the best mean accuracy over the training folds."""
    grid = [round(float(v), 4) for v in np.linspace(config.threshold_low, config.threshold_high, config.threshold_steps)]

    def score_folds(threshold):
        return [float((RuleTable.learned(au[folds != f], emotions[folds != f], classes, threshold).predict(au[folds == f])
                       == emotions[folds == f]).mean()) for f in np.unique(folds)]

    middle = (config.threshold_low + config.threshold_high) / 2  # ties: the least extreme threshold
    return _grid_search("threshold", grid, score_folds, lambda v: f"learned table threshold {v:.2f}",
                        lambda v: abs(v - middle))


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

    # ties: the strongest prior, the least personalisation
    return _grid_search("strength", list(STRENGTHS), score_folds, lambda v: f"personalised table strength {v:g}",
                        lambda v: -v)


def rule_table(config: AUEmotionConfig, classes: tuple[str, ...]) -> tuple[str, RuleTable]:
    """The rule table (the configured one, or the first shipped one with a row for every class),
    which must have a row for every class."""
    if config.rules:
        path = config.rules
    else:
        shipped = [p for p in (RULES_FILE, INDUCED_RULES_FILE) if set(classes) <= set(pd.read_csv(p)["emotion"])]
        path = str(shipped[0] if shipped else RULES_FILE)
    table = RuleTable.from_csv(path, classes)
    missing = [c for c in classes if c not in table.sets]
    if missing:
        raise ConfigError(f"rules: {path} has no row for {', '.join(missing)}: give rules: FILE.csv with a row per class "
                          "(an empty AU set for neutral: a face showing none of the coded AUs)")
    return path, table


def load_au_model(config: AUEmotionConfig):
    """The AU model, which must decide AUs and read what the datamodule gives (stacks for a
    temporal model, single frames otherwise)."""
    from mlflow.exceptions import MlflowException

    from facslab.model_uri import load_predictor

    try:
        predictor = load_predictor(config.au_model)
    except MlflowException as error:
        raise ConfigError(f"au_model {config.au_model}: {error.message.splitlines()[0]}") from None
    if not predictor.decides_aus:
        raise ConfigError(f"au_model {config.au_model} is a model of the {predictor.task} task: AU -> emotion maps an "
                          "AU model's decisions")
    sequence = "window" in config.datamodule.init_args
    if bool(predictor.window) != sequence:
        needs = ("a sequence datamodule (BP4DEmotionSequenceDataModule)" if predictor.window
                 else "a frame datamodule (not BP4DEmotionSequenceDataModule)")
        raise ConfigError(f"au_model {config.au_model} reads {'windows of frames' if predictor.window else 'one frame'}: "
                          f"it needs {needs}")
    return predictor


def check_unseen(uri: str, dm, positions: np.ndarray) -> str:
    """Refuse an AU model registered on the same dataset whose test split does not hold every
    test frame here (it may have trained on them); what was checked, for the run's tags."""
    from mlflow import MlflowClient

    from facslab.ensemble import registered_version

    if not uri.startswith("models:/"):
        log.warning("au_model %s: a model folder keeps no record of its test split: that it never saw these test "
                    "participants is not checked", uri)
        return "not checked (no record)"
    client = MlflowClient()
    version = registered_version(client, uri)
    family = lambda name: name.replace("Emotion", "").replace("Sequence", "")  # noqa: E731 - BP4D's three modules
    if family(client.get_run(version.run_id).data.tags.get("dataset", "")) != family(dm.dataset_name):
        return "another dataset"
    try:
        stored = np.load(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="predictions/test.npz"))
    except Exception:  # noqa: BLE001 - registered before test outputs were kept
        log.warning("au_model %s keeps no test split record (predictions/test.npz): not checked", uri)
        return "not checked (no record)"
    key = lambda name: "/".join(Path(str(name)).parts[-3:])  # noqa: E731 - the same file from any root
    tested = {key(n) for n in stored["images"]}
    here = [key(n) for n in dm.split_table().loc[positions, "image"]]
    unseen = sum(name in tested for name in here)
    if unseen < len(here):
        raise ConfigError(f"au_model {uri} was registered on {dm.dataset_name} with another test split: "
                          f"{len(here) - unseen} of the {len(here)} test frames here were not in its test split (it "
                          "may have trained on them); give the datamodule the AU model's root, seed and test_fraction")
    return "every test frame in its test split"


def predicted_aus(predictor, dm, positions: np.ndarray) -> np.ndarray:
    """The AU model's decisions on test rows of a datamodule set up at the model's input size."""
    from facslab.held_out import held_out_inputs

    return predictor.decide(predictor.predict_aligned(held_out_inputs(dm, positions))).astype(np.float32)


def evaluate_au_emotion(config: AUEmotionConfig) -> pd.DataFrame:
    # the store is opened where it is first needed, so that a mistake found before leaves no
    # experiment behind: at once for a registered model, else just before the run
    from_store = str(config.au_model or "").startswith(("models:/", "runs:/"))
    if from_store:
        setup_tracking(config.tracking_uri, config.experiment)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    predictor = load_au_model(config) if config.au_model else None
    # one datamodule at the model's input size (and window): labels and the model's inputs line up
    dm = config.build(**({"image_size": predictor.alignment.size, **({"window": predictor.window} if predictor.window else {})}
                         if predictor else {}))
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
    empty = [c for k, c in enumerate(classes) if not (emotions == k).any()]
    if empty:
        raise ConfigError(f"{dm.dataset_name} has no usable coded sample of {', '.join(empty)}: leave them out with "
                          f"datamodule.init_args.drop_classes: [{', '.join(empty)}]")
    is_test = (samples["role"] == "test").to_numpy()
    folds = samples["fold"].to_numpy()
    subjects = samples["subject"].to_numpy()
    rules_path, rules = rule_table(config, classes)
    positions = samples.index[is_test].to_numpy()
    unseen = check_unseen(config.au_model, dm, positions) if predictor else "no AU model"
    videos = "video" in samples.columns
    # the first half of each video's coded frames adjusts a personal table, the rest is scored
    halves_all = first_halves(dm.samples) if videos else None
    adapt = halves_all[keep] if videos else None
    train = ~is_test
    if not from_store:
        setup_tracking(config.tracking_uri, config.experiment)
    with mlflow.start_run(run_name=f"AU -> emotion on {dm.dataset_name}") as run:
        mlflow.set_tags({"stage": "au-emotion", "dataset": dm.dataset_name, "data_generated": str(dm.generated).lower(),
                         "split_id": dm.split_id(), "au_model": config.au_model or "none", "au_model_unseen": unseen})
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
            strength = search_strength(au[train], emotions[train], folds[train], subjects[train], adapt[train],
                                       classes, threshold)
            mlflow.log_param("personal_strength", strength)
        sources = {"ground-truth AUs": (au[is_test], au[is_test])}
        if predictor:
            predicted = np.where(coded, predicted_aus(predictor, dm, positions), np.nan)
            halves = predicted
            if videos and predictor.window:  # stacks within each half: no scored stack reads an adaptation frame
                dm.restack(pd.Series(halves_all, index=dm.samples.index))
                halves = np.where(coded, predicted_aus(predictor, dm, positions), np.nan)
            sources["predicted AUs"] = (predicted, halves)
        methods = {"FACS rule table": rules.predict, f"learned table (threshold {threshold:.2f})": learned.predict,
                   "logistic regression": regression.predict}
        rows, matrices, gains = [], {}, []
        truth, test_subjects = emotions[is_test], subjects[is_test]
        for source, (values, halves) in sources.items():
            for method, predict in methods.items():
                predicted_classes = np.asarray(predict(values)).astype(int)
                rows.append(_row(source, method, predicted_classes == truth, predicted_classes, truth, test_subjects))
                matrices[f"{method}\n{source}"] = confusion(np.eye(len(classes))[predicted_classes], truth, len(classes))
            if videos:  # the shared and the personalised table on the same later halves
                later = ~adapt[is_test]
                right = {}
                for method, value in (("shared table, later frames", float("inf")),
                                      (f"personalised table (strength {strength:g}), later frames", strength)):
                    right[value] = personal_accuracy(shared, halves, truth, test_subjects, adapt[is_test], classes,
                                                     threshold, value)[later].astype(bool)
                    rows.append(_row(source, method, right[value], None, truth[later], test_subjects[later]))
                gains.append(_gain(source, right[strength], right[float("inf")], test_subjects[later]))
        table = pd.DataFrame(rows)
        if gains:
            log_table(pd.DataFrame(gains), "au_emotion/personal_gain.csv")
            for gain in gains:
                mlflow.log_metric(f"test_personal_gain_{gain['aus'].replace(' ', '_').replace('-', '_')}", gain["gain"])
        table.to_csv(out / "au_emotion.csv", index=False)
        (out / "au_emotion.md").write_text(markdown(table, dm, threshold, gains))
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


def _gain(source, personal, shared, subjects) -> dict:
    """Personalised minus shared accuracy on the same frames, with a paired bootstrap over
    participants (both tables resampled together): the interval of the difference itself."""
    lo, hi = grouped_bootstrap(lambda rows: [personal[rows].mean() - shared[rows].mean()], len(personal), subjects)
    return {"aus": source, "gain": float(personal.mean() - shared.mean()), "gain_lo": float(lo[0]), "gain_hi": float(hi[0]),
            "n": int(len(personal))}


def markdown(table: pd.DataFrame, dm, threshold: float, gains: list[dict] = ()) -> str:
    lines = [f"AU -> emotion on held-out {dm.dataset_name} subjects ({'generated' if dm.generated else 'real'} copy, "
             f"evaluated once; the learned table's threshold {threshold:.2f} was chosen on the training subjects' "
             "folds). Brackets: 95 % bootstrap over subjects."
             + (" The personalised rows score the later half of each test video after adjusting on its first half, "
                "beside the shared table on the same frames." if table["method"].str.startswith("personalised").any()
                else ""), "",
             "| AUs | method | accuracy | macro F1 | frames | subjects |", "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        f1 = f"{row.macro_f1:.3f}" if np.isfinite(row.macro_f1) else "–"
        lines.append(f"| {row.aus} | {row.method} | {row.accuracy:.3f} [{row.accuracy_lo:.2f}, {row.accuracy_hi:.2f}] "
                     f"| {f1} | {row.n} | {row.subjects} |")
    lines += [""] + [f"Personalised minus shared on {g['aus']}: {g['gain']:+.3f} [{g['gain_lo']:+.2f}, {g['gain_hi']:+.2f}] "
                     "(paired bootstrap over participants)." for g in gains]
    return "\n".join(lines) + "\n"
