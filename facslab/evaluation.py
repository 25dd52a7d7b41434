"""Per-AU decision thresholds and metrics (scikit-learn), shared by training, sweeps and reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, precision_recall_curve, precision_recall_fscore_support

from facslab.au import AU_LABELS
from facslab.metrics import average_precision, concordance, icc_3_1

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
        known = ~np.isnan(labels[:, k])
        if np.nansum(labels[:, k]) == 0:
            continue
        precision, recall, cut = precision_recall_curve(labels[known, k], probs[known, k])
        f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
        thresholds[k] = float(cut[int(np.argmax(f1))])
    return thresholds


def per_au_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray,
                   groups: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Precision, recall, F1 at the thresholds and PR-AUC (average precision) per AU, plus a
    ``mean`` row (macro mean over the AUs that have positives in ``labels``). With ``groups``
    (the subject of every row), 95 % bootstrap intervals over subjects: ``pr_auc_lo/hi``, ``f1_lo/hi``."""
    decisions = probs >= np.asarray(thresholds)[None, :]
    precision, recall, f1, support = per_au_scores(decisions, labels)
    ap = average_precisions(probs, labels)
    table = pd.DataFrame({"au": list(AU_LABELS), "precision": precision, "recall": recall, "f1": f1,
                          "pr_auc": ap, "support": support.astype(int), "threshold": thresholds})
    present = (support > 0)
    # the same sums in the same order as every bootstrap resample's (an interval of all-equal
    # resamples is then exactly the point, not an ulp beside it)
    mean = {name: float(np.asarray(values)[present].mean()) if present.any() else float("nan")
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1), ("pr_auc", ap))}
    mean_row = {"au": "mean", **mean, "support": int(table["support"].sum()), "threshold": np.nan}
    table = pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)
    if groups is not None:
        intervals = bootstrap_intervals(probs, labels, decisions, np.asarray(groups), n_boot, seed)
        for name, values in intervals.items():
            table[name] = values
    return table


def per_au_scores(decisions: np.ndarray, labels: np.ndarray):
    """Precision, recall, F1 and support (positives) per AU over the rows where the label is
    known (NaN: not coded, masked out)."""
    n = labels.shape[1]
    precision, recall, f1, support = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, int)
    for k in range(n):
        known = ~np.isnan(labels[:, k])
        if not known.any():
            continue
        p, r, f, _ = precision_recall_fscore_support(labels[known, k] > 0, decisions[known, k], average="binary",
                                                     zero_division=0)
        precision[k], recall[k], f1[k], support[k] = p, r, f, int((labels[known, k] > 0).sum())
    return precision, recall, f1, support


