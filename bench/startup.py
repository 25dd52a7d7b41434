"""Benchmark: `facslab emoji photo.png` from a cold process to its answer, the old code beside the
new, in one run (alternating, the median of ``--runs`` each).

* old: the CLI of ``--old``, checked out in a temporary git worktree and run from it. The default,
  b1d1fc2, loaded a registered model through MLflow's ``pyfunc.load_model`` (which checks the model's
  pip requirements against every installed package) and let the interpreter's exit collect every
  object; f055aaf, before that, also built every command's parser (torch and Lightning imported)
  and the PyTorch model beside the ONNX export;
* new: this tree's `facslab emoji`: a registered model read as files (its ``MLmodel`` names the
  folder), the interpreter's last collections skipped; on a store unchanged since the last app the
  folder comes from the store's ``model-lookups.json``, without importing MLflow, and after a
  write to the store (the third row: the file removed before each run) MLflow is asked again, in a
  forked process while the app loads the face detector, the landmark model and ONNX Runtime (since
  2026-12-08 02:10, ``--old 49ee2ab``; before, in the app's own process), unless a facslab command
  (the fourth row: ``facslab port-fer`` after the file was removed) answered the apps' questions
  before it exited (since 2026-12-07 23:30; ``--old eead999``).

Both run on the same model (an AU model of the demo's size, ResNet-18 at 64 px, saved with its
ONNX export by this tree; the old code reads it) and skimage's astronaut, at ``--runtime auto``,
given as a local folder and as the registered ``models:/facslab-au@champion`` of a fresh local
store (what ``emoji`` loads by default). Then ``facslab --help``, which lists the commands (before
0d83551 it built every command's parser, the chain's importing torch and Lightning), and
``facslab sweep --help``, whose parser imports torch, Lightning and MLflow (with the cyclic garbage
collector off while a command starts, ``facslab.cli.console``, since 2026-12-07 22:00; compare with
``--old 37eca7a``).
Run from the repository: `.venv/bin/python bench/startup.py [--runs 5] [--old b1d1fc2]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import skimage.data
import torch
from PIL import Image

from facslab.local_store import LOOKUPS_FILE
from facslab.predictor import AUPredictor
from lightning_modules.au_detector import AUDetector

REPOSITORY = Path(__file__).resolve().parents[1]


def seconds(argv: list[str], tree: Path, store: Path) -> float:
    """Wall time of ``python -m facslab.cli ARGV`` run in ``tree`` (``-m`` puts the working folder
    first on the path), with its code first on the path and ``store`` as the MLflow store."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facslab.cli", *argv], check=True, capture_output=True, cwd=tree,
                   env={**os.environ, "PYTHONPATH": str(tree), "FACSLAB_MLRUNS": str(store)})
    return time.perf_counter() - start


def register(predictor: AUPredictor, store: Path) -> str:
    """Log and register the predictor as the registry does, as ``facslab-au@champion`` in ``store``."""
    import mlflow

    from facslab.mlflow_store import environment_kept, setup_tracking
    from facslab.serving import log_predictor

    with environment_kept("FACSLAB_MLRUNS"):
        os.environ["FACSLAB_MLRUNS"] = str(store)
        setup_tracking(None)
        with mlflow.start_run():
            info = log_predictor(predictor, "facslab-au")
        mlflow.MlflowClient().set_registered_model_alias("facslab-au", "champion", info.registered_model_version)
    return "models:/facslab-au@champion"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--old", default="b1d1fc2", help="the commit whose CLI is the old path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old_tree = Path(folder) / "old"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(old_tree), args.old],
                       check=True, capture_output=True)
        torch.manual_seed(0)
        model, store = Path(folder) / "au_model", Path(folder) / "store"
        predictor = AUPredictor(AUDetector("resnet18", unfrozen_blocks=-1, hidden_size=64, image_size=64))
        predictor.save(model)
        registered = register(predictor, store)
        image = Path(folder) / "astronaut.png"
        Image.fromarray(skimage.data.astronaut()).save(image)
        # (the command, what happens to the store before each run: nothing; a write from elsewhere (the
        # store's answers gone); or a write from elsewhere, then a facslab command of the same tree
        # pointing MLflow at the store: `port-fer`, whose model is registered already; the emoji without
        # its model, as in the rows before)
        models = {"model folder": (["emoji", str(image), "--model", str(model)], None),
                  "models:/ URI": (["emoji", str(image), "--model", registered], None),
                  "models:/, store written": (["emoji", str(image), "--model", registered], "written"),
                  "models:/, after port-fer": (["emoji", str(image), "--model", registered, "--emotion_model", "none"],
                                               "port-fer"),
                  "facslab --help": (["--help"], None),
                  "facslab sweep --help": (["sweep", "--help"], None)}
        times = {(kind, path): [] for kind in models for path in ("old", "new")}
        try:
            for kind, (argv, before) in models.items():
                if before == "port-fer":  # the emotion model registered, once
                    seconds(["port-fer"], REPOSITORY, store)
                for tree in (old_tree, REPOSITORY):  # warm the file cache for both
                    seconds(argv, tree, store)
                for _ in range(args.runs):
                    for path, tree in (("old", old_tree), ("new", REPOSITORY)):
                        if before:
                            (store / LOOKUPS_FILE).unlink(missing_ok=True)
                        if before == "port-fer":
                            seconds(["port-fer"], tree, store)
                        times[kind, path].append(seconds(argv, tree, store))
        finally:
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(old_tree)],
                           capture_output=True)
    print(f"facslab emoji (and --help), cold process to answer (median of {args.runs}), old = {args.old}, "
          "new = this tree:")
    for kind in models:
        old, new = statistics.median(times[kind, "old"]), statistics.median(times[kind, "new"])
        print(f"  {kind:23s} old {old:5.2f} s   new {new:5.2f} s   ({old / new:.2f}x faster)")


if __name__ == "__main__":
    main()
