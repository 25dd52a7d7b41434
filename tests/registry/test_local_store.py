"""What an app keeps of a local store's answers is tied to the database's state: any commit changes
it, even one that keeps the file's size and modification time."""

import os
import sqlite3

from facslab.local_store import database_state


def test_a_commit_changes_the_state_even_with_the_size_and_time_put_back(tmp_path):
    database = tmp_path / "mlflow.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE aliases (alias TEXT, version INTEGER)")
        connection.execute("INSERT INTO aliases VALUES ('champion', 1)")
    uri = f"sqlite:///{database}"
    before, stat = database_state(uri), database.stat()
    with sqlite3.connect(database) as connection:  # the alias moved: same rows, same pages
        connection.execute("UPDATE aliases SET version = 2")
    os.utime(database, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert database.stat().st_size == stat.st_size
    assert database_state(uri) != before and database_state(uri) == database_state(uri)


def test_a_write_ahead_log_with_commits_in_it_or_a_server_is_never_a_state(tmp_path):
    database = tmp_path / "mlflow.db"
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE aliases (alias TEXT, version INTEGER)")
    connection.commit()  # held open: the log keeps the commit
    assert (tmp_path / "mlflow.db-wal").stat().st_size > 0
    assert database_state(f"sqlite:///{database}") is None
    connection.close()
    assert database_state("http://127.0.0.1:5000") is None and database_state("postgresql://x/y") is None
