"""Whether a server can listen where it is told to, said before anything slow starts."""

from __future__ import annotations

import socket

from facslab.errors import ConfigError


def check_port(host: str, port: int, flags: str) -> None:
    """A ConfigError naming ``flags`` (the options that chose this address) when ``host:port``
    cannot be bound: a server started there would fail later, with its own log lines."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and PostgreSQL bind
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"{flags}: cannot listen on {host}:{port} ({error.strerror}; another server on that "
                              "port?): choose another port") from None
