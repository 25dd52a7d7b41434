"""Figures people would rather look at than tables: training curves, PR curves, sweep plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402

from facslab.au import AU_LABELS  # noqa: E402


def training_curves(histories: dict[str, list[dict]], title: str = "training curves"):
    """Train and validation loss per epoch, one line pair per named history (e.g. per fold)."""
    figure, ax = plt.subplots(figsize=(6, 4))
    for k, (name, history) in enumerate(histories.items()):
        colour = f"C{k}"
        epochs = [h["epoch"] + 1 for h in history]
        for key, style in (("train_loss", "--"), ("val_loss", "-")):
            values = [h.get(key, np.nan) for h in history]
            if not np.all(np.isnan(values)):
                ax.plot(epochs, values, style, color=colour, label=f"{name} {key.split('_')[0]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def pr_curves(probs: np.ndarray, labels: np.ndarray, title: str = "precision-recall per AU"):
    """One small precision-recall plot per AU, with its average precision."""
    figure, axes = plt.subplots(3, 6, figsize=(14, 7), sharex=True, sharey=True)
    for k, ax in enumerate(axes.flat):
        ax.set_title(f"AU{AU_LABELS[k]}", fontsize=9)
        known = ~np.isnan(labels[:, k])  # NaN: not coded by the dataset
        if np.nansum(labels[:, k]) == 0:
            ax.text(0.5, 0.5, "no positives" if known.any() else "not coded", ha="center", va="center", fontsize=8)
            continue
        truth, scores = labels[known, k], probs[known, k]
        precision, recall, _ = precision_recall_curve(truth, scores)
        ax.plot(recall, precision)
        ax.text(0.05, 0.05, f"AP {average_precision_score(truth, scores):.2f}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def bar_chart(labels, values, ylabel: str, title: str, errors=None):
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.bar([str(v) for v in labels], values, yerr=errors, capsize=3)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    figure.tight_layout()
    return figure


def line_chart(x, series: dict[str, list], xlabel: str, ylabel: str, title: str):
    figure, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    figure.tight_layout()
    return figure


def confusion_matrix(counts: np.ndarray, classes, title: str = "confusion matrix"):
    """Row-normalised confusion matrix (rows: true class), with the counts written in the cells."""
    import matplotlib.pyplot as plt

    counts = np.asarray(counts)
    rates = counts / np.clip(counts.sum(1, keepdims=True), 1, None)
    figure, ax = plt.subplots(figsize=(1.0 + 0.75 * len(classes), 0.8 + 0.7 * len(classes)))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black",
                    fontsize=8)
    ax.set_title(title)
    figure.tight_layout()
    return figure


def valence_arousal_scatter(pred: np.ndarray, true: np.ndarray, title: str = "valence and arousal"):
    """Predicted against annotated valence and arousal, one panel each, with the identity line."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for k, (ax, name) in enumerate(zip(axes, ("valence", "arousal"))):
        ax.scatter(true[:, k], pred[:, k], s=8, alpha=0.6)
        ax.plot([-1, 1], [-1, 1], color="grey", lw=1)
        ax.set_xlim(-1.05, 1.05), ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel(f"annotated {name}"), ax.set_ylabel(f"predicted {name}")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_grid(matrices: dict[str, np.ndarray], classes, title: str):
    """Row-normalised confusion matrices side by side (three per row)."""
    import matplotlib.pyplot as plt

    n = len(matrices)
    columns = min(3, n)
    rows = (n + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.0 * rows), squeeze=False)
    for ax, (name, counts) in zip(axes.ravel(), matrices.items()):
        rates = counts / np.clip(counts.sum(1, keepdims=True), 1, None)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_title(name, fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def heatmap(frame, title: str):
    """A table of values in [0, 1] (rows x columns) as a heat map with the values written in."""
    import matplotlib.pyplot as plt

    values = frame.to_numpy(dtype=float)
    figure, ax = plt.subplots(figsize=(0.55 * values.shape[1] + 2, 0.45 * values.shape[0] + 1.5))
    ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(values.shape[1]), list(frame.columns), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(values.shape[0]), list(frame.index), fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if values[i, j] > 0.5 else "white")
    ax.set_title(title)
    figure.tight_layout()
    return figure
