"""A team's shared services on one host: PostgreSQL and an MLflow tracking server.

``facslab services up`` starts, from a project folder and with no system-wide configuration:

* PostgreSQL (Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl``) with two databases,
  ``optuna`` (the studies) and ``mlflow`` (the tracking server's backend store);
* ``mlflow server`` on that database, with artifacts proxied to ``<folder>/artifacts``.

Both bind to loopback unless told otherwise; host connections need the generated password
(scram-sha-256). Workers on any machine then export the two printed URIs
(``FACSLAB_OPTUNA_STORAGE`` and ``MLFLOW_TRACKING_URI``) and run ``facslab sweep``.
PostgreSQL refuses to run as root, so under root its programs run as the ``postgres`` user that
Debian's package creates.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from facslab.badinput import BadInputError
from facslab.errors import UsersMistake
from facslab.listening import check_port

DATABASES = ("optuna", "mlflow")
INSTALL_HINT = ("PostgreSQL's server programs (initdb, pg_ctl) were not found: install Debian's `postgresql` "
                "package (sudo apt-get install postgresql), or put its bin folder on PATH")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")  # Debian keeps the server programs off PATH, per version


class ServicesError(UsersMistake, RuntimeError):
    """A service that cannot start or be reached; the message says what to do."""


@dataclass(frozen=True)
class Services:
    """Where the services live and listen. ``host`` 0.0.0.0 serves other machines."""

    folder: Path
    host: str = "127.0.0.1"
    postgres_port: int = 5433  # not 5432: a system-wide cluster may hold that one
    mlflow_port: int = 5000
    user: str = "facslab"

    @property
    def pgdata(self) -> Path:
        return self.folder / "postgres"

    @property
    def password(self) -> str:
        return (self.folder / "password").read_text().strip()

    def advertised_host(self) -> str:
        """The name other machines use: this host's name when bound to every interface."""
        return socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host

    @property
    def local_host(self) -> str:
        """How this machine reaches the services."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    def database_uri(self, database: str, host: str | None = None) -> str:
        host = host or self.advertised_host()
        return f"postgresql://{self.user}:{self.password}@{host}:{self.postgres_port}/{database}"

    @property
    def optuna_storage(self) -> str:
        return self.database_uri("optuna")

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.advertised_host()}:{self.mlflow_port}"

    def exports(self) -> str:
        return (f"export FACSLAB_OPTUNA_STORAGE='{self.optuna_storage}'\n"
                f"export MLFLOW_TRACKING_URI='{self.tracking_uri}'")

    # the state file lets `status` and `down` find what `up` started, with its ports
    def save(self, **extra) -> None:
        state = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        (self.folder / "services.json").write_text(json.dumps({**state, **extra}, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> tuple[Services, dict]:
        path = Path(folder) / "services.json"
        if not path.exists():
            raise ServicesError(f"{path}: no services were started from this folder; run `facslab services up`")
        state = json.loads(path.read_text())
        fields = {k: state.pop(k) for k in ("host", "postgres_port", "mlflow_port", "user")}
        state.pop("folder", None)
        return cls(Path(folder), **fields), state


def postgres_bindir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: PATH first, then Debian's versioned folders."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(DEBIAN_POSTGRES.glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    raise ServicesError(INSTALL_HINT)


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        raise ServicesError("PostgreSQL cannot run as root and `runuser` is missing: run as an ordinary user")
    return ["runuser", "-u", "postgres", "--", *command]


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _run(command: list[str], what: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ServicesError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done


def _pg_ctl(services: Services, action: str, *options: str) -> list[str]:
    """A ``pg_ctl`` command line for this cluster, run as the server's user."""
    return _as_server_user([str(postgres_bindir() / "pg_ctl"), action, "-D", str(services.pgdata), *options])


def postgres_running(services: Services) -> bool:
    if not (services.pgdata / "PG_VERSION").exists():
        return False
    return subprocess.run(_pg_ctl(services, "status"), capture_output=True, text=True, timeout=30).returncode == 0


def _init_postgres(services: Services) -> None:
    bindir = postgres_bindir()  # before any folder is made: a missing package says so first
    services.folder.mkdir(parents=True, exist_ok=True)
    secret = services.folder / "password"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(18) + "\n")
        secret.chmod(0o600)
    services.pgdata.mkdir(mode=0o700, exist_ok=True)
    _give_to_server_user(services.pgdata)
    # initdb reads the password as the server's user: a copy it may read, removed at once
    pwfile = services.folder / ".initdb-password"
    pwfile.write_text(services.password + "\n")
    pwfile.chmod(0o600)
    _give_to_server_user(pwfile)
    try:
        done = subprocess.run(
            _as_server_user([str(bindir / "initdb"), "-D", str(services.pgdata), "-U", services.user, "-E", "UTF8",
                             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                             "--no-instructions"]), capture_output=True, text=True, timeout=300)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        hint = ""
        if os.geteuid() == 0 and "ermission denied" in done.stderr:
            hint = (f" (the postgres user cannot reach {services.folder}: choose a --folder whose parents "
                    "it may enter, e.g. under /srv or /tmp)")
        raise ServicesError(f"initdb failed in {services.pgdata}{hint}: {done.stderr.strip()}")


