"""Optuna sweeps over any task (``facslab.tasks``); every trial an MLflow run nested under the
sweep's run.

The objective is the task's validation metric (AUs: mean PR-AUC; emotions: accuracy), averaged
over the datamodule's folds (CK+'s subject-exclusive folds; FER-2013's one official validation
split), fold mean ± std logged. Pruning uses Optuna's Lightning callback on the first fold's
per-epoch validation metric with a median or Hyperband pruner, which can act with any number of
folds. What the task chooses on the validation predictions (the AU task's per-AU thresholds,
``train.threshold_policy``) is chosen after the folds and never searched.

The starting weights are resolved once per study (per backbone) and pinned by run id on the
study; every trial and the registration use that value.

Storage: by default a journal file (``mlruns/optuna/<study>.journal``) that several local worker
processes share safely (Optuna advises against SQLite for parallel workers); a database URL
(``postgresql://…``) spreads a study over machines. Studies resume: ``n_trials`` is the total of
finished trials (complete, pruned and failed all count), a trial that raises is recorded as
failed while the study goes on, and a resumed worker's sampler starts a new random sequence so it
does not propose the finished parameter sets again. A trial whose process ended mid-way (killed,
a machine's time limit) is failed and run again with its parameters; every finished fold's
validation outputs are saved with the trial's run, and the retry reuses those whose parameters,
data, split and code are unchanged instead of training them again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import time
import traceback
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import asdict
from functools import cache
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import optuna
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
from optuna.trial import TrialState

from facslab.config import ConfigError, SweepConfig
from facslab.sweep_summary import log_study, make_pruner
from facslab.runs import flat_params, log_curves, log_run_basics
from facslab.tracking import artifact_dir, log_figure, log_json, log_table, setup_tracking, store_dir
from facslab.training import fit, predict

log = logging.getLogger(__name__)
# Optuna 4.9 renamed RetryFailedTrialCallback to this and still marks it experimental; it is used as documented
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message="RetryHeartbeatStaleTrialCallback")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def storage_url(config: SweepConfig) -> str | None:
    """The study's database: the config's ``storage``, else ``$FACSLAB_OPTUNA_STORAGE`` (what
    ``facslab services up`` prints for workers to export), else None: a local journal file."""
    return config.storage or os.environ.get("FACSLAB_OPTUNA_STORAGE") or None


class RetryAndCloseRun:
    """For a trial whose worker stopped beating (killed, machine lost): end its MLflow run FAILED,
    then let Optuna's retry callback enqueue the same parameters once more."""

    def __init__(self, max_retry: int = 1):
        self.retry = RetryCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log.warning("trial %d lost its worker %s (no heartbeat): marked FAILED, retried", trial.number,
                    trial.user_attrs.get("worker", "?"))
        try:
            close_orphan_run(trial)
        except Exception as error:  # the retry matters more than the run's status
            log.warning("could not close the MLflow run of trial %d: %s", trial.number, error)
        self.retry(study, trial)


def is_database(url: str | None) -> bool:
    """A server database: shared across machines, with heartbeats for dead workers."""
    return bool(url) and url.startswith(("postgresql", "mysql"))


def on_shared_database(config: SweepConfig) -> bool:
    return is_database(storage_url(config))


def journal_path(config: SweepConfig) -> Path:
    """The local journal file of a study that names no database."""
    return store_dir() / "optuna" / f"{config.study}.journal"


def storage_for(config: SweepConfig) -> optuna.storages.BaseStorage | str:
    url = storage_url(config)
    if is_database(url):
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=config.heartbeat_interval, grace_period=config.heartbeat_grace,
            failed_trial_callback=RetryAndCloseRun(max_retry=1))
    if url:
        return url
    path = journal_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def sampler_seed(config: SweepConfig, worker: int, finished: int) -> int:
    """A seed per (study seed, worker, trials already there): repeatable for a fresh study, and a
    new sequence for a resumed or added worker, which would otherwise re-propose the parameter
    sets the study began with."""
    return int(np.random.SeedSequence([config.sampler_seed, worker, finished]).generate_state(1)[0])


