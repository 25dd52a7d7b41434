"""Running a study: the sweep's MLflow run, the workers (local processes splitting the remaining
trials, or workers on a shared database counting through it), and ``run_sweep``."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time

import mlflow
import optuna
from optuna.trial import TrialState

from facslab.collector import spawned
from facslab.config import ConfigError, SweepConfig
from facslab.sweep.objective import Objective
from facslab.sweep.recovery import (FINISHED, LOCAL_RETRIES, close_orphan_runs, coordinator_lock, fail_interrupted_trials,
                                    retried_numbers, worker_lock)
from facslab.sweep.settings import check_data, check_study_settings, resolve_study_init
from facslab.sweep.storage import load_study, on_shared_database, storage_for, storage_url
from facslab.sweep.summary import log_study
from facslab.mlflow_store import setup_tracking
from facslab.training import check_one_process

log = logging.getLogger(__name__)


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
        with worker_lock(config):  # a coordinator leaves the trials this process is about to lock alone
            todo = config.n_trials - _counted(study, in_flight=True)
            run(max(0, min(budget if budget is not None else todo, todo)))

def _parent_run_id(config: SweepConfig, study: optuna.Study, wait: float = 120.0) -> str:
    """The sweep's MLflow run, created once per study. Workers started at the same moment on a
    shared database race for it: creating a marker study (names are unique in the storage) elects
    the one that creates the run; the others wait for its id."""
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if parent_id:
        return parent_id
    storage = optuna.storages.get_storage(storage_for(config))
    try:
        optuna.create_study(study_name=f"{config.study}.parent-run", storage=storage)
    except optuna.exceptions.DuplicatedStudyError:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            parent_id = optuna.load_study(study_name=config.study, storage=storage).user_attrs.get("mlflow_parent_run_id")
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
    check_one_process(config.train)  # before the study is made, as a dataset to fix
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
    with coordinator_lock(config) as coordinating:
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
                    # each imports torch, Lightning and MLflow with the collector off (facslab.collector)
                    processes = [spawned(context, _worker, config, parent.info.run_id, tracking_uri, threads, k, budgets[k])
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
