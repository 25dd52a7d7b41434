"""The errors a user's own input or configuration raises, at the bottom of the layers so that
readers, datamodules and tasks can raise them and the CLI answer them with one line (without
importing the modules that raise them)."""


class UsersMistake(Exception):
    """Something the user gave or set that cannot work: the CLI prints its message as one line and
    exits with status 2 (``-v`` adds the traceback). Every such error derives from it."""


class ConfigError(UsersMistake, ValueError):
    """A config that cannot run: says which key and what is accepted."""
