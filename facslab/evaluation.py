"""Per-AU decision thresholds and metrics (scikit-learn), shared by training, sweeps and reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, precision_recall_fscore_support

from facslab.au import AU_LABELS

THRESHOLD_POLICIES = ("fixed", "f1")


def choose_thresholds(probs: np.ndarray, labels: np.ndarray, policy: str = "f1", fixed: float = 0.5) -> np.ndarray:
    """Per-AU thresholds from validation predictions (never the test split).

    ``fixed``: the same threshold for every AU. ``f1``: per AU, the threshold that maximises F1 on
    these predictions; an AU without positives keeps ``fixed``.
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"threshold policy must be one of {THRESHOLD_POLICIES}, not {policy!r}")
    thresholds = np.full(probs.shape[1], fixed, dtype=np.float64)
    if policy == "fixed":
        return thresholds
    for k in range(probs.shape[1]):
        if labels[:, k].sum() == 0:
            continue
        precision, recall, cut = precision_recall_curve(labels[:, k], probs[:, k])
        f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
        thresholds[k] = float(cut[int(np.argmax(f1))])
    return thresholds


def per_au_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 at the thresholds and PR-AUC (average precision) per AU, plus a
    ``mean`` row (macro mean over the AUs that have positives in ``labels``)."""
    decisions = probs >= np.asarray(thresholds)[None, :]
    precision, recall, f1, support = precision_recall_fscore_support(labels, decisions, average=None, zero_division=0)
    ap = average_precisions(probs, labels)
    table = pd.DataFrame({"au": list(AU_LABELS), "precision": precision, "recall": recall, "f1": f1,
                          "pr_auc": ap, "support": support.astype(int), "threshold": thresholds})
    present = table["support"] > 0
    mean = table.loc[present, ["precision", "recall", "f1", "pr_auc"]].mean()
    mean_row = {"au": "mean", **mean.to_dict(), "support": int(table["support"].sum()), "threshold": np.nan}
    return pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)


def average_precisions(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """PR-AUC (average precision) per AU; NaN for an AU without positives, where it is undefined."""
    return np.array([average_precision_score(labels[:, k], probs[:, k]) if labels[:, k].sum() else np.nan
                     for k in range(labels.shape[1])])


def mean_pr_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro mean PR-AUC over the AUs that have positives."""
    return float(np.nanmean(average_precisions(probs, labels)))


def mean_row(table: pd.DataFrame) -> pd.Series:
    """The ``mean`` row of a ``per_au_metrics`` table."""
    return table[table["au"] == "mean"].iloc[0]
