"""What the bad-input tests share: a command run in this process (the ``cli`` fixture) or as a
process (``run_cli``) on its own store, and the one line a user's mistake gets."""

from __future__ import annotations

import subprocess


def facslab(run, *args: str, tmp_path) -> subprocess.CompletedProcess:
    return run(*args, env={"FACSLAB_MLRUNS": str(tmp_path / "store")})


def refused(out: subprocess.CompletedProcess, *words: str, command: str = "preprocess") -> str:
    """The one line a user's mistake gets: the whole of stderr."""
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith(f"facslab {command}: error: ") and all(w in lines[0] for w in words), lines[0]
    print(lines[0])  # with -s: the lines docs/bad-input.md quotes
    return lines[0]
