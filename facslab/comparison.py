"""Registered models side by side on the test rows they share: a joint AU + valence/arousal model
beside single-task AU and valence/arousal models (the in-the-wild study's comparison).

Nothing is looked at again: each model's figures are the test tables it logged at its one test
look (``metrics/test_per_au.csv``: per-AU F1 and PR-AUC; ``metrics/test_affect.csv``: valence and
arousal CCC; each with 95 % intervals over test subjects), and the rows they were computed on come
from its stored test outputs (``predictions/test.npz``). Models are compared only where they were
tested on the same rows: every model with AU figures on the same AU rows, every model with
valence/arousal figures on the same valence/arousal rows; anything else is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from facslab.au import NUM_AUS
from facslab.errors import ConfigError
from facslab.mlflow_store import environment_kept

AU_TABLE, AFFECT_TABLE = "metrics/test_per_au.csv", "metrics/test_affect.csv"


@dataclass
class TestedModel:
    label: str  # name/version (task, backbone)
    au_table: pd.DataFrame | None
    affect_table: pd.DataFrame | None
    au_rows: frozenset[str]  # the test images its AU figures were computed on
    affect_rows: frozenset[str]


def _row_keys(images: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> frozenset[str]:
    """Test rows by image folder and file (``images/x.jpg``, ``<video>/00012.jpg``: the same
    whichever folder the dataset was read from) and by their labels (another copy with the same
    names is other rows)."""
    return frozenset(f"{'/'.join(Path(str(name)).parts[-2:])}:{np.round(label, 4).tobytes().hex()}"
                     for name, label in zip(images[rows], labels[rows]))


def load_tested(uri: str) -> TestedModel:
    """``name/version`` or ``name@alias``: its test tables and the rows behind them."""
    from facslab.ensemble import registered_version

    client = MlflowClient()
    try:
        version = registered_version(client, uri)
    except MlflowException as error:
        raise ConfigError(f"compare: {uri}: {error.message}") from None
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "metrics")}
    tables = {path: pd.read_csv(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=path),
                                keep_default_na=False, na_values=[""])
              for path in (AU_TABLE, AFFECT_TABLE) if path in artifacts}
    if not tables:
        raise ConfigError(f"compare: {uri} logged no per-AU or valence/arousal test table (an emotion model, or not "
                          "registered by `facslab sweep`)")
    try:
        stored = np.load(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="predictions/test.npz"))
    except Exception as error:
        raise ConfigError(f"compare: {uri} has no stored test outputs (predictions/test.npz), so the rows it was "
                          f"tested on are unknown: {error}") from error
    labels, images = stored["labels"].astype(np.float64), stored["images"]
    if labels.ndim == 1:
        labels = labels[:, None]
    # AU columns lead and valence/arousal close the label rows (AU + affect models have both)
    au_rows = ~np.isnan(labels[:, :NUM_AUS]).all(1) if AU_TABLE in tables else np.zeros(len(labels), bool)
    affect_rows = ~np.isnan(labels[:, -2:]).any(1) if AFFECT_TABLE in tables else np.zeros(len(labels), bool)
    tags = client.get_run(version.run_id).data.tags
    label = f"{version.name}/{version.version} ({version.tags.get('task', '?')}, {tags.get('backbone', '?')})"
    return TestedModel(label, tables.get(AU_TABLE), tables.get(AFFECT_TABLE),
                       _row_keys(images, labels[:, :NUM_AUS], au_rows), _row_keys(images, labels[:, -2:], affect_rows))


def _check_same_rows(models: list[TestedModel], part: str) -> list[TestedModel]:
    having = [m for m in models if getattr(m, f"{part}_table") is not None]
    for model in having[1:]:
        first, rows = having[0], getattr(model, f"{part}_rows")
        if rows != getattr(first, f"{part}_rows"):
            only = len(rows - getattr(first, f"{part}_rows"))
            raise ConfigError(f"compare: {model.label} was tested on other {part.replace('au', 'AU')} rows than "
                              f"{first.label} ({len(rows)} against {len(getattr(first, f'{part}_rows'))}, {only} not in "
                              "the other's): register both from the same data and split")
    return having


def comparison_tables(models: list[TestedModel]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per AU (and their mean): each model's F1 and PR-AUC with intervals; per dimension
    (valence, arousal, mean): each model's CCC with its interval. One column per model and figure."""
    if len(models) < 2:
        raise ConfigError(f"compare: give two or more models, got {len(models)}")
    labels = [m.label for m in models]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"compare: {', '.join(twice)} given twice (an alias and its version are one model)")
    au = pd.DataFrame()
    for model in _check_same_rows(models, "au"):
        table = model.au_table.set_index("au")
        for metric in ("f1", "pr_auc"):
            for suffix in ("", "_lo", "_hi"):
                au[f"{model.label} {metric}{suffix}"] = table[f"{metric}{suffix}"]
        au["support"] = table["support"]
    affect = pd.DataFrame()
    for model in _check_same_rows(models, "affect"):
        table = model.affect_table.set_index("dimension")
        for suffix in ("", "_lo", "_hi"):
            affect[f"{model.label} ccc{suffix}"] = table[f"ccc{suffix}"]
    return au.rename_axis("au").reset_index(), affect.rename_axis("dimension").reset_index()


