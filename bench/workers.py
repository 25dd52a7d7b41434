"""Benchmark: a sweep's local worker process, from its start to its exit, without its trials: the
old path (multiprocessing's spawned Process given the worker function and its arguments, as
``facslab sweep --workers N`` started them before 2026-12-07 23:45) beside the new
(``facslab.collector.spawned``: the function and its arguments unpickled with the garbage
collector off, then frozen), alternating, in one run.

The child imports what a worker's function and arguments need (``facslab.sweep.workers``:
torch, Lightning, Optuna, MLflow; the sweep's config, here ``sweeps/demo.yaml``), does nothing
else, and exits. Also printed: the child's full collections and one collection's time after the
imports (what Optuna's collection after every trial costs on top of the trial's own objects).
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
    """The child's work: its full collections so far, and the time of one collection now, to ``path``."""
    import gc
    import json

    full = gc.get_stats()[2]["collections"]
    start = time.perf_counter()
    gc.collect()
    Path(path).write_text(json.dumps([full, time.perf_counter() - start]))


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
                start = time.perf_counter()
                child = process()
                child.start()
                child.join()
                wall = time.perf_counter() - start
                seen[path].append((wall, *json.loads(Path(said).read_text())))
    print(f"a sweep worker's process, start to exit without trials (median of {args.runs}):")
    for path, runs in seen.items():
        wall, full, collection = (statistics.median(r[k] for r in runs) for k in range(3))
        print(f"  {path}: {wall:5.2f} s   full collections while importing {full:.0f}   "
              f"one collection after the imports {collection * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
