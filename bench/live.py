"""Benchmark: frames per second of `facslab live` on a 640x480 video with one face, the path before
the real-time levers (RGB frames, HOG upsampled once, eager PyTorch) beside today's (one grey copy
per frame, HOG without upsampling, ONNX Runtime, one thread per library), and where the time goes.

Uses a video built from skimage's astronaut photograph and a model of the demo's size (ResNet-18,
64 px; weights do not change the cost), saved and loaded as the apps load a registered model, so
the ONNX export and its parity check are part of the run. Each path runs on a warmed-up model.
Run: `.venv/bin/python bench/live.py [--frames 300]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import skimage.data
import torch

from facslab.analysis import FaceAnalyzer
from facslab.live import FAST, LEGACY, run_live
from facslab.predictor import AUPredictor
from facslab.threads import set_threads
from facslab.synth.video import photo_frames, write_mp4
from lightning_modules.au_detector import AUDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=64, help="model input size")
    parser.add_argument("--detect_every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="threads for the new path (torch, OpenCV, ONNX Runtime)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="facslab-live-"))
    video = write_mp4(work / "astronaut.mp4", photo_frames(skimage.data.astronaut(), args.frames, (640, 480)), fps=30)
    coffee = cv2.resize(skimage.data.coffee(), (640, 480))
    no_face = write_mp4(work / "coffee.mp4", [coffee] * min(args.frames, 100), fps=30)
    torch.manual_seed(0)
    folder = AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, image_size=args.size)).save(work / "model")
    parity = json.loads((folder / "config.json").read_text())["onnx"]["max_abs_logit_difference"]
    print(f"ONNX export: max |logit difference| from PyTorch {parity:.2e} (tolerance 1e-4)")
    default_threads = torch.get_num_threads()
    paths = {
        # before: eager PyTorch with the libraries' default threads, RGB frames, HOG upsample 1
        "old": (lambda: AUPredictor.load(folder, runtime="torch"), default_threads,
                replace(LEGACY, detect_every=args.detect_every)),
        "new": (lambda: AUPredictor.load(folder, runtime="onnx", threads=args.threads), args.threads,
                replace(FAST, detect_every=args.detect_every)),
    }
    results = {}
    for name, (load, threads, settings) in paths.items():
        set_threads(threads)
        analyzer = FaceAnalyzer([load()])
        run_live(analyzer, str(video), max_frames=20, draw=False, progress=False, settings=settings)  # warm-up
        for draw in (True, False):
            stats = run_live(analyzer, str(video), out=str(work / f"{name}.mp4") if draw else None, draw=draw,
                             progress=False, settings=settings)
            key = f"{name}, {'annotated video' if draw else 'no output'}"
            results[key] = round(stats.fps, 1)
            print(f"{key}: {stats.fps:.1f} fps over {stats.frames} frames ({stats.faces} faces, "
                  f"{stats.detections} detections; {analyzer.predictors[0].runtime}, {threads} thread(s), "
                  f"upsample {settings.upsample}, {'grey' if settings.grey else 'RGB'})")
            print("  " + stats.breakdown())
        empty = run_live(analyzer, str(no_face), draw=False, progress=False, settings=settings)
        results[f"{name}, no face in view"] = round(empty.fps, 1)
        print(f"{name}, no face in view: {empty.fps:.1f} fps ({empty.detections} detections in {empty.frames} frames)")
    for output in ("annotated video", "no output", "no face in view"):
        ratio = results[f"new, {output}"] / results[f"old, {output}"]
        print(f"{output}: old {results[f'old, {output}']} fps -> new {results[f'new, {output}']} fps ({ratio:.2f}x)")
    print(json.dumps({"onnx_max_abs_logit_difference": parity, **results}))


if __name__ == "__main__":
    main()
