"""The definitions of the scores, once, for training, validation and the test tables.

* ``concordance``: Lin's concordance correlation with population moments, as the field reports it
  (AVEC, Aff-Wild). One function for numpy arrays and torch tensors (differentiable), so the CCC
  loss, ``val_ccc`` and the test table's CCC are one definition. torchmetrics'
  ``concordance_corrcoef`` divides the variances by n - 1 but not the mean term: another estimator.
* ``icc_3_1``: ICC(3,1) between prediction and annotation (validation and test).
* ``average_precision``: scikit-learn's ``average_precision_score`` in a few numpy calls (the test
  tables' bootstraps call it tens of thousands of times); validation uses torchmetrics'
  ``binary_average_precision``, the same definition (tests/registry/test_evaluation.py checks the three agree).
"""

from __future__ import annotations

import numpy as np

#: added to CCC's denominator: a constant prediction of a constant truth scores 0, not NaN
CCC_EPSILON = 1e-8


def concordance(pred, true):
    """Lin's concordance correlation per column of (rows, columns) numpy arrays or torch tensors."""
    pred_mean, true_mean = pred.mean(0), true.mean(0)
    covariance = ((pred - pred_mean) * (true - true_mean)).mean(0)
    return 2 * covariance / (_variance(pred) + _variance(true) + (pred_mean - true_mean) ** 2 + CCC_EPSILON)


def _variance(x):
    """The population variance per column: torch's ``var`` needs ``unbiased=False``, numpy's is it."""
    return x.var(0) if isinstance(x, np.ndarray) else x.var(0, unbiased=False)


def icc_3_1(pred: np.ndarray, true: np.ndarray) -> float:
    """ICC(3,1) (two-way mixed, consistency, single rater) between a prediction and an annotation
    over the rows where the annotation is known; NaN with under 2 rows, no variance, or a NaN
    prediction among them (a diverged model is not scored on its finite rows)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    known = ~np.isnan(true)
    if np.isnan(pred[known]).any():
        return float("nan")
    pair = np.stack([pred[known], true[known]], 1)
    n = len(pair)
    if n < 2:
        return float("nan")
    grand = pair.mean()
    ss_rows = 2 * ((pair.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((pair.mean(0) - grand) ** 2).sum()
    ss_error = ((pair - grand) ** 2).sum() - ss_rows - ss_cols
    ms_rows, ms_error = ss_rows / (n - 1), ss_error / (n - 1)
    return float((ms_rows - ms_error) / (ms_rows + ms_error)) if ms_rows + ms_error > 0 else float("nan")


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` (step-wise, ties grouped); NaN without positives."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order] > 0
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last row of each distinct score
    tps = np.cumsum(labels)[last]
    if tps[-1] == 0:
        return float("nan")
    precision, recall = tps / (last + 1), tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
