"""What a study is: the data checked once, the settings its trials share (resuming under others is
an error), the search space sampled, and the starting weights pinned once per study."""

from __future__ import annotations

from dataclasses import asdict

import optuna
from optuna.trial import TrialState

from facslab.class_args import class_defaults, full_path
from facslab.config import ConfigError, SweepConfig
from facslab.run_records import flat_params


def check_data(config: SweepConfig) -> None:
    """The data read as the trials read it (fold 0), once before any trial: a dataset the user must
    fix is one line now, not one failed trial after another. The crops it caches are the trials'."""
    datamodule = config.task_spec.datamodule_class(config.datamodule.class_path)
    datamodule(**{**config.data, "fold": 0}).setup("fit")

#: config entries that say where and how visibly trials run, not what they score (the machines of
#: a shared study may keep the data in different folders)
RUN_ONLY_KEYS = ("data.root", "data.cache_dir", "data.num_workers", "data.preprocess_workers", "data.progress",
                 "train.progress", "train.threads")

def trial_settings(config: SweepConfig) -> dict[str, str]:
    """What a trial's objective depends on besides its sampled parameters, flattened."""
    settings = flat_params("", {"task": config.task, "datamodule": config.datamodule.class_path, "data": config.data,
                                "model": config.model_args, "train": asdict(config.train), "search": config.search})
    return {key: value for key, value in settings.items() if key not in RUN_ONLY_KEYS}

def check_study_settings(config: SweepConfig, study: optuna.Study) -> None:
    """Records the settings of a study's trials with it; resuming it under other settings is an
    error, since their trials would be ranked against each other as if alike."""
    recorded, settings = study.user_attrs.get("settings"), trial_settings(config)
    if recorded is None:  # a new study, or one from before the settings were recorded
        study.set_user_attr("settings", settings)
        return
    defaults = _unrecorded_defaults(config)
    changed = sorted(key for key in set(recorded) | set(settings) if recorded.get(key) != settings.get(key)
                     and not (key not in recorded and settings.get(key) == defaults.get(key))
                     and not (key == "datamodule" and _same_datamodule(config, recorded[key])))
    if changed:
        listed = "; ".join(f"{key}: {recorded.get(key, '(unset)')} -> {settings.get(key, '(unset)')}" for key in changed)
        raise ConfigError(f"study {config.study} was run with other settings ({listed}). Give this config another "
                          "study name, or run the study with the settings it was run with.")

def _unrecorded_defaults(config: SweepConfig) -> dict[str, str]:
    """The data and model arguments at their defaults, flattened as the settings are: a study
    recorded before the settings held every argument (before 2026-12-06) left those out."""
    task = config.task_spec
    datamodule = task.datamodule_class(config.datamodule.class_path)
    return flat_params("", {"data": class_defaults(datamodule, ("fold",)),
                            "model": class_defaults(task.module_class, task.derived_model_args)})


def _same_datamodule(config: SweepConfig, recorded: str) -> bool:
    """A datamodule recorded by name, or as None (the task's default), before class paths."""
    try:
        named = config.task_spec.datamodule_class(None if recorded == "None" else recorded)
    except ValueError:
        return False
    return full_path(named) == config.datamodule.class_path


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
