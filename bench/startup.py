"""Benchmark: `facslab emoji photo.png` from a cold process to its answer, the old code beside the
new, in one run (alternating, the median of ``--runs`` each).

* old: the CLI of ``--old`` (a commit before 2026-12-07's start-up change, checked out in a
  temporary git worktree and run from it): every command's parser built, which imports torch and
  Lightning through the chain's configs, and the model folder loaded with its PyTorch module before
  ONNX Runtime answers;
* new: this tree's `facslab emoji`: the apps' parsers alone, the answer from the ONNX export's
  outputs, neither torch nor Lightning imported.

Both run on the same model folder (an AU model of the demo's size, ResNet-18 at 64 px, saved with
its ONNX export by this tree; the old code reads it) and skimage's astronaut, at ``--runtime auto``.
Run from the repository: `.venv/bin/python bench/startup.py [--runs 5] [--old f055aaf]`.
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

from facslab.predictor import AUPredictor
from lightning_modules.au_detector import AUDetector

REPOSITORY = Path(__file__).resolve().parents[1]


def seconds(argv: list[str], tree: Path) -> float:
    """Wall time of ``python -m facslab.cli ARGV`` run in ``tree`` (``-m`` puts the working folder
    first on the path), with its code first on the path."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facslab.cli", *argv], check=True, capture_output=True, cwd=tree,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--old", default="f055aaf", help="the commit whose CLI is the old path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old_tree = Path(folder) / "old"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(old_tree), args.old],
                       check=True, capture_output=True)
        torch.manual_seed(0)
        model = Path(folder) / "au_model"
        AUPredictor(AUDetector("resnet18", unfrozen_blocks=-1, hidden_size=64, image_size=64)).save(model)
        image = Path(folder) / "astronaut.png"
        Image.fromarray(skimage.data.astronaut()).save(image)
        argv = ["emoji", str(image), "--model", str(model)]
        try:
            for tree in (old_tree, REPOSITORY):  # warm the file cache for both
                seconds(argv, tree)
            times = {"old": [], "new": []}
            for _ in range(args.runs):
                times["old"].append(seconds(argv, old_tree))
                times["new"].append(seconds(argv, REPOSITORY))
        finally:
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(old_tree)],
                           capture_output=True)
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"facslab emoji, cold process to answer (median of {args.runs}):")
    print(f"  old ({args.old}: every parser, torch and Lightning imported): {old:5.2f} s")
    print(f"  new (the apps' parsers, the ONNX export alone):          {new:5.2f} s   ({old / new:.2f}x faster)")


if __name__ == "__main__":
    main()
