"""What a finished sweep says about itself: the pruner it ran with, the summary line, and the
metrics, tables and plots logged on the sweep's run. Also which finished trials the pruning rule
would have stopped, so a user sees whether warm-up and start-up trials are long enough."""

from __future__ import annotations

import logging
import math

import mlflow
import optuna
from optuna.trial import TrialState

from facslab.config import ConfigError, SweepConfig
from facslab.mlflow_store import log_table

log = logging.getLogger(__name__)


def make_pruner(name: str, warmup: int = 3, startup_trials: int = 2) -> optuna.pruners.BasePruner:
    """Pruners over per-epoch reports of the first fold (see ``sweep.Objective``); no trial is pruned
    before ``warmup`` epochs, nor (median) before ``startup_trials`` trials have finished."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner must be median, hyperband or none, not {name!r}")


def would_have_pruned(study: optuna.Study, warmup: int) -> dict[int, int]:
    """Complete trials that the median rule stops when it knows every other complete trial:
    {trial number: the epoch of fold 0 at which it falls below the median}. A trial that ran
    while too few trials had finished to compare against, or that set the median itself, may
    still be one; if the best trial is, the pruner can stop a winner it has not seen yet.
    Replayed with Optuna's own ``MedianPruner`` on the recorded curves (no start-up trials: the
    question is what the rule does once trials are there)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.intermediate_values]
    found = {}
    for candidate in complete:
        replay = optuna.create_study(direction=study.direction,
                                     pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=warmup))
        for other in complete:
            if other.number != candidate.number:
                replay.add_trial(optuna.trial.create_trial(value=other.value, intermediate_values=other.intermediate_values,
                                                           params={}, distributions={}))
        if not replay.trials:
            continue
        trial = replay.ask()
        for step, value in sorted(candidate.intermediate_values.items()):
            trial.report(value, step)
            if trial.should_prune():
                found[candidate.number] = step
                break
    return found


def pruning_phrase(study: optuna.Study, config: SweepConfig) -> str:
    """``; 1 of 3 complete would have been pruned (trial 0 at epoch 3, the best): …`` or ''."""
    pruner, warmup = config.pruner, config.pruner_warmup
    if pruner == "none":
        return ""
    if pruner != "median":
        return f"; would-have-pruned not counted ({pruner}'s rule depends on the bracket each trial is drawn into)"
    found = would_have_pruned(study, warmup)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if not found:
        return f"; none of {complete} complete would have been pruned"
    best = study.best_trial.number
    which = ", ".join(f"trial {n} at epoch {s}" + (", the best" if n == best else "") for n, s in sorted(found.items()))
    advice = " (lengthen pruner_warmup or pruner_startup_trials)" if best in found else ""
    return f"; {len(found)} of {complete} complete would have been pruned by the median rule ({which}){advice}"


def log_study(study: optuna.Study, config: SweepConfig) -> None:
    """Summary metrics, the trials table and Optuna's plots on the sweep's parent run."""
    trials = study.trials_dataframe()
    if not trials.empty:
        log_table(trials, "optuna/trials.csv")
    states = [t.state for t in study.trials]
    mlflow.log_metrics({"trials_complete": states.count(TrialState.COMPLETE),
                        "trials_pruned": states.count(TrialState.PRUNED),
                        "trials_failed": states.count(TrialState.FAIL)})
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        return
    if config.pruner == "median":
        mlflow.log_metric("trials_would_have_pruned", len(would_have_pruned(study, config.pruner_warmup)))
    best = study.best_trial
    objective = study.user_attrs.get("objective", "val_pr_auc")
    mlflow.log_metrics({f"best_{objective}": study.best_value, f"best_{objective}_std": best.user_attrs.get("cv_std", math.nan)})
    mlflow.set_tags({"best_trial": str(best.number), "best_trial_run_id": best.user_attrs.get("mlflow_run_id", "")})
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    figures = {"optuna/optimization_history.png": lambda: optuna_plots.plot_optimization_history(study)}
    if len(complete) >= 2 and len(best.params) >= 1:
        figures["optuna/param_importances.png"] = lambda: optuna_plots.plot_param_importances(study)
    if any(t.state == TrialState.PRUNED for t in study.trials) or config.pruner != "none":
        figures["optuna/intermediate_values.png"] = lambda: optuna_plots.plot_intermediate_values(study)
    for path, draw in figures.items():
        try:
            ax = draw()
            figure = ax.figure if hasattr(ax, "figure") else ax[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            mlflow.log_figure(figure, path)
            plt.close(figure)
        except Exception as error:  # a plot must never lose a finished sweep
            log.warning("could not draw %s: %s", path, error)


def score_phrase(label: str, value: float, spread: float, folds: int) -> str:
    """``cross-validated PR-AUC 0.79 ± 0.02 (std over 3 folds)``, or with one validation split
    (FER-2013's PublicTest) ``validation accuracy 0.75 (one validation split)``."""
    if folds == 1:
        return f"validation {label} {value:.3f} (one validation split)"
    return f"cross-validated {label} {value:.3f} ± {spread:.3f} (std over {folds} folds)"


def describe_best(study: optuna.Study, config: SweepConfig) -> str:
    """The sweep's summary line: fold mean ± std of the best trial, the trials' states and, under
    the median pruner, the complete trials it would have stopped."""
    best = study.best_trial
    folds = best.user_attrs.get("fold_scores", [])
    states = [t.state for t in study.trials]
    label = study.user_attrs.get("objective_label", "PR-AUC")
    return (f"best trial {best.number}: {score_phrase(label, study.best_value, best.user_attrs.get('cv_std', math.nan), len(folds))}, "
            f"{best.params}; {states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} pruned, "
            f"{states.count(TrialState.FAIL)} failed" + pruning_phrase(study, config))
