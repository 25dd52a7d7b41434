"""The ``facslab`` command: one entry point, one subcommand per job, one module per group of
commands (``chain``: the experiment chain; ``data``; ``download``; ``apps``; ``services``). A module
of this package with an ``add_commands(sub)`` function and the ``COMMANDS`` it adds (name -> the
line ``--help`` gives it) is a group: adding one adds its commands. Only the group of the command
being run builds its parsers (building them imports what their options name: torch and Lightning
for the chain's configs); ``facslab --help`` and an unknown command list every command from the
groups' ``COMMANDS`` alone."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from jsonargparse import ArgumentParser

from facslab.errors import ConfigError, UsersMistake

#: the groups listed first in ``--help``; any other module with ``add_commands`` follows
FIRST_GROUPS = ("chain", "data", "apps")


def groups() -> list[str]:
    import pkgutil

    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return [g for g in FIRST_GROUPS if g in found] + sorted(set(found) - set(FIRST_GROUPS))


def build_parser(command: str | None = None) -> tuple[ArgumentParser, dict[str, tuple[ArgumentParser, object]]]:
    """The parser, and the (parser, handler) of ``command``'s group; when ``command`` is None or no
    group has it, a parser that lists every command (for ``--help`` and the error) and no handler."""
    import importlib

    parser = ArgumentParser(exit_on_error=False, prog="facslab",
                            description="Facial Action Unit detection, experiment-tracked.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subcommands(dest="command")
    modules = [importlib.import_module(f"facslab.cli.{group}") for group in groups()]
    chosen = [m for m in modules if command in getattr(m, "COMMANDS", {})]
    if chosen:
        return parser, chosen[0].add_commands(sub)
    for module in modules:
        for name, text in getattr(module, "COMMANDS", {}).items():
            sub.add_subcommand(name, ArgumentParser(exit_on_error=False, description=text), help=text)
    return parser, {}


def command_of(argv: list[str]) -> str | None:
    """The subcommand an argument list asks for: its first word that is not an option (the
    top-level options, -v and -h, take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def quiet_libraries(verbose: bool) -> None:
    """Keep the libraries' chatter (GPU/TPU notices, tips, deprecation notes) out of the output."""
    import warnings

    os.environ.setdefault("LITLOGGER_DISABLE_TIP", "1")
    if not verbose:
        # FFmpeg's own line for each frame that does not decode: `facslab live` counts and names them
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        # MLflow's "Creating initial MLflow database tables..." on a new store, alembic's migrations
        for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_utilities",
                     "mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # urllib3's line per retry: `facslab download` retries by design and counts what still fails
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        warnings.filterwarnings("ignore", message=r".*is experimental.*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # frozen blocks are in eval mode on purpose (lightning_modules.freezing)
        warnings.filterwarnings("ignore", message=r"Found .* module\(s\) in eval mode")

def console() -> int:
    """The ``facslab`` console command: ``main`` with the cyclic garbage collector off until the
    command's work starts (``facslab.collector``: ``facslab sweep --help`` 8.02 -> 6.38 s, medians
    of 3 in bench/startup.py), then ``gc.freeze()`` so that the interpreter's exit skips its last
    collections over every object (0.6 s after MLflow's 2,400 modules). Objects are still freed as
    the modules are cleared; cycles are left to the process's end."""
    import gc

    from facslab import collector

    collector.defer()
    try:
        return main()
    finally:  # --help and argparse's own exits leave through here too
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, commands = build_parser(command_of(argv))
    command = next((a for a in argv if a in commands), None)
    try:
        try:
            args = parser.parse_args(argv)
        except argparse.ArgumentError as error:  # jsonargparse's, often many lines: the command line's own mistake
            from facslab.class_args import one_line
            hint = None
            if command in ("sweep", "register", "au-emotion"):  # facslab.config imports torch: only for these
                from facslab.config import old_config_shape

                hint = old_config_shape(argv, command)
            if hint:
                raise ConfigError(hint) from error
            raise ConfigError(one_line(error)
                              + f" (facslab{' ' + command if command else ''} --help lists the options)") from error
        return _run(args, commands)
    # the user's own input or setting to fix: one line (-v adds the traceback); anything else is a
    # programming error and keeps its traceback
    except Exception as error:
        mistake = _users_mistake(error)
        if mistake is None:
            raise
        if "-v" in argv or "--verbose" in argv:
            traceback.print_exc()
        print(f"facslab{' ' + command if command else ''}: error: {mistake}", file=sys.stderr)
        return 2

def _users_mistake(error: BaseException) -> BaseException | None:
    """The user's mistake that ``error`` is or was caused by: jsonargparse wraps what a class
    raises while a config instantiates it (``fold must be in 0..2``) in its own ValueError."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UsersMistake):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _run(args, commands) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(args.verbose)
    parser, handler = commands[args.command]
    from facslab import collector

    collector.resume()  # the command's work: the collector on, what the start-up made frozen
    stores = sys.modules.get("facslab.mlflow_store")
    if stores is not None:
        stores.written_store()  # a store an earlier command of this process used is not this one's
    code = handler(args[args.command], parser)
    _answer_the_apps_ahead()
    return code


def _answer_the_apps_ahead() -> None:
    """After a command that pointed MLflow at a local store (a write there sends the next app to
    MLflow again), the apps' questions answered for the store as it is now
    (``facslab.store_answers.answer_ahead``). Only a saving: where the store fails it (a database
    locked, an artifact store out of reach), the next app asks MLflow, as it did before; ``-v``
    says why."""
    stores = sys.modules.get("facslab.mlflow_store")
    uri = stores.written_store() if stores is not None else None
    if uri is None:
        return
    from facslab.store_answers import answer_quietly

    answer_quietly(uri)
