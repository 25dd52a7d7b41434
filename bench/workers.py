"""Benchmark: a sweep's local worker process, from its start to its exit, without its trials: the
old path (multiprocessing's spawned Process given the worker function and its arguments, as
``facslab sweep --workers N`` started them before 2026-12-07 23:45) beside the new
(``facslab.collector.spawned``: the function and its arguments unpickled with the garbage
collector off, then frozen), alternating, in one run.

The child imports what a worker's function and arguments need (``facslab.sweep.workers``:
torch, Lightning, Optuna, MLflow; the sweep's config, here ``sweeps/demo.yaml``), does nothing
else, and exits: the time to its work (the imports) and from its work to its exit (the
interpreter's last collections), the child's full collections while importing, and one
collection's time right after the imports (what Optuna's collection after a trial costs on top
of the objects the trials make, and of modules they import later).
Run from the repository: `.venv/bin/python bench/workers.py [--runs 5]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from facslab.collector import spawned

REPOSITORY = Path(__file__).resolve().parents[1]


def report(path: str, config, function) -> None:
    """The child's work: when it starts (the clock of the machine), its full collections so far, and
    the time of one collection right after the imports, to ``path``."""
    import gc
    import json

    started, full = time.time(), gc.get_stats()[2]["collections"]
    start = time.perf_counter()
    gc.collect()
    Path(path).write_text(json.dumps([started, full, time.perf_counter() - start]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from facslab.config import SweepConfig
    from facslab.demo_chain import load_config
    from facslab.sweep.workers import _worker

    config = load_config(SweepConfig, REPOSITORY / "sweeps" / "demo.yaml")
    context = multiprocessing.get_context("spawn")
    seen = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as folder:
        said = str(Path(folder) / "report.json")
        paths = {"old": lambda: context.Process(target=report, args=(said, config, _worker)),
                 "new": lambda: spawned(context, report, said, config, _worker)}
        for _ in range(args.runs):
            for path, process in paths.items():
                start = time.time()
                child = process()
                child.start()
                child.join()
                ended = time.time()
                started, full, collection = json.loads(Path(said).read_text())
                seen[path].append((started - start, ended - started, ended - start, full, collection))
    print(f"a sweep worker's process without trials (median of {args.runs}): start to its work (the imports), "
          "its work to its exit, in all:")
    for path, runs in seen.items():
        imports, leaving, wall, full, collection = (statistics.median(r[k] for r in runs) for k in range(5))
        print(f"  {path}: {imports:5.2f} s + {leaving:5.2f} s = {wall:5.2f} s   full collections while importing "
              f"{full:.0f}   one collection right after the imports {collection * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
