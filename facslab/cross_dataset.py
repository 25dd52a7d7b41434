"""Scoring an emotion model on another dataset's test split (``facslab evaluate``), as the seed's
cross-dataset table does (FER-2013 models on CK+).

Classes meet by name: each dataset's names are mapped to one spelling (FER-2013's ``angry`` and
``sad``, RAF-DB's ``happiness`` are CK+'s ``anger``, ``sadness`` and ``happy``). Test rows of a
class the model does not know (CK+'s contempt for a FER-2013 model) are left out and counted; the
model's classes the data does not have are left out of its answer, which is the most probable of
the shared classes. The crops are the data's own, aligned as the model was trained (its input
size is given to the datamodule; another alignment is refused). Intervals resample subjects.
The evaluation is its own MLflow run: it chooses nothing and moves no alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.badinput import BadInputError
from facslab.errors import ConfigError

CROSS_DATASET_KIND = "cross-dataset evaluation"

#: one spelling per emotion across the datasets' class lists (CK+'s)
SPELLING = {"angry": "anger", "sad": "sadness", "happiness": "happy"}


def canonical(name: str) -> str:
    return SPELLING.get(name, name)


@dataclass
class ClassMapping:
    """Which of the model's classes answer which of the data's."""

    model_classes: tuple[str, ...]
    data_classes: tuple[str, ...]

    @property
    def shared(self) -> list[tuple[int, int]]:
        """(model index, data index) of every class both have, in the data's order."""
        model = {canonical(c): k for k, c in enumerate(self.model_classes)}
        return [(model[canonical(c)], j) for j, c in enumerate(self.data_classes) if canonical(c) in model]

    @property
    def data_only(self) -> list[str]:
        known = {canonical(c) for c in self.model_classes}
        return [c for c in self.data_classes if canonical(c) not in known]

    @property
    def model_only(self) -> list[str]:
        known = {canonical(c) for c in self.data_classes}
        return [c for c in self.model_classes if canonical(c) not in known]

    def describe(self) -> str:
        pairs = ", ".join(f"{self.model_classes[m]}->{self.data_classes[d]}" for m, d in self.shared)
        return (f"classes: {pairs}; left out of the data: {', '.join(self.data_only) or 'none'}; "
                f"left out of the model's answer: {', '.join(self.model_only) or 'none'}")


def read_datamodule(path: str | Path, image_size: int):
    """The datamodule a ``class_path``/``init_args`` YAML file describes, with the model's input size."""
    import yaml
    from jsonargparse import ArgumentParser

    from datamodules.emotion import EmotionDataModule

    path = Path(path)
    if not path.is_file():
        raise BadInputError(str(path), "no such data config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BadInputError(str(path), f"not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict) or "class_path" not in data:
        raise BadInputError(str(path), "a data config has class_path (an emotion datamodule) and init_args")
    init_args = dict(data.get("init_args") or {})
    given = init_args.setdefault("image_size", image_size)
    if given != image_size:
        raise ConfigError(f"{path}: image_size {given} is not the model's input size {image_size}; leave it out "
                          "(the model's is used) or give the model's")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=EmotionDataModule)
    try:
        config = parser.parse_object({"data": {**data, "init_args": init_args}})
        return parser.instantiate_classes(config).data
    except Exception as error:  # jsonargparse's: a key, a type or a class the file gets wrong
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ConfigError(f"{path}: {' '.join(lines[:3])}") from None


@dataclass
class CrossDatasetResult:
    table: pd.DataFrame  # per_class_metrics over the shared classes, in the data's names
    rows: pd.DataFrame  # one row per test sample scored: subject, true and predicted class
    left_out: int  # test rows of classes the model does not know
    mapping: ClassMapping

    @property
    def metrics(self) -> dict[str, float]:
        from facslab.evaluation import class_row

        overall, mean = class_row(self.table, "overall"), class_row(self.table, "mean")
        return {"test_accuracy": float(overall["top1"]), "test_accuracy_ci_lo": float(overall["top1_lo"]),
                "test_accuracy_ci_hi": float(overall["top1_hi"]), "test_macro_f1": float(mean["f1"]),
                "test_mean_class_accuracy": float(mean["top1"]), "test_rows": float(len(self.rows)),
                "test_rows_left_out": float(self.left_out)}


def check_class_model(predictor) -> tuple[str, ...]:
    """The classes of a model that has them; anything else is one line."""
    classes = tuple(getattr(predictor, "classes", None) or ())
    if not classes:
        raise ConfigError(f"facslab evaluate scores emotion (class) models; this is a {predictor.task} model")
    return classes


def evaluate(predictor, dm) -> CrossDatasetResult:
    """Score a class predictor on a set-up emotion datamodule's test split."""
    from facslab.evaluation import per_class_metrics
    from facslab.held_out import held_out_outputs, held_out_subjects

    classes = check_class_model(predictor)
    if dm.spec != predictor.alignment:
        raise ConfigError(f"the data's crops ({dm.spec}) are not the model's ({predictor.alignment})")
    mapping = ClassMapping(tuple(classes), tuple(dm.classes))
    if not mapping.shared:
        raise ConfigError(f"the model's classes ({', '.join(classes)}) and the data's ({', '.join(dm.classes)}) "
                          "have none in common")
    probs, labels = held_out_outputs(predictor, dm)
    subjects = held_out_subjects(dm)
    model_index, data_index = (np.array(k) for k in zip(*mapping.shared))
    kept = np.isin(labels, data_index)
    relabel = {d: k for k, d in enumerate(data_index)}
    scored = probs[kept][:, model_index]
    scored = scored / scored.sum(1, keepdims=True)  # the shared classes' probabilities, renormalised
    truth = np.array([relabel[int(v)] for v in labels[kept]], dtype=int)
    shared_names = [dm.classes[d] for d in data_index]
    table = per_class_metrics(scored, truth, shared_names, groups=subjects[kept])
    rows = pd.DataFrame({"subject": subjects[kept], "true": [shared_names[t] for t in truth],
                         "predicted": [shared_names[p] for p in scored.argmax(1)],
                         "probability": scored.max(1).round(4)})
    return CrossDatasetResult(table, rows, int((~kept).sum()), mapping)


