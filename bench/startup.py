"""Benchmark: `facslab emoji photo.png` from a cold process to its answer, the old path beside the
new, in one run (alternating, the median of ``--runs`` each).

* old: what start-up did before 2026-12-07: every command's parser built (the chain's import
  torch and Lightning through their configs) and the model loaded with its PyTorch module;
* new: `facslab emoji`, which builds the apps' parsers alone and answers from the model's ONNX
  export without importing torch or Lightning.

The model is an AU model of the demo's size (ResNet-18 at 64 px; weights do not change the cost),
saved with its ONNX export; the photograph is skimage's astronaut.
Run: `.venv/bin/python bench/startup.py [--runs 5]`.
"""

from __future__ import annotations

import argparse
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

OLD = ("import sys\nfrom facslab.cli import build_parser, main\nbuild_parser(None)\n"
       "sys.exit(main(sys.argv[1:] + ['--runtime', 'torch']))")
NEW = "import sys\nfrom facslab.cli import main\nsys.exit(main(sys.argv[1:]))"


def seconds(script: str, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, *argv], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        model = Path(folder) / "au_model"
        AUPredictor(AUDetector("resnet18", unfrozen_blocks=-1, hidden_size=64, image_size=64)).save(model)
        image = Path(folder) / "astronaut.png"
        Image.fromarray(skimage.data.astronaut()).save(image)
        argv = ["emoji", str(image), "--model", str(model)]
        seconds(NEW, argv)  # warm the file cache for both
        times = {"old": [], "new": []}
        for _ in range(args.runs):
            times["old"].append(seconds(OLD, argv))
            times["new"].append(seconds(NEW, argv))
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"facslab emoji, cold process to answer (median of {args.runs}):")
    print(f"  old path (every parser, PyTorch model): {old:5.2f} s")
    print(f"  new path (the apps' parsers, ONNX only): {new:5.2f} s   ({old / new:.2f}x faster)")


if __name__ == "__main__":
    main()
