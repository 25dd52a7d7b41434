"""The apps' questions to a local MLflow store (which facslab folder a ``models:/`` URI gives),
answered without the app importing MLflow and its SQLAlchemy store (1.7 s of its start-up). The
answers live in the store's ``model-lookups.json`` (``facslab.local_store``), for the store's
database as it was when they were read:

* ``answer_ahead``: a ``facslab`` command that pointed MLflow at the store answers, before it exits,
  the apps' defaults and the URIs they asked about before;
* ``AsideAnswers``: an app whose questions the file does not answer (the store was written since,
  from outside facslab's commands) forks a process that answers them, while the app itself imports
  its libraries and loads the landmark model and ONNX Runtime (0.8 s); then it waits for the
  process and reads the file again.

Either is only a saving: what the file does not answer, the app asks MLflow itself.

This module imports MLflow only inside its functions: the apps import it at start-up.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
#: how long an app waits for the answers asked aside before asking MLflow itself: longer than
#: MLflow's SQLite store waits for a locked database (20 s)
ASIDE_TIMEOUT = 30.0

#: the model the apps load without --model
DEFAULT_MODEL = "models:/facslab-au@champion"


def optional_tasks() -> list:
    """The predictor classes that declare an option of the apps (``app_option``, their own, not
    inherited), in task order. Tasks defined outside facslab join the apps with ``--also``."""
    from facslab.predictor import PREDICTORS

    return [cls for cls in PREDICTORS.values() if cls.__dict__.get("app_option")]


def names_a_version(uri: str) -> bool:
    """Whether ``uri`` is ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, nothing after: the URIs
    whose answer is one version's model (not a stage, ``latest``, nor a path inside a model)."""
    if not uri.startswith("models:/"):
        return False
    name, _, rest = uri.removeprefix("models:/").rstrip("/").partition("/")
    return bool(name) and (rest == "" if "@" in name else rest.isdigit())


