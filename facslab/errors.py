"""The error a user's own configuration raises, at the bottom of the layers so that readers,
datamodules and tasks can raise it and the CLI answer it with one line."""


class ConfigError(ValueError):
    """A config that cannot run: says which key and what is accepted."""
