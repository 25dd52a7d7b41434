"""The tables a name is looked up in (task names, predictor task names): defining a class is
registering it, and a name belongs to one class."""

from __future__ import annotations

from pathlib import Path

from facslab.badinput import BadInputError


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register(table: dict, name: str, cls: type, entry, what: str) -> None:
    """``table[name] = entry`` for a class that declares ``name``; a second class claiming a name is
    an error (it would silently change what the name loads), the same class defined again (a
    module reloaded) replaces itself."""
    held = table.get(name)
    held_cls = held if isinstance(held, type) else type(held)
    if held is not None and class_path(held_cls) != class_path(cls):
        raise ValueError(f"{what} {name!r} is {class_path(held_cls)} already; {class_path(cls)} needs a name of its own")
    table[name] = entry


def import_path(path: str, what: str):
    """The object an import path names (``package.module.Name``)."""
    import importlib

    module, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{what} {path!r} cannot be imported ({error})") from None


def import_class_module(config_file: Path, path: str, required: bool) -> None:
    """Import the module of a ``module:Name`` class path a saved file names (defining the class
    registers it). ``required``: nothing else knows the name, so the file cannot be used without it."""
    import importlib

    try:
        importlib.import_module(path.partition(":")[0])
    except Exception as error:  # any import-time failure of someone's module is the model's problem here
        if required:
            raise BadInputError(config_file, f"the model's predictor {path} cannot be imported ({type(error).__name__}: "
                                             f"{error}): install the package that defines its task") from None
