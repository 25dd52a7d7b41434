"""Trials whose process ended mid-way (killed, Ctrl-C, a machine's time limit, a lost heartbeat):
which RUNNING trials are dead (file locks held by live processes say who is alive), failing and
re-enqueuing them, and closing their MLflow runs. The only module that touches Optuna's internals
(its storage's trial states, which no public API sets on a trial another process started)."""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import mlflow
import optuna
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
from optuna.trial import TrialState

from facslab.config import SweepConfig
from facslab.local_store import store_dir

log = logging.getLogger(__name__)
# Optuna 4.9 renamed RetryFailedTrialCallback to this and still marks it experimental; it is used as documented
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message="RetryHeartbeatStaleTrialCallback")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)



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

@contextmanager
def coordinator_lock(config: SweepConfig):
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

def trial_lock(config: SweepConfig, number: int):
    """Held by the process running trial ``number`` of a local study for as long as it runs it."""
    return _held_lock(_lock_dir(config, "trials") / f"{number}.lock")

def worker_lock(config: SweepConfig):
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
