"""A predictor from where a model is: a registered model or run model URI
(``models:/facslab-au@champion``, ``runs:/<id>/model``), a logged MLflow model folder (with
``MLmodel``), or a folder saved by ``TaskPredictor.save``.

A logged model is read as files: its ``MLmodel`` names the facslab folder it carries, and that
folder is loaded as any other. MLflow's ``pyfunc.load_model`` would also check the model's pip
requirements against every installed package (over a second of an app's start-up), for a
Python environment the apps do not use: they run this installation's code on the folder's data."""

from __future__ import annotations

import os
from pathlib import Path

from facslab.badinput import BadInputError, MissingInputError
from facslab.predictor import TaskPredictor

#: the URIs of a model in an MLflow store (the apps point MLflow at the store first)
STORE_SCHEMES = ("models:/", "runs:/")
#: every MLflow URI a model is fetched from: the store's, and artifact URIs
MLFLOW_SCHEMES = (*STORE_SCHEMES, "mlflow-artifacts:", "file:")


def load_predictor(uri: str, runtime: str = "auto", threads: int | None = None) -> TaskPredictor:
    """The predictor (of the task it was saved as) of a model URI or folder. ``runtime`` and
    ``threads``: see ``TaskPredictor.load``."""
    path = Path(uri)
    if path.is_dir() and not (path / "MLmodel").exists():
        return TaskPredictor.load(path, runtime=runtime, threads=threads)
    if path.is_file():
        raise BadInputError(uri, "a file, not a model: give the folder a model was saved to, or a models:/ or runs:/ URI")
    if not path.exists() and not uri.startswith(MLFLOW_SCHEMES):
        raise MissingInputError(uri, "model not found (give a models:/ or runs:/ URI, or a model folder)")
    return TaskPredictor.load(logged_folder(uri), runtime=runtime, threads=threads)


def logged_folder(uri: str) -> Path:
    """The facslab folder inside a logged model, fetched alone (from a local store, a ``models:/``
    URI gives the store's own folder, nothing copied; a ``runs:/`` URI is copied, as MLflow does)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from facslab.mlflow_store import environment_kept

    try:
        root = _pinned(uri.rstrip("/"))  # an alias read once: both files come from one version
        with environment_kept("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):  # one small file: no bar
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
            described = Path(mlflow.artifacts.download_artifacts(f"{root}/MLmodel"))
        return Path(mlflow.artifacts.download_artifacts(f"{root}/{_folder_in(uri, described)}"))
    except OSError as error:  # a file: path or a run artifact that is not a model
        raise MissingInputError(uri, f"not an MLflow model ({error.strerror or error}: no MLmodel)") from None
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        # the first line of MLflow's message names what is missing (model, alias, run or artifact)
        where = f"not in the MLflow store {mlflow.get_tracking_uri()}" if uri.startswith(STORE_SCHEMES) else "not found"
        raise MissingInputError(uri, f"{where} ({str(error.message).splitlines()[0][:200]})") from None


def _pinned(uri: str) -> str:
    """``models:/NAME@ALIAS`` as the version the alias names now (``models:/NAME/VERSION``); any
    other URI as it is."""
    if not uri.startswith("models:/"):
        return uri
    name, _, rest = uri.removeprefix("models:/").partition("/")
    if "@" not in name:
        return uri
    import mlflow

    name, alias = name.rsplit("@", 1)  # as MLflow splits it: a name may hold "@", an alias may not
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
    return f"models:/{name}/{version}" + (f"/{rest}" if rest else "")


def _folder_in(uri: str, mlmodel: Path) -> str:
    """The path of the facslab folder a logged model's ``MLmodel`` file names."""
    import yaml

    try:
        described = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        flavour = described["flavors"]["python_function"]
    except (KeyError, TypeError, UnicodeDecodeError, yaml.YAMLError):
        raise BadInputError(uri, "its MLmodel file has no python_function flavour: not a model facslab logged") from None
    folder = (flavour.get("artifacts") or {}).get("model_dir")
    if not isinstance(folder, dict) or not isinstance(folder.get("path"), str):
        raise BadInputError(uri, "an MLflow model, but not one facslab logged (its pyfunc flavour has no "
                                 "model_dir artifact)")
    return folder["path"]