def load_study(config: SweepConfig, worker: int = 0) -> optuna.Study:
    storage = optuna.storages.get_storage(storage_for(config))
    try:
        existing = storage.get_n_trials(storage.get_study_id_from_name(config.study))
    except KeyError:
        existing = 0
    if on_shared_database(config):
        # workers started separately (on any machine) all call themselves worker 0 and may load an
        # empty study at the same instant: the process identity keeps their sequences apart
        worker = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}:{worker}".encode())
    return optuna.create_study(
        study_name=config.study, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed(config, worker, existing)),
        pruner=make_pruner(config.pruner, config.pruner_warmup, config.pruner_startup_trials))


def finished_study(config: SweepConfig) -> optuna.Study:
    """The study of ``config`` for registering: it must exist and hold a completed trial."""
    url = storage_url(config)
    where = url or str(journal_path(config))
    missing = ConfigError(f"no study {config.study} at {where}: run `facslab sweep` with this config first")
    if url is None and not journal_path(config).is_file():  # reading would create an empty journal
        raise missing
    try:
        optuna.storages.get_storage(storage_for(config)).get_study_id_from_name(config.study)
    except KeyError:
        raise missing from None
    study = load_study(config)
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        raise ConfigError(f"study {config.study} at {where} has no completed trial to register "
                          f"({len(study.trials)} trial(s)); run `facslab sweep` with this config to finish one")
    return study


def check_data(config: SweepConfig) -> None:
    """The data read as the trials read it (fold 0), once before any trial: a dataset the user must
    fix is one line now, not one failed trial after another. The crops it caches are the trials'."""
    datamodule = config.task_spec.datamodule_class(config.datamodule)
    datamodule(**{**config.data, "fold": 0}).setup("fit")


#: config entries that say where and how visibly trials run, not what they score (the machines of
#: a shared study may keep the data in different folders)
RUN_ONLY_KEYS = ("data.root", "data.cache_dir", "data.num_workers", "data.preprocess_workers", "data.progress",
                 "train.progress", "train.threads")


def trial_settings(config: SweepConfig) -> dict[str, str]:
    """What a trial's objective depends on besides its sampled parameters, flattened."""
    settings = flat_params("", {"task": config.task, "datamodule": config.datamodule, "data": config.data,
                                "model": config.model, "train": asdict(config.train), "search": config.search})
    return {key: value for key, value in settings.items() if key not in RUN_ONLY_KEYS}


def check_study_settings(config: SweepConfig, study: optuna.Study) -> None:
    """Records the settings of a study's trials with it; resuming it under other settings is an
    error, since their trials would be ranked against each other as if alike."""
    recorded, settings = study.user_attrs.get("settings"), trial_settings(config)
    if recorded is None:  # a new study, or one from before the settings were recorded
        study.set_user_attr("settings", settings)
        return
    changed = sorted(key for key in set(recorded) | set(settings) if recorded.get(key) != settings.get(key))
    if changed:
        listed = "; ".join(f"{key}: {recorded.get(key, '(unset)')} -> {settings.get(key, '(unset)')}" for key in changed)
        raise ConfigError(f"study {config.study} was run with other settings ({listed}). Give this config another "
                          "study name, or run the study with the settings it was run with.")


def suggest(trial: optuna.Trial, search: dict[str, dict]) -> dict:
    """The trial's parameters; one with ``when`` is sampled only where its conditions hold (a
    conditional space: TPE models it over the trials that have it)."""
    params = {}
    for name, spec in search.items():
        if any(params.get(other) not in values for other, values in (spec.get("when") or {}).items()):
            continue
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(spec.get("low"), int) and isinstance(spec.get("high"), int) and not spec.get("log"):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1))
        else:
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return params


def duplicate_of(trial: optuna.Trial) -> int | None:
    """The number of a finished trial with exactly these parameters, if any."""
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if other.number != trial.number and other.params == trial.params and "duplicate_of" not in other.user_attrs:
            return other.number
    return None