def _f1_scores(decisions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    known = ~np.isnan(labels)
    positive = labels > 0
    decisions = decisions & known
    tp = (decisions & positive).sum(0)
    wrong = (decisions & ~positive).sum(0) + (~decisions & positive).sum(0)
    f1 = np.divide(2 * tp, 2 * tp + wrong, out=np.zeros(labels.shape[1]), where=(2 * tp + wrong) > 0)
    return np.where(positive.any(0), f1, np.nan)


class BootstrapError(ValueError):
    """Too few resamples had what the point estimate needs to be computed the same way."""


def grouped_bootstrap(statistic, n_rows: int, groups: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of ``statistic(rows)`` (a vector) over resamples of whole groups
    (subjects: rows of one subject are not independent) or, without ``groups``, of rows.

    ``valid(rows)`` says whether a resample can give the point estimate's quantity: an average
    over a fixed set of AUs, say, is undefined where a resample lost every positive of one of
    them. Such resamples are drawn again rather than averaged over fewer AUs, which would make
    the interval one of another quantity (the bootstrap conditioned on every AU being scorable)."""
    groups = np.arange(n_rows) if groups is None else np.asarray(groups)
    rows_of = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(seed)
    draws, tries = [], 0
    while len(draws) < n_boot:
        tries += 1
        if tries > 50 * n_boot:
            raise BootstrapError(f"only {len(draws)} of {tries - 1} resamples of {len(rows_of)} groups could give "
                                 "the point estimate's quantity")
        rows = np.concatenate([rows_of[k] for k in rng.integers(len(rows_of), size=len(rows_of))])
        if valid is None or valid(rows):
            with np.errstate(all="ignore"):
                draws.append(np.asarray(statistic(rows), np.float64))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.stack(draws), [tail, 100 - tail], axis=0)
    return lo, hi


def bootstrap_intervals(probs: np.ndarray, labels: np.ndarray, decisions: np.ndarray, groups: np.ndarray,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, np.ndarray]:
    """Percentile intervals of per-AU and mean PR-AUC and F1, resampling whole subjects. Every
    resample averages over the AUs the point estimate averages over (those with positives)."""
    scored = (labels > 0).any(0)
    n_aus = labels.shape[1]

    def statistic(rows):
        ap = average_precisions(probs[rows], labels[rows])
        f1 = _f1_scores(decisions[rows], labels[rows])
        return np.r_[ap, ap[scored].mean(), f1, f1[scored].mean()]

    lo, hi = grouped_bootstrap(statistic, len(labels), groups, n_boot, seed, level,
                               valid=lambda rows: bool((labels[rows][:, scored] > 0).any(0).all()))
    return {"pr_auc_lo": lo[:n_aus + 1], "pr_auc_hi": hi[:n_aus + 1],
            "f1_lo": lo[n_aus + 1:], "f1_hi": hi[n_aus + 1:]}




def average_precisions(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """PR-AUC (average precision) per AU over its known labels; NaN for an AU without positives,
    where it is undefined."""
    out = []
    for k in range(labels.shape[1]):
        known = ~np.isnan(labels[:, k])
        out.append(average_precision(labels[known, k], probs[known, k]) if known.any() else float("nan"))
    return np.array(out)


def mean_pr_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro mean PR-AUC over the AUs that have positives."""
    return float(np.nanmean(average_precisions(probs, labels)))


def plain_bce(probs: np.ndarray, labels: np.ndarray) -> float:
    """BCE over the known labels with no class weights: the same loss whatever ``pos_weight`` a
    model trained with (which follows its own training split's label frequencies)."""
    known = ~np.isnan(labels)
    return float(log_loss(labels[known], np.clip(probs[known], 1e-7, 1 - 1e-7), labels=[0, 1]))


def mean_row(table: pd.DataFrame) -> pd.Series:
    """The ``mean`` row of a ``per_au_metrics`` table."""
    return table[table["au"] == "mean"].iloc[0]


def top_k_hits(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per row: is the label among the ``k`` most probable classes."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (top == np.asarray(labels)[:, None]).any(1)


def per_class_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str] | tuple[str, ...],
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                      groups: np.ndarray | None = None) -> pd.DataFrame:
    """Multi-class results, one row per class: top-1 accuracy (the class's recall), top-2
    accuracy, precision, F1 and support; then ``mean`` (the mean over classes, with their
    variance in ``top1_var``/``top2_var``, as the AffectNet backbone tables report) and ``overall``
    (accuracy over all rows, top-2, macro F1) with 95 % bootstrap intervals over ``groups``
    (subjects) where the data has them, else over rows."""
    labels = np.asarray(labels).astype(int)
    predicted = probs.argmax(1)
    n = len(classes)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(n),
                                                                     average=None, zero_division=0)
    top2 = top_k_hits(probs, labels, 2)
    top2_per_class = np.array([top2[labels == c].mean() if (labels == c).any() else np.nan for c in range(n)])
    table = pd.DataFrame({"class": list(classes), "top1": np.where(support > 0, recall, np.nan), "top2": top2_per_class,
                          "precision": precision, "f1": np.where(support > 0, f1, np.nan), "support": support.astype(int)})
    present = table["support"] > 0
    mean = {"class": "mean", "top1": table.loc[present, "top1"].mean(), "top2": table.loc[present, "top2"].mean(),
            "precision": table.loc[present, "precision"].mean(), "f1": table.loc[present, "f1"].mean(),
            "support": int(support.sum()), "top1_var": table.loc[present, "top1"].var(ddof=0),
            "top2_var": table.loc[present, "top2"].var(ddof=0)}
    hits = predicted == labels
    overall = {"class": "overall", "top1": hits.mean() if len(hits) else np.nan, "top2": top2.mean() if len(top2) else np.nan,
               "f1": mean["f1"], "support": int(support.sum())}
    if len(labels) and n_boot > 0:
        lo, hi = grouped_bootstrap(lambda rows: [hits[rows].mean(), top2[rows].mean()], len(labels), groups, n_boot,
                                   seed, level)
        overall.update(top1_lo=lo[0], top1_hi=hi[0], top2_lo=lo[1], top2_hi=hi[1])
    return pd.concat([table, pd.DataFrame([mean, overall])], ignore_index=True)


def class_row(table: pd.DataFrame, name: str = "overall") -> pd.Series:
    """The ``overall`` (or ``mean``) row of a ``per_class_metrics`` table."""
    return table[table["class"] == name].iloc[0]


