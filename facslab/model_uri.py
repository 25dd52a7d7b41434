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

#: the MLflow model URI schemes (and artifact URIs) a model is fetched from
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:", "file:")


def load_predictor(uri: str, runtime: str = "auto", threads: int | None = None) -> TaskPredictor:
    """The predictor (of the task it was saved as) of a model URI or folder. ``runtime`` and
    ``threads``: see ``TaskPredictor.load``."""
    path = Path(uri)
    if path.is_dir() and not (path / "MLmodel").exists():
        return TaskPredictor.load(path, runtime=runtime, threads=threads)
    if not path.exists() and not uri.startswith(MLFLOW_SCHEMES):
        raise MissingInputError(uri, "model not found (give a models:/ or runs:/ URI, or a model folder)")
    return TaskPredictor.load(logged_folder(uri), runtime=runtime, threads=threads)


def logged_folder(uri: str) -> Path:
    """The facslab folder inside a logged model, fetched alone (a local store gives its own path,
    nothing copied)."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from facslab.mlflow_store import environment_kept

    root = uri.rstrip("/")
    try:
        with environment_kept("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):  # one small file: no bar
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
            described = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(f"{root}/MLmodel")).read_text())
        artifacts = described["flavors"]["python_function"].get("artifacts") or {}
        if "model_dir" not in artifacts:
            raise BadInputError(uri, "an MLflow model, but not one facslab logged (its pyfunc flavour has no "
                                     "model_dir artifact)")
        return Path(mlflow.artifacts.download_artifacts(f"{root}/{artifacts['model_dir']['path']}"))
    except (KeyError, TypeError, yaml.YAMLError):
        raise BadInputError(uri, "its MLmodel file has no python_function flavour: not a model facslab logged") from None
    except OSError as error:  # a file: path or a run artifact that is not a model
        raise MissingInputError(uri, f"not an MLflow model ({error.strerror or error}: no MLmodel)") from None
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        # the first line of MLflow's message names what is missing (model, alias, run or artifact)
        where = f"not in the MLflow store {mlflow.get_tracking_uri()}" if uri.startswith(("models:/", "runs:/")) else "not found"
        raise MissingInputError(uri, f"{where} ({str(error.message).splitlines()[0][:200]})") from None