def resolve_study_init(config: SweepConfig, study: optuna.Study) -> dict[str, str | None]:
    """The starting weights of every backbone the sweep can use, resolved once and stored on the
    study: later trials, resumed workers and the registration all start from the same runs."""
    pinned = study.user_attrs.get("init_from")
    setting = f"{config.train.init_from}@{config.train.pretrain_fraction:g}"
    if pinned is not None:
        if study.user_attrs.get("init_from_setting") != setting:
            raise ConfigError(f"study {config.study} was started with init_from "
                              f"{study.user_attrs.get('init_from_setting')}, not {setting}: use another study name")
        missing = set(config.backbones()) - set(pinned)
        if not missing:
            return pinned
    image_size = int(config.data.get("image_size", 224))
    try:
        resolved = {backbone: config.task_spec.resolve_init(config.train.init_from, backbone, image_size,
                                                            config.experiment, config.train.pretrain_fraction)
                    for backbone in config.backbones()}
    except ValueError as error:
        raise ConfigError(str(error)) from error
    pinned = {**(pinned or {}), **resolved}
    study.set_user_attr("init_from", pinned)
    study.set_user_attr("init_from_setting", setting)
    return pinned


#: per-fold validation outputs in a trial's run: what a retry of an interrupted trial reuses
FOLDS_ARTIFACT = "folds"
CODE_PACKAGES = ("facslab", "datamodules", "lightning_modules")


@cache
def code_digest() -> str:
    """Digest of the Python source that trains and scores a fold: folds computed by other code are
    not reused (a git commit would also change with a README edit)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: the libraries a fold's training and scoring runs on: another version may give other numbers
KEY_LIBRARIES = ("torch", "torchvision", "lightning", "numpy", "scikit-learn", "torchmetrics", "albumentations")


@cache
def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in KEY_LIBRARIES}


def fold_key(model_args: dict, train: dict, data: dict, split_id: str) -> str:
    """Everything a fold's result depends on; a saved fold is reused only under the same key. Where
    the data is kept and how visibly it runs (``RUN_ONLY_KEYS``) are not in it: the split id names
    the files."""
    kept = {name: {k: v for k, v in values.items() if f"{name}.{k}" not in RUN_ONLY_KEYS}
            for name, values in (("data", data), ("train", train))}
    text = json.dumps({"model": model_args, **kept, "split": split_id, "code": code_digest(),
                       "libraries": library_versions()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_fold(fold: int, key: str, outputs: np.ndarray, labels: np.ndarray, score: float, history: list[dict],
              best_epoch: int, best_val_loss: float) -> None:
    with artifact_dir() as folder:
        path = folder / f"fold{fold}.npz"
        np.savez_compressed(path, outputs=outputs, labels=labels, key=key, score=score, history=json.dumps(history),
                            best_epoch=best_epoch, best_val_loss=best_val_loss)
        mlflow.log_artifact(str(path), FOLDS_ARTIFACT)


def finished_folds(run_id: str) -> dict[int, dict]:
    """The folds an interrupted trial's run finished, by fold number (none if it finished none)."""
    try:
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=FOLDS_ARTIFACT))
    except (mlflow.exceptions.MlflowException, OSError) as error:
        log.info("run %s has no finished folds to reuse (%s)", run_id, type(error).__name__)
        return {}
    folds = {}
    for path in sorted(folder.glob("fold*.npz")):
        with np.load(path) as saved:
            folds[int(path.stem.removeprefix("fold"))] = {name: saved[name] for name in saved.files}
    return folds


