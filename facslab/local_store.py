"""The local MLflow store seen as files: where it is, and what it answered about model URIs while
its database has not changed since.

An app given ``models:/facslab-au@champion`` spends about half its start-up importing MLflow and
its SQLAlchemy store to learn one folder. ``StoreLookups`` keeps the answers (the facslab folder an
alias or version gives, or that the store has no such model) in ``model-lookups.json`` beside an
SQLite database, with the database file's size, modification time and header when they were
read. They are used only while those are the same: any write to the store (a version registered,
an alias moved or deleted, a run logged) sends the next app to MLflow again, unless a ``facslab``
command made it and ran to its end (not stopped by an exception): before it exits, it answers the
apps' questions (their defaults, and the latest URIs they asked about, kept as ``questions``) for
the store as it left it, where their files are in the store's folder
(``facslab.store_answers.answer_ahead``); otherwise the app has its questions answered into the
file by a forked process, on Linux, beside no other Python thread, where the store's folder can
be written to (``facslab.store_answers.AsideAnswers``). A server's store (``http://``,
``postgresql://``) cannot be watched from here: there MLflow is always asked.

This module imports neither MLflow nor torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: the answers' file, in the folder of the store's database
LOOKUPS_FILE = "model-lookups.json"
#: the URIs apps asked about that the file keeps for commands to answer ahead: the latest so many
QUESTIONS = 16
#: ``StoreLookups.known``'s answer when MLflow must be asked
UNKNOWN = object()


def store_dir() -> Path:
    """The local store folder: ``$FACSLAB_MLRUNS`` or ``mlruns`` in the working directory."""
    return Path(os.environ.get("FACSLAB_MLRUNS", "mlruns"))


def default_tracking_uri() -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(store_dir() / 'mlflow.db').resolve()}"


def _database(tracking_uri: str) -> Path | None:
    """The database file of an SQLite store's URI; None for any other store."""
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve() if tracking_uri.startswith("sqlite:///") else None


def database_state(tracking_uri: str) -> list | None:
    """The size, modification time and header of an SQLite store's database; None for any other
    store, and while a journal is not empty (a write under way, or a write-ahead log, whose commits
    can leave the database file as it was). The header holds SQLite's change counter, which every
    commit in rollback mode (MLflow's) increments: a modification time may be a tick coarse."""
    database = _database(tracking_uri)
    if database is None:
        return None
    for journal in (database.with_name(database.name + end) for end in ("-wal", "-journal")):
        try:
            if journal.stat().st_size:
                return None
        except OSError:
            pass
    try:
        with open(database, "rb") as handle:
            stat = os.fstat(handle.fileno())
            return [stat.st_size, stat.st_mtime_ns, handle.read(100).hex()]
    except OSError:
        return None


#: what else chooses the answers of one database: MLflow's workspaces
WORKSPACE_VARIABLES = ("MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE")


class StoreLookups:
    """Model URIs -> facslab folders (or None: not in the store), as a local store answered them
    while its database is as it is now. ``known`` and ``absent`` answer from the file; after asking
    MLflow, ``watch`` (before the questions) and ``remember`` (each answer), then ``save``."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.answers: dict[str, str | None] = {}
        self.earlier: list[str] = []  # every URI apps asked about, answered for this state or not
        self.asked = False  # whether MLflow was asked (``watch``)
        self.asked_from: list | None = None  # the database's state then
        self.path = None
        self.read_state = state = database_state(tracking_uri)
        if state is None:
            return
        self.database = str(_database(tracking_uri))
        self.workspace = [os.environ.get(name) for name in WORKSPACE_VARIABLES]
        self.path = Path(self.database).parent / LOOKUPS_FILE
        try:
            kept = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not (isinstance(kept, dict) and kept.get("database") == self.database and isinstance(kept.get("answers"), dict)):
            return
        self.earlier = [u for u in kept.get("questions", []) if isinstance(u, str)] or list(kept["answers"])
        if kept.get("state") == state and kept.get("workspace") == self.workspace:
            self.answers = kept["answers"]

    def known(self, uri: str):
        """The folder (a Path) the store gave for ``uri`` while its database was as it is now, or
        ``UNKNOWN`` (MLflow must be asked, also where the store had no such model: its error says so)."""
        answer = self.answers.get(uri)
        return Path(answer) if answer is not None and Path(answer).is_dir() else UNKNOWN

    def absent(self, uri: str) -> bool:
        """Whether the store had no model at ``uri`` while its database was as it is now."""
        return uri in self.answers and self.answers[uri] is None

    def watch(self) -> None:
        """Note the database's state before MLflow is asked (after this process's own writes, such as
        the experiment ``setup_tracking`` makes); answers read for another state are dropped."""
        if self.asked:
            return
        self.asked = True
        if self.path is not None:
            self.asked_from = database_state(self.tracking_uri)
            if self.asked_from != self.read_state:
                self.answers = {}

    def remember(self, uri: str, folder: Path | None) -> None:
        """Keep ``folder`` (None: no such model) as the answer for ``uri``, if it is the store's own:
        a copy MLflow made elsewhere (from remote artifacts) may be gone or replaced later."""
        if folder is None:
            self.answers[uri] = None
        elif self.path is not None and Path(folder).resolve().is_relative_to(self.path.parent):
            self.answers[uri] = str(Path(folder).resolve())

    def save(self) -> None:
        """Keep the answers, unless the database changed while MLflow was asked (an answer may be
        older than the state) or nothing was asked. A store that cannot be written to keeps none:
        the next app asks MLflow again."""
        if self.path is None or self.asked_from is None or database_state(self.tracking_uri) != self.asked_from:
            return
        temporary = self.path.with_name(f".{LOOKUPS_FILE}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps({"database": self.database, "workspace": self.workspace,
                                             "state": self.asked_from, "answers": self.answers,
                                             "questions": list(dict.fromkeys([*self.answers, *self.earlier]))[:QUESTIONS]}),
                                 encoding="utf-8")
            os.replace(temporary, self.path)  # whole or not at all, for an app starting beside this one
        except OSError:
            temporary.unlink(missing_ok=True)