def store_version(uri: str):
    """The model version a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI names in the store
    MLflow points at; None where the store has no such model, alias or version. A ValueError for
    other URIs (stages, ``latest``, a path inside a model); MLflow's other errors are raised."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not names_a_version(uri):
        raise ValueError(f"{uri}: neither an alias nor a version number, or a path inside a model")
    name, _, version = uri.removeprefix("models:/").rstrip("/").partition("/")
    try:
        if "@" in name:
            return MlflowClient().get_model_version_by_alias(*name.rsplit("@", 1))  # MLflow's split
        return MlflowClient().get_model_version(name, version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model, alias or version
            return None
        raise


def auto_champion(cls, model: str) -> str | None:
    """What an optional task's option ``auto`` asks for (``cls`` a predictor class of
    ``optional_tasks``): the task's registered champion where ``--model`` names a store; None beside
    a local model folder, or for a task without a registered name."""
    from facslab.model_uri import STORE_SCHEMES

    if model.startswith(STORE_SCHEMES) and cls.registered_name:
        return f"models:/{cls.registered_name}@champion"
    return None


def app_questions(model: str, also: list[str] = (), options: dict | None = None) -> list[str]:
    """The store URIs an app may ask about: its models' (``--model``, ``--also``), and each optional
    task's (its option in ``options``, by name, else its default; ``auto``: ``auto_champion``, also
    where a model given covers the task: which task a model is, only its folder says)."""
    from facslab.model_uri import STORE_SCHEMES

    uris = [model, *also]
    for cls in optional_tasks():
        value = (options or {}).get(cls.app_option, cls.app_option_default)
        uris.append(auto_champion(cls, model) if value == "auto" else value)
    return [uri for uri in uris if uri is not None and uri.startswith(STORE_SCHEMES)]


def default_questions() -> list[str]:
    """The store URIs an app asks about with its default options."""
    return app_questions(DEFAULT_MODEL)


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
    given = [*default_questions(), *lookups.earlier] if questions is None else questions
    open_ones = [u for u in dict.fromkeys(given) if u not in lookups.answers]
    if lookups.path is None or not open_ones or not os.access(lookups.path.parent, os.W_OK):
        return
    lookups.watch()  # keeps the answers read when the store has not changed since
    for uri in open_ones:
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
        except (ValueError, UsersMistake):  # a stage, ``latest``, a path; no MLmodel or not facslab's: the app says
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


class AsideAnswers:
    """``with AsideAnswers(lookups, questions) as aside:`` forks a process that answers, into the
    store's file, those of ``questions`` that ``lookups`` (a local store's ``StoreLookups``) does
    not, while the block loads what the app needs whatever its models; after the block,
    ``aside.lookups`` holds the file's answers, read again once the process has ended (or
    ``lookups`` where none was forked). A block that raises ends the process first.

    No process is forked (the app asks MLflow itself, as before, ``-v`` says so) where it could not
    spare the app MLflow's import: a question the file could never keep (a ``runs:/`` URI, a stage,
    ``latest``, a path inside a model: the app would import MLflow for it anyway), a store that is
    not a local SQLite database or whose folder cannot be written to. Nor on a system other than
    Linux (macOS's libraries are not safe in a forked child), nor beside other Python threads (a
    test runner's: a lock one of them holds would stay held in the child). A model whose files
    lie outside the store's folder is not kept either: such an app forks each time, then asks."""

    def __init__(self, lookups, questions: list[str]):
        from facslab.local_store import UNKNOWN
        from facslab.model_uri import STORE_SCHEMES

        self.lookups, self.process = lookups, None
        self.open = [u for u in dict.fromkeys(questions)
                     if u.startswith(STORE_SCHEMES) and lookups.known(u) is UNKNOWN and not lookups.absent(u)]

    def _forkable(self) -> bool:
        import multiprocessing
        import os
        import threading

        if not self.open or self.lookups.path is None or not os.access(self.lookups.path.parent, os.W_OK):
            return False
        # a daemonic process may not have children; signal handlers are the main thread's
        if all(names_a_version(u) for u in self.open) and sys.platform.startswith("linux") \
                and threading.active_count() == 1 and threading.current_thread() is threading.main_thread() \
                and not multiprocessing.current_process().daemon:
            return True
        log.info("%s: not answered in the store's file; asked in this process", ", ".join(self.open))
        return False

    def __enter__(self):
        if not self._forkable():
            return self
        import multiprocessing
        import signal
        import warnings

        for stream in (sys.stdout, sys.stderr):  # the child must not write out what this process had buffered
            stream.flush()
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child's from its first instruction:
        try:                                                      # a Ctrl-C is the app's, which ends it
            with warnings.catch_warnings():
                # Python 3.12+ warns of any other thread; here they are numpy's and OpenCV's pools,
                # which the child (MLflow's import, SQLite) never uses
                warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                process = multiprocessing.get_context("fork").Process(
                    target=_answer_aside, args=(self.lookups.tracking_uri, self.open), daemon=True)
                process.start()
        except OSError as error:  # no process to be had (a process limit, memory): the app asks itself
            log.info("%s: not answered in the store's file; asked in this process (no fork: %s)",
                     ", ".join(self.open), error)
            return self
        finally:
            signal.signal(signal.SIGINT, interrupt)
        self.process, self.started = process, time.perf_counter()
        log.info("%s: not answered in the store's file; asked aside (process %d)", ", ".join(self.open), process.pid)
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self.process is None:
            return
        from facslab.local_store import StoreLookups

        if kind is None:
            try:
                self.process.join(ASIDE_TIMEOUT)
            except BaseException:  # a Ctrl-C while waiting
                self._end()
                raise
        if self.process.is_alive():
            self._end()
            if kind is None:
                log.warning("the MLflow store %s did not answer in %.0f s (a locked database?); asking it here",
                            self.lookups.tracking_uri, ASIDE_TIMEOUT)
        elif kind is None:
            log.info("asked aside: %.2f s, exit status %s", time.perf_counter() - self.started, self.process.exitcode)
        if kind is None:
            self.lookups = StoreLookups(self.lookups.tracking_uri)

    def _end(self) -> None:
        """The process ended (killed if a terminate does not end it), and its half-written file gone."""
        from facslab.local_store import LOOKUPS_FILE

        self.process.terminate()
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        (self.lookups.path.parent / f".{LOOKUPS_FILE}.{self.process.pid}").unlink(missing_ok=True)


def _answer_aside(tracking_uri: str, questions: list[str]) -> None:
    import gc

    gc.disable()  # a short life: MLflow's import without the collector's passes
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    answer_quietly(tracking_uri, questions)
