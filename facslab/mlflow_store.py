"""MLflow set-up and logging helpers.

The default store is local: an SQLite tracking database ``mlruns/mlflow.db`` with artifacts
under ``mlruns/artifacts`` (recent MLflow refuses the old plain-file store). ``MLFLOW_TRACKING_URI``
or an explicit URI selects a tracking server instead, e.g. when sweeps run on many machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd

from facslab.local_store import default_tracking_uri

DEFAULT_EXPERIMENT = "facslab"
#: the store ``setup_tracking`` last pointed MLflow at, until ``written_store`` takes it
_pointed_at: str | None = None


#: what ``mlflow.set_tracking_uri`` and ``set_registry_uri`` also write into the environment
MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextmanager
def environment_kept(*names: str):
    """Put these environment variables back as they were (set or not) when the block ends."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def setup_tracking(tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at the store and select (or create) the experiment; returns the tracking URI."""
    global _pointed_at
    uri = _pointed_at = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # MLflow also writes the URIs into the environment, where they would outrank FACSLAB_MLRUNS for
    # every later call and child process: only a user's own MLFLOW_*_URI belong there
    with environment_kept(*MLFLOW_URI_VARIABLES):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifacts = None
        if uri.startswith("sqlite:///"):
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
        try:
            mlflow.create_experiment(experiment, artifact_location=artifacts)
        except mlflow.exceptions.MlflowException as error:  # a worker started at the same moment made it
            if error.error_code != "RESOURCE_ALREADY_EXISTS" or mlflow.get_experiment_by_name(experiment) is None:
                raise
    found = mlflow.set_experiment(experiment)
    if found.tags.get("mlflow.experimentKind") != "custom_model_development":  # the UI opens on training runs
        try:
            mlflow.set_experiment_tag("mlflow.experimentKind", "custom_model_development")
        except mlflow.exceptions.MlflowException:
            # a process started at the same moment wrote it first: PostgreSQL's store inserts the tag
            # row and fails on its unique key; the tag being there is all this wanted
            if mlflow.get_experiment(found.experiment_id).tags.get("mlflow.experimentKind") != "custom_model_development":
                raise
    return uri


def written_store() -> str | None:
    """The store this process pointed MLflow at (and may have written to) since the last call, if
    MLflow's tracking and registry still point there; then forgotten."""
    global _pointed_at
    uri, _pointed_at = _pointed_at, None
    return uri if uri is not None and uri == mlflow.get_tracking_uri() == mlflow.get_registry_uri() else None


def _unanswered(error: BaseException) -> bool:
    """The request was sent and the connection closed before an answer came: the server may or
    may not have carried it out (a tracking server stopping for a restart resets what it has not
    answered)."""
    from requests.exceptions import ConnectionError as RequestFailed
    from urllib3.exceptions import ProtocolError

    # MLflow raises its exception while handling requests' error, which wraps urllib3's; an error
    # further back in the chain belongs to the caller, not to this request
    failed = error.__cause__ or error.__context__
    return isinstance(failed, RequestFailed) and bool(failed.args) and isinstance(failed.args[0], ProtocolError)


def log_dataset_input(dataset, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input`` that survives what sending it once more mends:
    - a concurrent worker logging the same dataset: the server checks for the (name, digest) row
      and then inserts it, so two runs logging a new dataset at the same moment make one fail on
      the unique key;
    - a request left unanswered, which MLflow does not resend because LogInputs is not idempotent
      in general. The server links a run to a dataset once, however often it is asked.
    """
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except mlflow.exceptions.MlflowException as error:
            duplicate = "INSERT INTO datasets" in str(error)  # the failed statement, on any database
            if not (duplicate or _unanswered(error)) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def start_child_run(run_name: str, parent_run_id: str):
    """``mlflow.start_run`` of a run nested under ``parent_run_id`` whose name no other child of that
    parent has (a sweep's trial). When the server carried out the CreateRun and the connection
    closed before its answer, MLflow does not resend it (a second request makes a second run): the
    run is then found by its parent and name, and created only if it is not there."""
    try:
        return mlflow.start_run(run_name=run_name, nested=True, parent_run_id=parent_run_id)
    except mlflow.exceptions.MlflowException as error:
        if not _unanswered(error):
            raise
    # the server answers only what it has committed, so a run it made is found; the name is compared
    # here, as MLflow's filter strings cannot quote every name
    parent = mlflow.get_run(parent_run_id)
    children = mlflow.search_runs([parent.info.experiment_id], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    made = [run for run in children if run.info.run_name == run_name]
    if made:
        return mlflow.start_run(run_id=made[0].info.run_id, nested=True)
    return mlflow.start_run(run_name=run_name, nested=True, parent_run_id=parent_run_id)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def artifact_dir():
    """A temporary folder whose files are logged as run artifacts under their relative paths."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def log_table(table: pd.DataFrame, path: str) -> None:
    """A DataFrame as a CSV artifact."""
    with artifact_dir() as folder:
        target = folder / Path(path).name
        table.to_csv(target, index=False)
        mlflow.log_artifact(str(target), str(Path(path).parent) if Path(path).parent != Path(".") else None)


def log_json(data, path: str) -> None:
    mlflow.log_text(json.dumps(data, indent=2, default=str), path)


def log_figure(figure, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)