def confusion(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted ones."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(labels).astype(int), probs.argmax(1), labels=list(range(n_classes)))




def affect_metrics(pred: np.ndarray, true: np.ndarray, names=("valence", "arousal"), n_boot: int = 1000,
                   seed: int = 0, level: float = 0.95, groups: np.ndarray | None = None) -> pd.DataFrame:
    """Per dimension (and their ``mean``): RMSE, Pearson correlation, CCC and sign agreement
    (SAGR), with 95 % bootstrap intervals of the CCC over ``groups`` (subjects) where the data
    has them, else over rows."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    rmse = np.sqrt(((pred - true) ** 2).mean(0))
    pcc = np.array([np.corrcoef(pred[:, k], true[:, k])[0, 1] if len(pred) > 1 else np.nan for k in range(pred.shape[1])])
    ccc = concordance(pred, true)
    sagr = (np.sign(pred) == np.sign(true)).mean(0)
    table = pd.DataFrame({"dimension": list(names), "rmse": rmse, "pcc": pcc, "ccc": ccc, "sagr": sagr})
    table = pd.concat([table, pd.DataFrame([{"dimension": "mean", "rmse": rmse.mean(), "pcc": pcc.mean(),
                                             "ccc": ccc.mean(), "sagr": sagr.mean()}])], ignore_index=True)
    if len(pred) > 1 and n_boot > 0:
        def statistic(rows):
            ccc = concordance(pred[rows], true[rows])
            return np.r_[ccc, ccc.mean()]

        table["ccc_lo"], table["ccc_hi"] = grouped_bootstrap(statistic, len(pred), groups, n_boot, seed, level,
                                                             valid=lambda rows: len(np.unique(rows)) > 1)
    return table


def au_affect_interval(probs: np.ndarray, aus: np.ndarray, pred: np.ndarray, true: np.ndarray, groups: np.ndarray,
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The interval of the AU+affect score, (mean PR-AUC + mean CCC) / 2, over resamples of the
    subjects of every row. ``aus`` is NaN on rows without AU labels, ``true`` on rows without
    valence/arousal: each half is scored on its own rows of the resample, as the point estimate is,
    and every resample averages over the AUs the point estimate does."""
    au_rows, affect_rows = ~np.isnan(aus).all(1), ~np.isnan(true).any(1)
    scored = (aus[au_rows] > 0).any(0)
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)

    def halves(rows):
        return rows[au_rows[rows]], rows[affect_rows[rows]]

    def statistic(rows):
        a, v = halves(rows)
        return np.r_[(average_precisions(probs[a], aus[a])[scored].mean() + concordance(pred[v], true[v]).mean()) / 2]

    def valid(rows):
        a, v = halves(rows)
        return bool((aus[a][:, scored] > 0).any(0).all()) and len(np.unique(v)) > 1

    lo, hi = grouped_bootstrap(statistic, len(aus), groups, n_boot, seed, level, valid=valid)
    return float(lo[0]), float(hi[0])




def intensity_metrics(pred: np.ndarray, true: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 500,
                      seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """ICC(3,1) and MAE per AU over its annotated rows (AUs a dataset does not grade are left
    out), and their ``mean``; with ``groups`` (subjects), bootstrap intervals of the mean ICC."""
    rows = []
    for k, label in enumerate(AU_LABELS):
        known = ~np.isnan(true[:, k])
        if known.sum() < 2:
            continue
        rows.append({"au": label, "icc": icc_3_1(pred[:, k], true[:, k]),
                     "mae": float(np.abs(pred[known, k] - true[known, k]).mean()), "n": int(known.sum()),
                     "mean_intensity": float(true[known, k].mean())})
    table = pd.DataFrame(rows, columns=["au", "icc", "mae", "n", "mean_intensity"])
    mean = {"au": "mean", "icc": table["icc"].mean(), "mae": table["mae"].mean(), "n": int(table["n"].sum()),
            "mean_intensity": np.nan}
    if groups is not None and len(table):
        # the point estimate averages the AUs with an ICC; a resample averages the same AUs
        columns = [AU_LABELS.index(a) for a, icc in zip(table["au"], table["icc"]) if np.isfinite(icc)]

        def iccs(rows):
            return np.array([icc_3_1(pred[rows, k], true[rows, k]) for k in columns])

        lo, hi = grouped_bootstrap(lambda rows: [iccs(rows).mean()], len(true), groups, n_boot, seed, level,
                                   valid=lambda rows: bool(np.isfinite(iccs(rows)).all()))
        mean["icc_lo"], mean["icc_hi"] = float(lo[0]), float(hi[0])
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def class_free_mean(table: pd.DataFrame, column: str) -> float:
    """The ``mean`` row's value of an ``affect_metrics`` table."""
    return float(table.loc[table["dimension"] == "mean", column].iloc[0])
