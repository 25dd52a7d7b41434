"""The ``services`` command: the shared PostgreSQL and MLflow tracking server."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser


def _services(args, parser=None) -> int:
    from facslab import services

    action, folder = args.action, Path(args.folder)
    if action == "up":
        started = services.up(services.Services(folder, args.host, args.postgres_port, args.mlflow_port))
        print(f"PostgreSQL on {started.local_host}:{started.postgres_port} (data: {started.pgdata}), MLflow tracking "
              f"server on {started.tracking_uri} (artifacts: {folder / 'artifacts'})\n"
              f"workers (on this or other machines) export:\n{started.exports()}\n"
              f"then run `facslab sweep --config sweeps/<name>.yaml`; stop with `facslab services down`")
    elif action == "down":
        stopped = services.down(folder)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        running = services.status(folder)
        for name, up in running.items():
            print(f"{name}: {'running' if up else 'stopped'}")
        if all(running.values()):
            print(services.Services.load(folder)[0].exports())
        return 0 if all(running.values()) else 3
    return 0


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'services': 'Start, stop or check the shared PostgreSQL and MLflow tracking server.',
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    svc = ArgumentParser(exit_on_error=False, description=COMMANDS["services"])
    svc.add_argument("action", choices=["up", "down", "status"])
    svc.add_argument("--folder", default="mlruns/services", help="data, logs and the password of the services")
    svc.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: workers on other machines)")
    svc.add_argument("--postgres_port", type=int, default=5433)
    svc.add_argument("--mlflow_port", type=int, default=5000)
    sub.add_subcommand("services", svc, help=svc.description)
    return {"services": (svc, _services)}