def _cell(row, column: str) -> str:
    value, lo, hi = row[column], row.get(f"{column}_lo", np.nan), row.get(f"{column}_hi", np.nan)
    if pd.isna(value):
        return "–"
    return f"{value:.3f}" + (f" [{lo:.2f}, {hi:.2f}]" if not pd.isna(lo) else "")


def comparison_markdown(models: list[TestedModel], au: pd.DataFrame, affect: pd.DataFrame) -> str:
    lines = ["Joint and single-task models on the test rows they share (each evaluated once, at registration). "
             "Brackets: 95 % bootstrap intervals over test subjects.", ""]
    with_au = [m.label for m in models if m.au_table is not None]
    if with_au:
        lines += ["| AU | positives | " + " | ".join(f"{label} F1 | PR-AUC" for label in with_au) + " |",
                  "|---|---|" + "---|---|" * len(with_au)]
        for _, row in au.iterrows():
            name = "**mean**" if row["au"] == "mean" else f"AU{row['au']}"
            cells = [f"{_cell(row, f'{label} f1')} | {_cell(row, f'{label} pr_auc')}" for label in with_au]
            lines.append(f"| {name} | {int(row['support'])} | " + " | ".join(cells) + " |")
        lines.append("")
    with_affect = [m.label for m in models if m.affect_table is not None]
    if with_affect:
        lines += ["| dimension | " + " | ".join(f"{label} CCC" for label in with_affect) + " |",
                  "|---|" + "---|" * len(with_affect)]
        for _, row in affect.iterrows():
            lines.append(f"| {row['dimension']} | " + " | ".join(_cell(row, f"{label} ccc") for label in with_affect) + " |")
    return "\n".join(lines) + "\n"


def comparison_figure(models: list[TestedModel], au: pd.DataFrame):
    """Per-AU PR-AUC of every model with AU figures, bars with their intervals."""
    import matplotlib.pyplot as plt

    with_au = [m.label for m in models if m.au_table is not None]
    if not with_au:
        return None
    shown = au[au["support"] > 0]
    if shown.empty:
        return None
    figure, ax = plt.subplots(figsize=(max(6, 0.7 * len(shown) * len(with_au)), 4))
    width = 0.8 / len(with_au)
    x = np.arange(len(shown))
    for k, label in enumerate(with_au):
        value = shown[f"{label} pr_auc"].to_numpy(float)
        error = np.vstack([value - shown[f"{label} pr_auc_lo"], shown[f"{label} pr_auc_hi"] - value])
        ax.bar(x + k * width, value, width, yerr=np.clip(error, 0, None), capsize=2, label=label)
    ax.set_xticks(x + 0.4 - width / 2, [a if a == "mean" else f"AU{a}" for a in shown["au"]], rotation=45)
    ax.set_ylabel("test PR-AUC")
    ax.set_title("joint vs single-task models: per-AU PR-AUC on the same test rows")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def build_comparison_report(uris: list[str], out: Path) -> str:
    """comparison_au.csv, comparison_affect.csv, comparison.md and comparison_pr_auc.png under ``out``."""
    import matplotlib.pyplot as plt

    # a bar per small table would bury the report's own lines (and a refusal's one line)
    with environment_kept("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        models = [load_tested(uri) for uri in uris]
    au, affect = comparison_tables(models)
    au.to_csv(out / "comparison_au.csv", index=False)
    affect.to_csv(out / "comparison_affect.csv", index=False)
    markdown = comparison_markdown(models, au, affect)
    figure = comparison_figure(models, au)
    if figure is not None:
        figure.savefig(out / "comparison_pr_auc.png", dpi=110)
        plt.close(figure)
        markdown += "\n![comparison_pr_auc.png](comparison_pr_auc.png)\n"
    (out / "comparison.md").write_text(markdown)
    return markdown
