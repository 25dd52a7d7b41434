"""The report's tables and figures, regenerated from MLflow runs.

* Table 1: per-AU precision, recall, F1 and PR-AUC of the registered champion on the held-out
  test split, with the mean row.
* Fig. 4: pretraining validation loss vs the fraction of pretraining data used.
* Fig. 6: validation loss per backbone (pretraining runs, and the sweep's trials).
* Fig. 7: training curves and per-AU PR-AUC for 0, 1 and 2 unfrozen blocks (best trial of each).
* With ``ensemble``: the per-class top-1/top-2 table of registered emotion models and of their
  average and accuracy-weighted vote (``facslab.ensemble``).
* The cross-dataset table, when the experiment has ``facslab evaluate`` runs: each emotion model
  on its own test split and on the others (``facslab.cross_dataset``).
* With ``compare``: registered models side by side on the test rows they share, e.g. the joint
  AU + valence/arousal model beside single-task ones (``facslab.comparison``).

Written as Markdown, CSV and PNG under ``output`` and logged to an MLflow run (stage ``report``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from facslab import plots
from facslab.au import AU_LABELS
from facslab.config import ConfigError
from facslab.cross_dataset import CROSS_DATASET_KIND
from facslab.mlflow_store import setup_tracking

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    output: str = "reports/latest"
    experiment: str = "facslab"
    tracking_uri: str | None = None
    model_name: str = "facslab-au"
    alias: str = "champion"
    study: str | None = None  # the sweep whose trials feed Fig. 6 and 7 (None: all trials)
    #: registered emotion models to combine (``name/version`` or ``name@alias``): the ensemble table
    ensemble: list[str] = field(default_factory=list)
    #: registered models to set side by side (per-AU F1 and PR-AUC, valence/arousal CCC) on the test
    #: rows they share: the comparison table
    compare: list[str] = field(default_factory=list)


#: files a report writes only when their section has something to show (Table 1, the figures, an
#: ensemble, a comparison, the cross-dataset table)
OPTIONAL_FILES = ("table1.csv", "table1.md", "fig4_val_loss_vs_fraction.png", "fig6_val_loss_per_backbone.png",
                  "fig7_training_curves.png", "fig7_per_au_pr_auc.png", "ensemble.csv", "ensemble.md", "comparison.md",
                  "comparison_au.csv", "comparison_affect.csv", "comparison_pr_auc.png", "cross_dataset.md",
                  "cross_dataset.csv")


def _runs(experiment_id: str, stage: str, extra: str = "") -> list:
    """Finished runs of a stage (any stage: ``""``) matching ``extra``."""
    query = " and ".join([f"tags.stage = '{stage}'"] * bool(stage) + ["attributes.status = 'FINISHED'"] + [extra] * bool(extra))
    return mlflow.search_runs([experiment_id], filter_string=query, output_format="list", max_results=5000)


def table1(config: ReportConfig) -> tuple[pd.DataFrame, str, str]:
    """The champion's held-out test table (the one its task's test evaluation logged first), where
    it comes from, and its task."""
    client = MlflowClient()
    version = client.get_model_version_by_alias(config.model_name, config.alias)
    tags = version.tags
    task = tags.get("task", "au")
    if "test_table" not in tags and task != "au":  # a port (facslab port-fer) was never tested here
        raise ValueError(f"{config.model_name} version {version.version} has no held-out test table (not registered "
                         "by a sweep)")
    # AU versions registered by a sweep before the tag was written have this table
    path = mlflow.artifacts.download_artifacts(run_id=version.run_id,
                                               artifact_path=tags.get("test_table", "metrics/test_per_au.csv"))
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    cv_key = next((k for k in tags if k.startswith("cv_") and not k.endswith("_std")), None)
    cv = (f", cross-validated {_metric_label(task, cv_key.removeprefix('cv_'))} {float(tags[cv_key]):.3f} ± "
          f"{float(tags.get(cv_key + '_std', 'nan')):.3f}" if cv_key else "")
    data = f", trained on {tags['datasets']}" if "datasets" in tags else ""
    return table, f"{config.model_name} version {version.version} (run {version.run_id}{cv}{data})", tags.get("task", "au")


def _metric_label(task: str, metric: str) -> str:
    """The task's name for its metric (PR-AUC, CCC); the metric's own for a task not loaded here."""
    from facslab.tasks import TASKS

    return TASKS[task].metric_label if task in TASKS and TASKS[task].metric == metric else metric


def table1_markdown(table: pd.DataFrame, source: str) -> str:
    """The table as Markdown; a column ``x`` with ``x_lo`` and ``x_hi`` beside it is shown with its
    interval in brackets."""
    intervals = {c for c in table if f"{c}_lo" in table and f"{c}_hi" in table}
    shown = [c for c in table if not (c.endswith(("_lo", "_hi")) and c[:-3] in intervals)]
    lines = [f"Table 1: held-out test split (evaluated once), {source}. Brackets: 95 % bootstrap intervals "
             "over test subjects.", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]

    def cell(row, name: str) -> str:
        value = row[name]
        if pd.isna(value):
            return "–"
        if not isinstance(value, float):
            if value in ("mean", "overall"):
                return f"**{value}**"
            return f"AU{value}" if name == "au" else str(value)
        lo, hi = (row[f"{name}_lo"], row[f"{name}_hi"]) if name in intervals else (float("nan"), float("nan"))
        return f"{value:.3f}" + (f" [{lo:.2f}, {hi:.2f}]" if not pd.isna(lo) else "")

    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row, c) for c in shown) + " |")
    return "\n".join(lines) + "\n"


def _metric(run, key: str) -> float:
    return float(run.data.metrics.get(key, np.nan))


def figure4(experiment_id: str):
    """Validation loss vs the fraction of pretraining data, one line per backbone and image size.
    The loss is ``best_val_bce`` (no pos_weight, on the validation set every fraction shares), not
    ``best_val_loss``, whose pos_weight follows each fraction's own training labels."""
    runs = _runs(experiment_id, "pretrain")
    rows = [(float(r.data.tags.get("fraction", "nan")), _metric(r, "best_val_bce"), r.data.tags.get("backbone"),
             r.data.tags.get("image_size")) for r in runs]
    frame = pd.DataFrame(rows, columns=["fraction", "best_val_bce", "backbone", "image_size"]).dropna()
    if len(frame) < len(rows):
        log.warning("Fig. 4: %d of %d pretraining runs have no best_val_bce (logged since 2026-12-03) or no "
                    "fraction tag: left out", len(rows) - len(frame), len(rows))
    if frame["fraction"].nunique() < 2:
        return None, frame
    series = {}
    fractions = sorted(frame["fraction"].unique())
    for (backbone, size), group in frame.groupby(["backbone", "image_size"]):
        means = group.groupby("fraction")["best_val_bce"].mean()
        series[f"{backbone} {size}px"] = [means.get(f, np.nan) for f in fractions]
    return plots.line_chart(fractions, series, "fraction of pretraining data", "validation BCE (no pos_weight)",
                            "Fig. 4: validation loss vs pretraining data"), frame