class Objective:
    """Cross-validated fine-tuning of one sampled configuration, logged as a nested MLflow run."""

    def __init__(self, config: SweepConfig, parent_run_id: str, tracking_uri: str, init_from: dict[str, str | None]):
        self.config, self.parent_run_id, self.tracking_uri = config, parent_run_id, tracking_uri
        self.init_from = init_from

    def resolve(self, trial: optuna.Trial) -> tuple[dict, dict]:
        sampled = suggest(trial, self.config.search)
        searchable = self.config.task_spec.searchable_train_keys
        model = {**self.config.model, **{k: v for k, v in sampled.items() if k not in searchable}}
        train = {**asdict(self.config.train), **{k: v for k, v in sampled.items() if k in searchable}}
        train["init_from"] = self.init_from[self.config.task_spec.model_value(model, "backbone")]
        return model, train

    def __call__(self, trial: optuna.Trial) -> float:
        with _trial_lock(self.config, trial.number):  # other processes see that this trial is alive
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
        run = mlflow.start_run(run_name=task.run_name(trial.number, model_args), nested=True,
                               parent_run_id=self.parent_run_id)
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
        datamodule = task.datamodule_class(config.datamodule)
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
                    for callback in pruning:  # under DDP the callback only stops the fit: Optuna's documented check
                        callback.check_pruned()
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


@contextmanager
def _coordinator_lock(config: SweepConfig):
    """Held by the process that drives a local study: only it fails and re-enqueues interrupted
    trials, so two sweeps resuming at once do not enqueue the same retry twice."""
    path = store_dir() / "optuna" / f"{config.study}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            acquired = True
        except BlockingIOError:
            acquired = False
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_dir(config: SweepConfig, kind: str) -> Path:
    return store_dir() / "optuna" / f"{config.study}.{kind}"


@contextmanager
def _held_lock(path: Path):
    """An exclusive lock at ``path`` for as long as the block runs; the system releases it when the
    process ends, however it ends (``kill -9`` included). The file is locked before it is renamed
    into place, so a file found at ``path`` is never one that is not locked yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    making = path.with_name(f".{path.name}.{os.getpid()}")
    with open(making, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.replace(making, path)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_held(path: Path) -> bool:
    try:
        handle = open(path)
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _trial_lock(config: SweepConfig, number: int):
    """Held by the process running trial ``number`` of a local study for as long as it runs it."""
    return _held_lock(_lock_dir(config, "trials") / f"{number}.lock")


def _worker_lock(config: SweepConfig):
    """Held by every process that runs trials of a local study, for as long as it may start one."""
    return _held_lock(_lock_dir(config, "workers") / f"{os.getpid()}.lock")


def other_workers_alive(config: SweepConfig) -> bool:
    """Whether a process other than this one runs trials of the study (a second sweep started on the
    same journal included)."""
    folder = _lock_dir(config, "workers")
    mine = f"{os.getpid()}.lock"
    return folder.is_dir() and any(_is_held(p) for p in folder.glob("*.lock") if p.name != mine)


def trial_is_live(config: SweepConfig, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a live process runs this RUNNING trial: its lock is held (by any process, another
    sweep started separately included). A trial whose lock was never taken is one Optuna has just
    made and a live worker is about to lock, or one whose process died in between: it is dead only
    when no other worker of the study is alive (no clock decides it)."""
    path = _lock_dir(config, "trials") / f"{trial.number}.lock"
    if path.exists() or not other_workers_alive(config):
        return _is_held(path)
    return True


#: how often a local trial interrupted by its process's end (Ctrl-C, kill, a machine's time limit)
#: is run again with the same parameters; its finished folds are reused every time
LOCAL_RETRIES = 2


def retried_numbers(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of the trials that a retry stands for."""
    return {number for trial in trials for number in trial.system_attrs.get("retry_history", [])}


def fail_interrupted_trials(study: optuna.Study, config: SweepConfig) -> tuple[int, int]:
    """Trials left RUNNING by a process that ended are failed (a trial another live process runs,
    such as a second sweep started on the same journal, is left alone: ``trial_is_live``); they and trials stopped by Ctrl-C are
    enqueued again (while they have retries left) with the same parameters, their pruning reports
    and their MLflow run's id, from which the retry reuses the folds that finished (``Objective``).
    Returns (failed, enqueued)."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    stale = [t for t in running if not trial_is_live(config, t)]
    if len(stale) < len(running):
        log.warning("trial(s) %s run in another live process: left running", [t.number for t in running if t not in stale])
    stopped = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried]
    retry = RetryCallback(max_retry=LOCAL_RETRIES, inherit_intermediate_values=True)
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)  # its process died mid-trial
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    for trial in stale + stopped:
        retry(study, study._storage.get_trial(trial._trial_id))  # enqueues nothing once its retries are used up
    return len(stale) + len(stopped), len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - waiting


