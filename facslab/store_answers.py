"""The apps' questions to a local MLflow store (which facslab folder a ``models:/`` URI gives)
answered so that the next app need not import MLflow: ``answer_ahead``, run by a ``facslab``
command that pointed MLflow at the store before it exits. The answers live in the store's
``model-lookups.json`` (``facslab.local_store``).

This module imports MLflow only inside its functions: the apps import it at start-up.
"""

from __future__ import annotations

from pathlib import Path

#: the model the apps load without --model
DEFAULT_MODEL = "models:/facslab-au@champion"


def optional_tasks() -> list:
    """The predictor classes that declare an option of the apps (``app_option``, their own, not
    inherited), in task order. Tasks defined outside facslab join the apps with ``--also``."""
    from facslab.predictor import PREDICTORS

    return [cls for cls in PREDICTORS.values() if cls.__dict__.get("app_option")]


def store_version(uri: str):
    """The model version a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI names in the store
    MLflow points at; None where the store has no such model, alias or version. A ValueError for
    other URIs (stages, ``latest``); MLflow's other errors are raised."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, _, rest = uri.removeprefix("models:/").partition("/")
    version = rest.split("/")[0]
    if "@" not in name and not version.isdigit():
        raise ValueError(f"{uri}: neither an alias nor a version number")
    try:
        if "@" in name:
            return MlflowClient().get_model_version_by_alias(*name.split("@", 1))
        return MlflowClient().get_model_version(name, version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model, alias or version
            return None
        raise


def default_questions() -> list[str]:
    """The store URIs an app asks about with its default options: its model, and the champion of
    each task whose option is auto."""
    return [DEFAULT_MODEL] + [f"models:/{cls.registered_name}@champion" for cls in optional_tasks()
                              if cls.app_option_default == "auto" and cls.registered_name]


def answer_ahead(tracking_uri: str) -> None:
    """The apps' questions to a local store (their defaults first, then the URIs they asked about)
    answered for the store as it is now, by a command that pointed MLflow at it (and may have
    written to it): the next app answers from the store's ``model-lookups.json`` without importing
    MLflow (1.5 s of its start-up). Left to the app, which asks MLflow itself: a URI the store cannot
    answer now, a model whose files are not in the store's folder (MLflow would copy them), and
    every URI once another process writes to the store (the answers could not be kept)."""
    import os
    from urllib.parse import urlparse

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.file_utils import local_file_uri_to_path

    from facslab.errors import UsersMistake
    from facslab.local_store import StoreLookups, database_state
    from facslab.model_uri import logged_folder

    lookups = StoreLookups(tracking_uri)
    questions = [u for u in dict.fromkeys([*default_questions(), *lookups.earlier]) if u not in lookups.answers]
    if lookups.path is None or not questions or not os.access(lookups.path.parent, os.W_OK):
        return
    lookups.watch()  # keeps the answers read when the store has not changed since
    for uri in questions:
        if lookups.asked_from is None or database_state(tracking_uri) != lookups.asked_from:
            return  # a write under way or made since: save() would keep nothing
        try:
            version = store_version(uri)
            if version is None:
                lookups.remember(uri, None)
                continue
            location = MlflowClient().get_model_version_download_uri(version.name, version.version)
            if urlparse(location).scheme not in ("", "file") or not Path(local_file_uri_to_path(location)).resolve(
                    ).is_relative_to(lookups.path.parent.resolve()):
                continue
            # the version just checked, by number: its alias is not looked up again
            lookups.remember(uri, logged_folder(f"models:/{version.name}/{version.version}"))
        except (ValueError, UsersMistake):  # a stage or ``latest``; no MLmodel or not facslab's: the app says
            continue
        except MlflowException as error:
            if error.error_code == "TEMPORARILY_UNAVAILABLE":  # a locked database: the rest would wait too
                break
    lookups.save()
