"""Ensembles of registered emotion models, from the test outputs each logged when it was
registered (``predictions/test.npz``): no test image is looked at again, and nothing is chosen on
the test split (a member's vote weight is its validation accuracy).

* ``average``: the mean of the members' class probabilities.
* ``weighted vote``: each member votes for its top class with its validation accuracy as the
  weight; the ranking for top-2 follows the vote totals, ties broken by the averaged probabilities.

The table is the one the AffectNet backbone study reports: per-class top-1 and top-2 accuracy
for every member and ensemble, with the mean and variance across classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from facslab.errors import UsersMistake
from facslab.evaluation import per_class_metrics


class EnsembleError(UsersMistake, ValueError):
    """Members that cannot be combined (another split, other classes, no stored outputs)."""


@dataclass
class Member:
    label: str  # name/version (backbone)
    outputs: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    classes: tuple[str, ...]
    split_id: str
    weight: float  # validation accuracy


def registered_version(client: MlflowClient, uri: str):
    """``name/version``, ``name@alias`` or ``models:/...`` of either form."""
    spec = uri.removeprefix("models:/")
    if "@" in spec:
        name, alias = spec.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, version = spec.rpartition("/")
    if not name:
        raise EnsembleError(f"{uri}: give name/version or name@alias")
    if version == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise EnsembleError(f"{uri}: no version of {name} is registered")
        return max(versions, key=lambda v: int(v.version))
    return client.get_model_version(name, version)


def load_member(uri: str) -> Member:
    client = MlflowClient()
    version = registered_version(client, uri)
    try:
        path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="predictions/test.npz")
    except Exception as error:
        raise EnsembleError(f"{uri}: its run has no predictions/test.npz (registered before ensembles were kept, or "
                            f"not by `facslab sweep`/`register`): {error}") from error
    stored = np.load(path)
    weight = float(version.tags.get("cv_accuracy", "nan"))
    if not np.isfinite(weight):
        raise EnsembleError(f"{uri}: no cv_accuracy tag: not an emotion model registered by a sweep")
    backbone = client.get_run(version.run_id).data.tags.get("backbone", "?")
    return Member(f"{version.name}/{version.version} ({backbone})", stored["outputs"], stored["labels"].astype(int),
                  stored["images"], tuple(str(c) for c in stored["classes"]), str(stored["split_id"]), weight)


def check_compatible(members: list[Member]) -> None:
    if len(members) < 2:
        raise EnsembleError(f"an ensemble needs two or more members, got {len(members)}")
    first = members[0]
    for member in members[1:]:
        if member.split_id != first.split_id:
            raise EnsembleError(f"{member.label} was tested on split {member.split_id}, {first.label} on {first.split_id}")
        if member.classes != first.classes:
            raise EnsembleError(f"{member.label} has classes {member.classes}, {first.label} {first.classes}")
        if not np.array_equal(member.images, first.images):
            raise EnsembleError(f"{member.label} and {first.label} stored their test images in another order")


def average(members: list[Member]) -> np.ndarray:
    return np.mean([m.outputs for m in members], axis=0)


def weighted_vote(members: list[Member]) -> np.ndarray:
    """Vote totals per class (each member's top class gets its weight), plus a tie-breaking
    fraction of the averaged probabilities; rows rank classes like scores."""
    totals = np.zeros_like(members[0].outputs)
    rows = np.arange(len(totals))
    for member in members:
        totals[rows, member.outputs.argmax(1)] += member.weight
    return totals + 1e-6 * average(members)


def ensemble_table(members: list[Member]) -> pd.DataFrame:
    """One row per member and per ensemble: per-class top-1 and top-2 accuracy, with the mean and
    variance across classes, and the overall accuracy."""
    check_compatible(members)
    labels, classes = members[0].labels, members[0].classes
    scored = [(m.label, m.outputs, m.weight) for m in members]
    scored += [("average", average(members), np.nan), ("weighted vote", weighted_vote(members), np.nan)]
    rows = []
    for label, outputs, weight in scored:
        table = per_class_metrics(outputs, labels, classes, n_boot=0).set_index("class")
        row = {"model": label, "validation_accuracy": weight}
        row.update({f"top1_{c}": table.loc[c, "top1"] for c in classes})
        row.update({"top1_mean": table.loc["mean", "top1"], "top1_var": table.loc["mean", "top1_var"]})
        row.update({f"top2_{c}": table.loc[c, "top2"] for c in classes})
        row.update({"top2_mean": table.loc["mean", "top2"], "top2_var": table.loc["mean", "top2_var"],
                    "accuracy": table.loc["overall", "top1"]})
        rows.append(row)
    return pd.DataFrame(rows)


def ensemble_markdown(table: pd.DataFrame, classes: tuple[str, ...]) -> str:
    lines = ["Ensembles of registered emotion models on their common test split (stored outputs; vote weights are "
             "validation accuracies). Per-class top-1 / top-2 accuracy; mean and variance across classes.", "",
             "| model | " + " | ".join(classes) + " | top-1 mean | top-1 var | top-2 mean | top-2 var |",
             "|---|" + "---|" * (len(classes) + 4)]
    for row in table.itertuples(index=False):
        values = row._asdict()
        cells = [f"{values[f'top1_{c}']:.2f} / {values[f'top2_{c}']:.2f}" for c in classes]
        lines.append(f"| {row.model} | " + " | ".join(cells) +
                     f" | {row.top1_mean:.3f} | {row.top1_var:.4f} | {row.top2_mean:.3f} | {row.top2_var:.4f} |")
    return "\n".join(lines) + "\n"


def build_ensemble_report(uris: list[str], out: Path) -> tuple[pd.DataFrame, str]:
    members = [load_member(uri) for uri in uris]
    table = ensemble_table(members)
    table.to_csv(out / "ensemble.csv", index=False)
    markdown = ensemble_markdown(table, members[0].classes)
    (out / "ensemble.md").write_text(markdown)
    return table, markdown
