"""What the bad-input tests share: a command run in this process (the ``cli`` fixture) or as a
process (``run_cli``), and the one line a user's mistake gets."""

from __future__ import annotations

import subprocess


def preprocess(run, datamodule: str, root, tmp_path, *extra: str, verbose: bool = False) -> subprocess.CompletedProcess:
    """``facslab preprocess`` by ``run``: the ``cli`` fixture (in this process) or ``run_cli`` (a process)."""
    return run(*(["-v"] if verbose else []), "preprocess", "--data", f"datamodules.{datamodule}",
               "--data.init_args.root", str(root), "--data.init_args.cache_dir", str(tmp_path / "cache"),
               "--data.init_args.progress", "false", *extra, "--report", str(tmp_path / "skipped.csv"),
               env={"FACSLAB_MLRUNS": str(tmp_path / "store")})


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