def figure6(experiment_id: str, study: str | None):
    rows = [("pretrain", r.data.tags.get("backbone"), _metric(r, "best_val_loss")) for r in _runs(experiment_id, "pretrain")]
    extra = f"tags.study = '{study}'" if study else ""
    rows += [("fine-tune (CV)", r.data.tags.get("backbone"), _metric(r, "best_val_loss_mean"))
             for r in _runs(experiment_id, "sweep-trial", extra)]
    frame = pd.DataFrame(rows, columns=["stage", "backbone", "best_val_loss"]).dropna()
    if frame.empty:
        return None, frame
    summary = frame.groupby(["stage", "backbone"])["best_val_loss"].agg(["min", "mean", "count"]).reset_index()
    labels = [f"{r.backbone}\n{r.stage}" for r in summary.itertuples()]
    return plots.bar_chart(labels, summary["min"], "best validation loss", "Fig. 6: validation loss per backbone"), summary


def figure7(experiment_id: str, study: str | None, task: str = "au"):
    extra = f"tags.study = '{study}'" if study else ""
    # like with like: trials of the reported model's task with a PR-AUC (an intensity or emotion
    # trial tagged with its unfrozen blocks has none, and ``x > nan`` would keep whichever run came first)
    runs = [run for run in _runs(experiment_id, "sweep-trial", extra)
            if run.data.tags.get("task", "au") == task and np.isfinite(_metric(run, "val_pr_auc"))]
    best = {}
    for run in runs:
        blocks = run.data.tags.get("unfrozen_blocks")
        if blocks in ("0", "1", "2") and (blocks not in best or _metric(run, "val_pr_auc") > _metric(best[blocks], "val_pr_auc")):
            best[blocks] = run
    if not best:
        return None, None, pd.DataFrame()
    client = MlflowClient()
    histories = {}
    for blocks, run in sorted(best.items()):
        history = []
        for key, name in (("fold0-train_loss", "train_loss"), ("fold0-val_loss", "val_loss")):
            for k, m in enumerate(sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)):
                while len(history) <= k:
                    history.append({"epoch": len(history)})
                history[k][name] = m.value
        histories[f"{blocks} unfrozen"] = history
    curves = plots.training_curves(histories, "Fig. 7: training curves (fold 0) by unfrozen blocks")
    per_au = pd.DataFrame({f"{b} unfrozen": [_metric(r, f"oof_pr_auc_AU{a.replace('/', '_')}") for a in AU_LABELS]
                           for b, r in sorted(best.items())}, index=[f"AU{a}" for a in AU_LABELS])
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(12, 4))
    per_au.plot.bar(ax=ax)
    ax.set_ylabel("out-of-fold PR-AUC")
    ax.set_title("Fig. 7: per-AU PR-AUC by unfrozen blocks")
    figure.tight_layout()
    return curves, figure, per_au