def _allow_remote_hosts(services: Services) -> None:
    """Bound beyond loopback: password logins from any address (initdb allows loopback only)."""
    hba = services.pgdata / "pg_hba.conf"
    line = f"host all {services.user} 0.0.0.0/0 scram-sha-256\nhost all {services.user} ::/0 scram-sha-256\n"
    if line not in hba.read_text():
        with hba.open("a") as handle:
            handle.write("# facslab services: workers on other machines\n" + line)


def start_postgres(services: Services) -> None:
    if not (services.pgdata / "PG_VERSION").exists():
        _init_postgres(services)
    if services.host not in LOOPBACK:
        _allow_remote_hosts(services)
    if not postgres_running(services):
        log = services.folder / "postgres.log"
        log.touch()
        _give_to_server_user(log)
        # TCP only (no Unix socket folder to own); `-w` returns once connections are accepted
        options = f"-p {services.postgres_port} -c listen_addresses={services.host} -c unix_socket_directories=''"
        _run(_pg_ctl(services, "start", "-w", "-t", "60", "-l", str(log), "-o", options), f"PostgreSQL start (log: {log})")
    _create_databases(services)


def _connect(services: Services, database: str = "postgres"):
    import psycopg  # SQLAlchemy's default PostgreSQL driver, hence Optuna's and MLflow's

    return psycopg.connect(host=services.local_host, port=services.postgres_port, user=services.user,
                           password=services.password, dbname=database, connect_timeout=10, autocommit=True)


def _create_databases(services: Services) -> None:
    with _connect(services) as connection:  # autocommit: CREATE DATABASE cannot run in a transaction
        for name in DATABASES:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                connection.execute(f'CREATE DATABASE "{name}"')
    # Optuna's tables, made once here: workers that start together would race to create them
    import optuna

    optuna.storages.RDBStorage(services.database_uri("optuna", services.local_host)).remove_session()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) is not a server
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True


def mlflow_healthy(services: Services, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{services.local_host}:{services.mlflow_port}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow(services: Services, wait: float = 120.0) -> int:
    """Start the tracking server in its own session (it outlives this command); returns its pid."""
    if mlflow_healthy(services):
        raise ServicesError(f"port {services.mlflow_port} already answers MLflow health checks; "
                            "stop that server or choose --mlflow_port")
    artifacts = services.folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log_path = services.folder / "mlflow.log"
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", services.database_uri("mlflow", services.local_host),
               "--artifacts-destination", str(artifacts.resolve()), "--host", services.host,
               "--port", str(services.mlflow_port), "--workers", "2"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServicesError(f"the MLflow server exited with code {process.returncode}; {log_path} ends:\n{tail}")
        if mlflow_healthy(services):
            return process.pid
        time.sleep(0.5)
    process.terminate()
    raise ServicesError(f"the MLflow server did not answer within {wait:.0f} s; see {log_path}")


def stop_mlflow(pid: int | None, wait: float = 30.0) -> bool:
    if not _pid_alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)  # the server and its uvicorn workers
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def up(services: Services) -> Services:
    """Start whatever is not running; safe to repeat. A folder that is a file or a port another
    server holds is said before PostgreSQL is initialised or started."""
    if services.folder.exists() and not services.folder.is_dir():
        raise BadInputError(services.folder, "a file, not a folder: give --folder a folder for the services' data")
    state = {}
    if (services.folder / "services.json").exists():
        _, state = Services.load(services.folder)
    pid = state.get("mlflow_pid")
    mlflow_up = _pid_alive(pid) and mlflow_healthy(services)
    if not postgres_running(services):
        check_port(services.host, services.postgres_port, f"--host {services.host} --postgres_port {services.postgres_port}")
    if not mlflow_up:
        check_port(services.host, services.mlflow_port, f"--host {services.host} --mlflow_port {services.mlflow_port}")
    start_postgres(services)
    if not mlflow_up:
        pid = start_mlflow(services)
    services.save(mlflow_pid=pid)
    return services


def down(folder: str | Path) -> list[str]:
    services, state = Services.load(folder)
    stopped = []
    if stop_mlflow(state.get("mlflow_pid")):
        stopped.append("mlflow")
    if postgres_running(services):
        _run(_pg_ctl(services, "stop", "-m", "fast", "-w"), "PostgreSQL stop")
        stopped.append("postgresql")
    services.save(mlflow_pid=None)
    return stopped


def status(folder: str | Path) -> dict[str, bool]:
    services, state = Services.load(folder)
    return {"postgresql": postgres_running(services),
            "mlflow": _pid_alive(state.get("mlflow_pid")) and mlflow_healthy(services)}
