"""A class's arguments as a config gives them (``class_path``/``init_args``), checked, resolved
and named by jsonargparse against the class's own signature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from facslab.errors import ConfigError


def one_line(error: Exception) -> str:
    """jsonargparse's error, often many lines, as the one line a user is told."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _plain(value):
    """A tuple default and the list jsonargparse reads are one value."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _class_parser(cls: type, skip: tuple[str, ...] = ()) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, skip=set(skip), fail_untyped=False, sub_configs=True)
    return parser


def _parsed(section: str, parser: ArgumentParser, given: dict) -> dict[str, Any]:
    try:
        return parser.parse_object(given).as_dict()
    except Exception as error:  # jsonargparse's, often many lines
        raise ConfigError(f"{section}: {one_line(error)}") from None


def checked_arguments(section: str, cls: type, given: dict, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``given`` checked by jsonargparse against ``cls``'s signature (keys and types; ``skip``:
    arguments the framework sets, refused), each kept as given where it fits (a Trainer's
    ``limit_train_batches: 1`` is one batch, ``1.0`` all of them)."""
    derived = sorted(set(given) & set(skip))
    if derived:
        raise ConfigError(f"{section}: {', '.join(derived)}: set by facslab (from the data, or per fold), not in a config")
    values = _parsed(section, _class_parser(cls, skip), given)
    # a string jsonargparse reads as a number (YAML's 1e-3) becomes that number
    return {k: values[k] if isinstance(given[k], str) and k in values and not isinstance(values[k], str) else given[k]
            for k in given}


def resolved_arguments(section: str, cls: type, given: dict, framework_set: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every argument of ``cls`` as jsonargparse reads it (keys and types checked, defaults filled
    in): what a run is logged and compared with, whether the config came from a file, the command
    line or Python. Arguments facslab sets itself (``framework_set``: a datamodule's fold, a
    module's input size) are left out at their defaults and refused at any other value."""
    parser = _class_parser(cls)
    values = _parsed(section, parser, given)
    defaults = parser.get_defaults().as_dict()
    owned = sorted(k for k in framework_set if k in values and _plain(values[k]) != _plain(defaults.get(k)))
    if owned:
        raise ConfigError(f"{section}: {', '.join(owned)}: set by facslab (from the data, or per fold), not in a config")
    if values.get("dict_kwargs"):
        raise ConfigError(f"{section}: {', '.join(values['dict_kwargs'])}: not an argument of {cls.__name__}")
    return {k: v for k, v in values.items() if k not in framework_set and k != "dict_kwargs"}


def class_defaults(cls: type, framework_set: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every argument's default as ``resolved_arguments`` fills it in."""
    defaults = _class_parser(cls).get_defaults().as_dict()
    return {k: v for k, v in defaults.items() if k not in framework_set and k != "dict_kwargs"}


@dataclass
class ClassSpec:
    """A class by its import path and the keyword arguments it is built with (a config's
    ``class_path`` and ``init_args``)."""

    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)


def class_spec(value: ClassSpec | dict | Namespace | None) -> ClassSpec | None:
    """A ``class_path``/``init_args`` value (as jsonargparse read it, a dict or a ``ClassSpec``)
    as a ``ClassSpec`` of its own (a caller's is not changed)."""
    if value is None:
        return None
    if isinstance(value, ClassSpec):
        return ClassSpec(value.class_path, dict(value.init_args))
    value = value.as_dict() if isinstance(value, Namespace) else dict(value)
    return ClassSpec(value["class_path"], dict(value.get("init_args") or {}))


def full_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
