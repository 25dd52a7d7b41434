"""The objective of a sweep: one sampled configuration cross-validated over the datamodule's folds,
logged as an MLflow run nested under the sweep's."""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from dataclasses import asdict

import lightning as L
import mlflow
import numpy as np
import optuna

from facslab.config import SweepConfig
from facslab.run_records import log_curves, log_run_basics
from facslab.sweep.folds import finished_folds, fold_key, save_fold
from facslab.sweep.recovery import trial_lock
from facslab.sweep.settings import duplicate_of, suggest
from facslab.mlflow_store import log_figure, log_json, log_table, start_child_run
from facslab.training import fit, predict

log = logging.getLogger(__name__)


class Objective:
    """Cross-validated fine-tuning of one sampled configuration, logged as a nested MLflow run."""

    def __init__(self, config: SweepConfig, parent_run_id: str, tracking_uri: str, init_from: dict[str, str | None]):
        self.config, self.parent_run_id, self.tracking_uri = config, parent_run_id, tracking_uri
        self.init_from = init_from

    def resolve(self, trial: optuna.Trial) -> tuple[dict, dict]:
        sampled = suggest(trial, self.config.search)
        searchable = self.config.task_spec.searchable_train_keys
        model = {**self.config.model_args, **{k: v for k, v in sampled.items() if k not in searchable}}
        train = {**asdict(self.config.train), **{k: v for k, v in sampled.items() if k in searchable}}
        train["init_from"] = self.init_from[self.config.task_spec.model_value(model, "backbone")]
        return model, train

    def __call__(self, trial: optuna.Trial) -> float:
        with trial_lock(self.config, trial.number):  # other processes see that this trial is alive
            return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float:
        model_args, train = self.resolve(trial)
        earlier = duplicate_of(trial)
        if earlier is not None:  # the sampler proposed a finished set again: never train it twice
            trial.set_user_attr("duplicate_of", earlier)
            raise optuna.TrialPruned(f"same parameters as trial {earlier}")
        config, task = self.config, self.config.task_spec
        # a retry of an interrupted trial inherits its user attributes: the run holding its finished folds
        interrupted_run = trial.user_attrs.get("mlflow_run_id")
        run = start_child_run(task.run_name(trial.number, model_args), self.parent_run_id)
        status = "FINISHED"
        try:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who ran it, for post-mortems
            trial.set_user_attr("init_from", train["init_from"])
            trial.set_user_attr("interrupted", False)  # a retry inherits its interrupted trial's True
            mlflow.set_tags({"study": config.study, "trial": str(trial.number), "init_from": train["init_from"] or "random",
                             **task.tags(model_args)})
            finished = finished_folds(interrupted_run) if interrupted_run else {}
            if interrupted_run:
                mlflow.set_tag("retry_of_run", interrupted_run)
            return self._cross_validate(trial, model_args, train, finished)
        except optuna.TrialPruned:
            status = "KILLED"
            mlflow.set_tag("optuna_state", "PRUNED")
            raise
        except Exception:
            status = "FAILED"
            mlflow.set_tag("optuna_state", "FAIL")
            mlflow.log_text(traceback.format_exc(), "error.txt")
            raise
        # Ctrl-C: Optuna fails the trial, or leaves it running when Lightning turned the interrupt into
        # SystemExit; either way the next run of the sweep retries it
        except (KeyboardInterrupt, SystemExit):
            status = "KILLED"
            trial.set_user_attr("interrupted", True)
            mlflow.set_tag("interrupted", "true")
            raise
        finally:
            mlflow.end_run(status)

    def _cross_validate(self, trial, model_args: dict, train: dict, finished: dict[int, dict] | None = None) -> float:
        """The folds' mean score. ``finished``: folds of an interrupted run of the same trial, reused
        where their key (parameters, data, split, code) still matches."""
        from optuna_integration import PyTorchLightningPruningCallback

        config, task = self.config, self.config.task_spec
        objective = task.objective
        train_config = type(config.train)(**train)
        datamodule = task.datamodule_class(config.datamodule.class_path)
        outputs, fold_labels, scores, histories, best_epochs, losses, reused = [], [], [], {}, [], [], []
        fold, n_folds = 0, 1
        while fold < n_folds:
            L.seed_everything(int(config.data.get("seed", 0)) + fold, workers=True)
            dm = datamodule(**{**config.data, "fold": fold})
            dm.setup("fit")
            n_folds = dm.n_folds
            if fold == 0:
                log_run_basics({"model": model_args, "train": train, "data": config.data, "task": task.name,
                                "trial": trial.number, "study": config.study}, dm, stage="sweep-trial")
            key = fold_key(model_args, train, {**config.data, "fold": fold}, dm.split_id())
            saved = (finished or {}).get(fold)
            if saved is not None and str(saved["key"]) == key:
                probs, labels, score = saved["outputs"], saved["labels"], float(saved["score"])
                history, best_epoch, best_loss = json.loads(str(saved["history"])), int(saved["best_epoch"]), float(saved["best_val_loss"])
                reused.append(fold)
                log.warning("trial %d fold %d: reused from the interrupted run (score %.4f)", trial.number, fold, score)
            else:
                model = task.build_model(model_args, dm, train_config, train_config.init_from)
                # the first fold's per-epoch validation metric feeds the pruner
                pruning = [PyTorchLightningPruningCallback(trial, objective)] if fold == 0 and config.pruner != "none" else []
                try:
                    result = fit(model, dm, train_config, run_id=mlflow.active_run().info.run_id,
                                 tracking_uri=self.tracking_uri, prefix=f"fold{fold}", callbacks=pruning)
                except optuna.TrialPruned:
                    histories["fold 0"] = model.history
                    log_curves(histories, "plots/training_curves.png", mlflow.active_run().info.run_name)
                    raise
                probs, labels = predict(result.model, dm.val_dataloader())
                score = task.fold_score(probs, labels)
                history, best_epoch, best_loss = result.history, result.best_epoch, result.best_val_loss
            # kept with the run before the next fold starts: what a retry of this trial reuses
            save_fold(fold, key, probs, labels, score, history, best_epoch, best_loss)
            outputs.append(probs), fold_labels.append(labels), scores.append(score)
            histories[f"fold {fold}"] = history
            best_epochs.append(best_epoch + 1)
            losses.append(best_loss)
            mlflow.log_metrics({f"fold_{objective}": score, "fold_best_val_loss": best_loss,
                                "fold_best_epoch": best_epoch + 1}, step=fold)
            fold += 1
        if reused:
            mlflow.set_tag("reused_folds", ",".join(map(str, reused)))
        # summarised over every fold's validation predictions (out-of-fold when there are folds)
        summary = task.summarise_validation(np.concatenate(outputs), np.concatenate(fold_labels), dm, train_config)
        mean, spread = float(np.mean(scores)), float(np.std(scores))
        mlflow.log_metrics({objective: mean, f"{objective}_std": spread, "best_epoch_mean": float(np.mean(best_epochs)),
                            "best_val_loss_mean": float(np.mean(losses)), **summary.metrics})
        for path, table in summary.tables.items():
            log_table(table, path)
        for path, figure in summary.figures.items():
            log_figure(figure, path)
        log_json({**summary.attrs, "chosen_on": "validation predictions (out-of-fold over the folds)",
                  "best_epochs": best_epochs}, "validation_choices.json")
        log_curves(histories, "plots/training_curves.png", mlflow.active_run().info.run_name)
        trial.set_user_attr("task_attrs", summary.attrs)
        trial.set_user_attr("fold_scores", [float(s) for s in scores])
        trial.set_user_attr("cv_std", spread)
        trial.set_user_attr("epochs", int(round(np.mean(best_epochs))))
        trial.set_user_attr("model", model_args)
        trial.set_user_attr("train", train)
        return mean
