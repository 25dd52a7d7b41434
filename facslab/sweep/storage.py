"""Where a study lives (a local journal file, or a database shared across machines) and how it is
loaded: the sampler's seed per worker, the pruner, and the study a registration reads."""

from __future__ import annotations

import os
import socket
import zlib
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from facslab.config import ConfigError, SweepConfig
from facslab.sweep.recovery import RetryAndCloseRun
from facslab.sweep.summary import make_pruner
from facslab.local_store import store_dir


def storage_url(config: SweepConfig) -> str | None:
    """The study's database: the config's ``storage``, else ``$FACSLAB_OPTUNA_STORAGE`` (what
    ``facslab services up`` prints for workers to export), else None: a local journal file."""
    return config.storage or os.environ.get("FACSLAB_OPTUNA_STORAGE") or None

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
