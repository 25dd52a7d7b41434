"""The apps' questions to a local MLflow store (which facslab folder a ``models:/`` URI gives),
answered without the app importing MLflow and its SQLAlchemy store (1.7 s of its start-up). The
answers live in the store's ``model-lookups.json`` (``facslab.local_store``), for the store's
database as it was when they were read:

* ``answer_ahead``: a ``facslab`` command that pointed MLflow at the store answers, before it exits,
  the apps' defaults and the URIs they asked about before;
* ``ask_aside``: an app whose questions the file does not answer (the store was written since, from
  outside facslab's commands) forks a process that answers them, while the app itself imports its
  libraries and loads the face detector and landmark model (0.8 s); ``answers_from_aside`` waits
  for it and reads the file again.

Either is only a saving: what the file does not answer, the app asks MLflow itself.

This module imports MLflow only inside its functions: the apps import it at start-up.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
#: how long an app waits for the answers asked aside before asking MLflow itself (a locked
#: database makes MLflow's SQLite store wait too)
ASIDE_TIMEOUT = 60.0

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


def answer_ahead(tracking_uri: str, questions: list[str] | None = None) -> None:
    """The apps' questions to a local store (``questions``; by default their defaults first, then the
    URIs they asked about) answered for the store as it is now, by a process that pointed MLflow at
    it: an app then answers from the store's ``model-lookups.json`` without importing MLflow. Left
    to the app, which asks MLflow itself: a URI the store cannot answer now, a model whose files are
    not in the store's folder (MLflow would copy them), and every URI once another process writes
    to the store (the answers could not be kept)."""
    import os
    from urllib.parse import urlparse

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.utils.file_utils import local_file_uri_to_path

    from facslab.errors import UsersMistake
    from facslab.local_store import StoreLookups, database_state
    from facslab.model_uri import logged_folder

    lookups = StoreLookups(tracking_uri)
    asked = [*default_questions(), *lookups.earlier] if questions is None else questions
    questions = [u for u in dict.fromkeys(asked) if u not in lookups.answers]
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


def answer_quietly(tracking_uri: str, questions: list[str] | None = None) -> None:
    """``answer_ahead`` where the store fails it (a database locked, an artifact store out of reach):
    said at ``-v`` (INFO), not raised, since the app will ask MLflow itself. A programming error
    still raises."""
    import sqlite3

    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    database = logging.getLogger("mlflow.store.db.utils")  # logs a locked database's traceback itself
    level = database.level
    database.setLevel(logging.CRITICAL)
    try:
        answer_ahead(tracking_uri, questions)
    except (MlflowException, SQLAlchemyError, sqlite3.Error, OSError) as error:  # the store's, not the code's
        log.info("the apps' answers for %s not kept (%s): an app asks MLflow itself", tracking_uri,
                 str(error).splitlines()[0] if str(error) else type(error).__name__)
    finally:
        database.setLevel(level)


def ask_aside(lookups, questions: list[str]):
    """A forked process (started) answering those of ``questions`` (``models:/`` URIs) that
    ``lookups`` (a local store's ``StoreLookups``) does not, into the store's file; None when all
    are answered, or where no process is forked: a store that is not a local SQLite database or
    whose folder cannot be written to, a system other than Linux (fork is Linux's safe default),
    and a process with other Python threads (a server's, a test runner's: a lock one of them holds
    would stay held in the child). Then the app asks MLflow itself, as it did before."""
    import os
    import threading

    from facslab.local_store import UNKNOWN

    unknown = [u for u in dict.fromkeys(questions)
               if u.startswith("models:/") and lookups.known(u) is UNKNOWN and not lookups.absent(u)]
    if not unknown or lookups.path is None or not os.access(lookups.path.parent, os.W_OK):
        return None
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        log.info("%s: not answered in the store's file; asked in this process", ", ".join(unknown))
        return None
    import multiprocessing

    for stream in (sys.stdout, sys.stderr):  # the child must not write out what this process had buffered
        stream.flush()
    process = multiprocessing.get_context("fork").Process(target=_answer_aside, args=(lookups.tracking_uri, unknown),
                                                          daemon=True)
    process.start()
    process.started_at = time.perf_counter()
    log.info("%s: not answered in the store's file; asked aside (process %d)", ", ".join(unknown), process.pid)
    return process


def _answer_aside(tracking_uri: str, questions: list[str]) -> None:
    import gc
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the app's, which ends this process with it
    gc.disable()  # a short life: MLflow's import without the collector's passes
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    answer_quietly(tracking_uri, questions)


def answers_from_aside(process, lookups):
    """The store's answers once ``process`` (``ask_aside``'s) has ended: the lookups read again,
    or ``lookups`` as they are without a process."""
    if process is None:
        return lookups
    from facslab.local_store import StoreLookups

    process.join(ASIDE_TIMEOUT)
    if process.is_alive():
        process.terminate()
        process.join()
        log.info("the store's answers were not ready in %.0f s: asked in this process", ASIDE_TIMEOUT)
    else:
        log.info("asked aside: %.2f s (exit status %s)", time.perf_counter() - process.started_at, process.exitcode)
    return StoreLookups(lookups.tracking_uri)