def make_report(config: ReportConfig) -> Path:
    uri = setup_tracking(config.tracking_uri, config.experiment)
    experiment_id = mlflow.get_experiment_by_name(config.experiment).experiment_id
    if not mlflow.search_runs([experiment_id], max_results=1, output_format="list"):
        raise ConfigError(f"experiment {config.experiment!r} in {uri} has no runs: nothing to report (give "
                          "--config.experiment, or --config.tracking_uri for another store)")
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    for stale in OPTIONAL_FILES:  # a section this report does not write must not come from an earlier one
        (out / stale).unlink(missing_ok=True)
    sections = ["# facslab report", ""]
    figures = {}
    task = "au"  # the task of the reported model: what Fig. 7 compares trials of
    try:
        table, source, task = table1(config)
        table.to_csv(out / "table1.csv", index=False)
        markdown = table1_markdown(table, source)
        (out / "table1.md").write_text(markdown)
        sections.append(markdown)
    except Exception as error:  # no champion yet: the rest of the report still stands
        sections.append(f"Table 1: not available ({error})\n")
    if config.ensemble:
        from facslab.ensemble import build_ensemble_report

        _, markdown = build_ensemble_report(config.ensemble, out)  # an unusable member is an error
        sections.append(markdown)
    if config.compare:
        from facslab.comparison import build_comparison_report

        sections.append(build_comparison_report(config.compare, out))  # a model tested elsewhere is an error
    evaluations = _runs(experiment_id, "", f"tags.kind = '{CROSS_DATASET_KIND}'")
    if evaluations:
        from facslab.cross_dataset import cross_dataset_markdown, cross_dataset_table

        table = cross_dataset_table(evaluations)
        table.to_csv(out / "cross_dataset.csv", index=False)
        markdown = cross_dataset_markdown(table)
        (out / "cross_dataset.md").write_text(markdown)
        sections.append(markdown)
    fig4, frame4 = figure4(experiment_id)
    figures["fig4_val_loss_vs_fraction.png"] = fig4
    frame4.to_csv(out / "fig4.csv", index=False)
    fig6, frame6 = figure6(experiment_id, config.study)
    figures["fig6_val_loss_per_backbone.png"] = fig6
    frame6.to_csv(out / "fig6.csv", index=False)
    fig7a, fig7b, per_au = figure7(experiment_id, config.study, task)
    figures["fig7_training_curves.png"], figures["fig7_per_au_pr_auc.png"] = fig7a, fig7b
    per_au.to_csv(out / "fig7_per_au_pr_auc.csv")
    import matplotlib.pyplot as plt

    for name, figure in figures.items():
        if figure is None:
            sections.append(f"- {name}: not enough runs to draw it")
            continue
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        sections.append(f"![{name}]({name})")
    (out / "report.md").write_text("\n".join(sections) + "\n")
    with mlflow.start_run(run_name="report"):
        mlflow.set_tag("stage", "report")
        mlflow.log_artifacts(str(out), "report")
    return out