def log_evaluation(result: CrossDatasetResult, model_uri: str, data_path: str, dm, own: dict[str, str]) -> str:
    """The evaluation as its own MLflow run in the current experiment; returns its id."""
    import mlflow

    from facslab import plots
    from facslab.evaluation import confusion
    from facslab.mlflow_store import log_figure, log_table

    names = list(result.table["class"][: len(result.mapping.shared)])
    with mlflow.start_run(run_name=f"evaluate {Path(model_uri.rstrip('/')).name} on {type(dm).__name__}") as run:
        mlflow.set_tags({"kind": CROSS_DATASET_KIND, "model_uri": model_uri, "data_config": str(data_path),
                         "datamodule": type(dm).__name__, "split_id": dm.split_id(),
                         "class_mapping": result.mapping.describe(), **own})
        mlflow.log_metrics(result.metrics)
        log_table(result.table, "metrics/test_per_class.csv")
        log_table(result.rows, "predictions/test_rows.csv")
        truth = np.array([names.index(t) for t in result.rows["true"]])
        predicted = np.eye(len(names))[[names.index(p) for p in result.rows["predicted"]]]
        log_figure(plots.confusion_matrix(confusion(predicted, truth, len(names)), names,
                                          "cross-dataset confusion matrix"), "plots/test_confusion_matrix.png")
        return run.info.run_id


def own_test(model_uri: str) -> dict[str, str]:
    """A registered model's version and its own test split's accuracy, as registered: read before
    the model is loaded, so an alias moved later does not change which model the row names; for a
    run or a folder, nothing (its own test split is not known)."""
    if not model_uri.startswith("models:/"):
        return {}
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from facslab.ensemble import EnsembleError, registered_version

    try:
        version = registered_version(MlflowClient(), model_uri)
    except (MlflowException, EnsembleError) as error:
        raise ConfigError(f"--model {model_uri}: {getattr(error, 'message', error)}") from None
    tags = version.tags
    own = {"model_version": f"{version.name}/{version.version}", "model_trained_on": tags.get("datasets", "")}
    if "test_accuracy" in tags:
        own.update(own_test_accuracy=tags["test_accuracy"], own_test_accuracy_ci95=tags.get("test_accuracy_ci95", ""))
    return own


def cross_dataset_table(runs: list) -> pd.DataFrame:
    """The report's table, one row per scored model and test split: its accuracy on its own test
    split (as registered) and on each other dataset's (the newest evaluation of each pair), with
    95 % intervals over subjects and the rows left out."""
    rows: dict[tuple[str, str], dict] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):  # the newest of a pair wins
        tags, metrics = run.data.tags, run.data.metrics
        model = tags.get("model_version") or tags["model_uri"]
        trained_on = tags.get("model_trained_on", "")
        # a dataset is one column per split: another root, seed or test fraction is other rows
        split = f"{tags['datamodule']} (split {tags.get('split_id', '?')[:8]})"
        if "own_test_accuracy" in tags:
            lo, _, hi = tags.get("own_test_accuracy_ci95", "").partition("-")
            rows[model, "own test split"] = {"model": model, "trained_on": trained_on, "test_split": "own test split",
                                             "accuracy": float(tags["own_test_accuracy"]), "accuracy_lo": float(lo or "nan"),
                                             "accuracy_hi": float(hi or "nan"), "rows_left_out": 0}
        rows[model, split] = {"model": model, "trained_on": trained_on, "test_split": split,
                                           "accuracy": metrics["test_accuracy"], "accuracy_lo": metrics["test_accuracy_ci_lo"],
                                           "accuracy_hi": metrics["test_accuracy_ci_hi"],
                                           "rows_left_out": int(metrics.get("test_rows_left_out", 0))}
    return pd.DataFrame(list(rows.values()))


def cross_dataset_markdown(table: pd.DataFrame) -> str:
    splits = list(dict.fromkeys(table["test_split"]))
    lines = ["Cross-dataset accuracy: each emotion model on its own test split (as registered, over all its classes) "
             "and on other datasets' test splits (`facslab evaluate`: classes met by name; the data's rows of classes "
             "the model does not know are left out and counted, and the model answers among the classes both have, an "
             "easier choice than over all of its own). Brackets: 95 % bootstrap intervals over test subjects.", "",
             "| model | trained on | " + " | ".join(splits) + " |", "|---|---|" + "---|" * len(splits)]
    for model, group in table.groupby("model", sort=False):
        cells = {r.test_split: f"{r.accuracy:.3f} [{r.accuracy_lo:.2f}, {r.accuracy_hi:.2f}]"
                 + (f" ({r.rows_left_out} row{'s' * (r.rows_left_out != 1)} left out)" if r.rows_left_out else "") for r in group.itertuples()}
        trained_on = group["trained_on"].iloc[0] or "–"
        lines.append(f"| {model} | {trained_on} | " + " | ".join(cells.get(split, "–") for split in splits) + " |")
    return "\n".join(lines) + "\n"