def close_orphan_run(trial: optuna.trial.FrozenTrial) -> bool:
    """End a finished trial's MLflow run if its process died before ending it (a crash, ``kill -9``,
    a heartbeat timeout): FAILED, tagged with the trial's state."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        return False
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    if run.info.status != "RUNNING":
        return False
    client.set_tag(run_id, "optuna_state", trial.state.name)
    client.set_tag(run_id, "interrupted", "true")
    client.set_terminated(run_id, "FAILED")
    return True


def close_orphan_runs(study: optuna.Study) -> int:
    return sum(close_orphan_run(trial) for trial in study.get_trials(deepcopy=False, states=FINISHED))


def recover_interrupted(study: optuna.Study, config: SweepConfig) -> None:
    """Trials no live process runs any more are failed (local journal: only the coordinator may
    say so; a database's heartbeats do it themselves), and their MLflow runs end."""
    local = storage_url(config) is None
    failed, enqueued = fail_interrupted_trials(study, config) if local else (0, 0)
    closed = close_orphan_runs(study)
    if failed or closed:
        spent = f", {failed - enqueued} with its {LOCAL_RETRIES} retries used up (not run again)" if failed > enqueued else ""
        log.warning("%d interrupted trial(s) marked failed, %d enqueued again (finished folds are reused)%s; "
                    "%d MLflow run(s) closed as FAILED", failed, enqueued, spent, closed)


def _counted(study: optuna.Study, in_flight: bool = False) -> int:
    """Trials that count towards ``n_trials``: complete, pruned and failed ones (a failed trial that
    a database's retry callback re-enqueued counts through its retry); with ``in_flight``, also the
    running ones, so that workers stop launching at exactly ``n_trials``. Waiting (enqueued) trials
    do not count: they are what the next launches run."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    states = FINISHED + ((TrialState.RUNNING,) if in_flight else ())
    return sum(t.state in states and not (t.state == TrialState.FAIL and t.number in retried) for t in trials)


class StopAtTrialCount:
    """Optuna's ``MaxTrialsCallback``, counting as ``_counted`` does (retries, trials in flight)."""

    def __init__(self, n_trials: int):
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if _counted(study, in_flight=True) >= self.n_trials:
            study.stop()


def _run_shared_study(study: optuna.Study, config: SweepConfig, run) -> None:
    """On a shared database a worker runs trials until the study counts ``n_trials``, and leaves only
    when no trial is in flight: a live worker's trial finishes, and a dead worker's trial goes
    stale, is failed and retried, and whoever is still there runs the retry. Every wait ends with
    a trial finishing or a heartbeat's grace period."""
    while True:
        optuna.storages.fail_stale_trials(study)
        todo = config.n_trials - _counted(study, in_flight=True)
        if todo > 0:
            run(todo)
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        log.info("waiting for %d trial(s) running elsewhere: %s", len(running), [t.number for t in running])
        time.sleep(config.heartbeat_interval)


def _worker(config: SweepConfig, parent_run_id: str, tracking_uri: str, threads: int | None, worker: int = 0,
            budget: int | None = None) -> None:
    """Run trials until the study holds ``n_trials``. Local workers split the remaining trials
    (``budget``); workers on a shared database count through it and stay for trials in flight."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    setup_tracking(config.tracking_uri or tracking_uri, config.experiment)
    study = load_study(config, worker)
    init_from = resolve_study_init(config, study)
    optuna.logging.set_verbosity(optuna.logging.WARNING if threads else optuna.logging.INFO)
    objective = Objective(config, parent_run_id, tracking_uri, init_from)

    def run(n_trials: int) -> None:
        study.optimize(objective, catch=(Exception,), gc_after_trial=True, n_trials=n_trials,
                       callbacks=[StopAtTrialCount(config.n_trials)], show_progress_bar=threads is None)

    if on_shared_database(config):
        _run_shared_study(study, config, run)
    else:
        with _worker_lock(config):  # a coordinator leaves the trials this process is about to lock alone
            todo = config.n_trials - _counted(study, in_flight=True)
            run(max(0, min(budget if budget is not None else todo, todo)))


def _parent_run_id(config: SweepConfig, study: optuna.Study, wait: float = 120.0) -> str:
    """The sweep's MLflow run, created once per study. Workers started at the same moment on a
    shared database race for it: creating a marker study (names are unique in the storage) elects
    the one that creates the run; the others wait for its id."""
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if parent_id:
        return parent_id
    try:
        study._storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], f"{config.study}.parent-run")
    except optuna.exceptions.DuplicatedStudyError:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            parent_id = optuna.load_study(study_name=config.study, storage=study._storage).user_attrs.get(
                "mlflow_parent_run_id")
            if parent_id:
                return parent_id
            time.sleep(1.0)
        raise RuntimeError(f"study {config.study}: another worker claimed the sweep's MLflow run but never stored "
                           f"its id; delete the study {config.study}.parent-run from the storage and retry")
    with mlflow.start_run(run_name=f"sweep {config.study}") as parent:
        mlflow.set_tags({"stage": "sweep", "study": config.study, "task": config.task})
        mlflow.log_text(_yaml(config.to_dict()), "sweep_config.yaml")
        mlflow.log_dict(study.user_attrs["init_from"], "init_from.json")
        study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
    return parent.info.run_id


def run_sweep(config: SweepConfig, workers: int = 1) -> optuna.Study:
    """Run (or resume) the study until it holds ``n_trials`` finished trials; returns it."""
    tracking_uri = setup_tracking(config.tracking_uri, config.experiment)
    check_data(config)  # before the study is made: a dataset to fix leaves nothing behind
    study = load_study(config)
    task = config.task_spec
    if study.user_attrs.get("task", task.name) != task.name:
        raise ConfigError(f"study {config.study} is a {study.user_attrs['task']} study, not {task.name}: use another study name")
    for key, value in {"task": task.name, "objective": task.objective, "objective_label": task.metric_label}.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    check_study_settings(config, study)
    resolve_study_init(config, study)  # fails before any trial when a pretraining is missing
    if config.enqueue and not study.trials:
        for params in config.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    with _coordinator_lock(config) as coordinating:
        if coordinating:
            recover_interrupted(study, config)
        parent_id = _parent_run_id(config, study)
        with mlflow.start_run(run_id=parent_id) as parent:
            remaining = config.n_trials - _counted(study)
            log.info("study %s: %d trial(s) done, %d to go", config.study, _counted(study), max(remaining, 0))
            if remaining > 0:
                if workers <= 1:
                    _worker(config, parent.info.run_id, tracking_uri, None)
                else:
                    context = multiprocessing.get_context("spawn")
                    threads = max(1, (os.cpu_count() or 1) // workers)
                    # the remaining trials split between the local workers: exactly n_trials in all
                    budgets = [remaining // workers + (k < remaining % workers) for k in range(workers)]
                    processes = [context.Process(target=_worker,
                                                 args=(config, parent.info.run_id, tracking_uri, threads, k, budgets[k]))
                                 for k in range(workers) if budgets[k] > 0]
                    for p in processes:
                        p.start()
                    for p in processes:
                        p.join()
                    dead = [k for k, p in enumerate(processes) if p.exitcode != 0]
                    if dead and coordinating:  # their trials belong to no live process now
                        log.warning("sweep worker(s) %s died (exit codes %s); run the same command to resume",
                                    dead, [processes[k].exitcode for k in dead])
                        recover_interrupted(load_study(config), config)
            study = load_study(config)
            log_study(study, config)
    return study


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
