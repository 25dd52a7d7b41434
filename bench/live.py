"""Benchmark: frames per second of `facslab live` on a 640x480 video with one face, and where the
time goes (decode, detection, tracking, landmarks, alignment, model, emoji, drawing, encoding).

Uses a video built from skimage's astronaut photograph and a model of the demo's size (ResNet-18,
64 px; weights do not change the cost). Run: `.venv/bin/python bench/live.py [--frames 300]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import skimage.data
import torch

from facslab.analysis import FaceAnalyzer
from facslab.live import run_live
from facslab.predictor import AUPredictor
from facslab.synth.video import photo_frames, write_mp4
from lightning_modules.au_detector import AUDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=64, help="model input size")
    parser.add_argument("--detect_every", type=int, nargs="+", default=[10, 1])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="facslab-live-"))
    video = write_mp4(work / "astronaut.mp4", photo_frames(skimage.data.astronaut(), args.frames, (640, 480)), fps=30)
    torch.manual_seed(0)
    analyzer = FaceAnalyzer(AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, image_size=args.size)))
    results = {"threads": torch.get_num_threads()}
    for every in args.detect_every:
        for draw in (True, False):
            stats = run_live(analyzer, str(video), out=str(work / "out.mp4") if draw else None,
                             detect_every=every, draw=draw, progress=False)
            key = f"detect every {every}, {'annotated video' if draw else 'no output'}"
            results[key] = round(stats.fps, 1)
            print(f"{key}: {stats.fps:.1f} fps over {stats.frames} frames ({stats.detections} detections)")
            print("  " + stats.breakdown())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
