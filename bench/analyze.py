"""Benchmark: a whole video analysed offline (`facslab analyze`: decoded ahead in a thread, the
models run on many frames' faces at once beside the tracking) beside the live loop writing the same
CSV (`facslab live --csv`, one frame at a time), in one run.

A 640x480 video of skimage's astronaut (one face), the AU model of the demo's size (ResNet-18 at
64 px; weights do not change the cost) and the real FER-2013 port, both on ONNX Runtime, the
libraries given ``--threads`` threads each. Run: `.venv/bin/python bench/analyze.py [--frames 600]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import skimage.data
import torch

from facslab.analysis import FaceAnalyzer
from facslab.live import FAST, open_source, run_live
from facslab.offline import BATCH_FRAMES, analyze_video
from facslab.predictor import AUPredictor, EmotionPredictor
from facslab.synth.video import photo_frames, write_mp4
from facslab.threads import set_threads
from lightning_modules.au_detector import AUDetector
from lightning_modules.emotion_classifier import EmotionClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--batch", type=int, default=BATCH_FRAMES, help="frames per batch (analyze)")
    parser.add_argument("--threads", type=int, default=1, help="threads per library (torch, OpenCV, ONNX Runtime)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="facslab-analyze-"))
    video = write_mp4(work / "astronaut.mp4", photo_frames(skimage.data.astronaut(), args.frames, (640, 480)), fps=30)
    torch.manual_seed(0)
    au = AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, image_size=64)).save(work / "au")
    emotion = EmotionPredictor(EmotionClassifier(weights="fer"), provenance={"trained_on": "real"}).save(work / "emotion")
    set_threads(args.threads)
    analyzer = FaceAnalyzer([AUPredictor.load(au, runtime="onnx", threads=args.threads),
                             EmotionPredictor.load(emotion, runtime="onnx", threads=args.threads)])
    run_live(analyzer, str(video), max_frames=20, draw=False, progress=False)  # warm-up
    correlation, nearby = FAST, replace(FAST, tracker="nearby")
    runs = {  # name -> (CSV, statistics)
        "live loop, correlation tracker (one frame at a time)":
            ("live.csv", lambda csv_path: run_live(analyzer, str(video), csv_path=csv_path, draw=False, progress=False,
                                                   settings=correlation)),
        "live loop, nearby tracker": ("live_nearby.csv", lambda csv_path: run_live(
            analyzer, str(video), csv_path=csv_path, draw=False, progress=False, settings=nearby)),
        f"analyze, correlation tracker (batches of {args.batch}; the command's default)": ("analyze_correlation.csv", lambda csv_path: analyze_video(
            analyzer, open_source(str(video)), csv_path, correlation, args.batch, progress=False)),
        f"analyze, nearby tracker (batches of {args.batch})": ("analyze.csv", lambda csv_path:
            analyze_video(analyzer, open_source(str(video)), csv_path, nearby, args.batch, progress=False)),
    }
    print(f"{args.frames} frames of 640x480, one face; AUs (ResNet-18, 64 px) and emotion (FER-2013 port), "
          f"ONNX Runtime, {args.threads} thread(s) per library")
    fps = {}
    for name, (table, run) in runs.items():
        stats = run(str(work / table))
        fps[name] = stats.fps
        print(f"{name}: {stats.fps:.1f} fps ({stats.frames} frames, {stats.faces} faces, {stats.detections} detections)")
        print("  " + stats.breakdown())
    tables = {name: list(csv.reader(open(work / table, encoding="utf-8"))) for name, (table, _) in runs.items()}
    first, *others = tables.values()
    same_frames = all([r[:2] for r in first] == [r[:2] for r in t] for t in others)
    old = list(fps.values())[0]
    for name, value in list(fps.items())[1:]:
        print(f"{name} / live loop (correlation): {value / old:.2f}x")
    print(f"every CSV has the same frames and face ids: {same_frames}")
    print(json.dumps({"fps": {k: round(v, 1) for k, v in fps.items()}, "same_frames": same_frames}))

if __name__ == "__main__":
    main()
