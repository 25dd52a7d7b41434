"""Benchmark: a whole video analysed offline (`facslab analyze`: decoded ahead in a thread, the
models run on many frames' faces at once beside the tracking) beside the live loop writing the same
CSV (`facslab live --csv`, one frame at a time), in one run.

A 640x480 video of skimage's astronaut (one face), the AU model of the demo's size (ResNet-18 at
64 px; weights do not change the cost) and the real FER-2013 port, both on ONNX Runtime, the
libraries given ``--threads`` threads each. Then what the two trackers' boxes give the eyes' aspect
ratios, beside a detection on every frame, on a still face and on two faces drifting slowly and fast.
Run: `.venv/bin/python bench/analyze.py [--frames 600]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import skimage.data
import torch

from facslab.analysis import FaceAnalyzer
from facslab.live import FAST, run_live
from facslab.video_io import open_source
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
    correlation, nearby = replace(FAST, tracker="correlation"), replace(FAST, tracker="nearby")

    def live(settings):
        return lambda csv_path: run_live(analyzer, str(video), csv_path=csv_path, draw=False, progress=False,
                                         settings=settings)

    def offline(settings):
        return lambda csv_path: analyze_video(analyzer, open_source(str(video)), csv_path, settings, args.batch,
                                              progress=False)

    runs = {  # name -> (CSV, how it is written); the first is the old path
        "live loop, correlation tracker (one frame at a time)": ("live.csv", live(correlation)),
        "live loop, nearby tracker (the default with HOG)": ("live_nearby.csv", live(nearby)),
        f"analyze, correlation tracker (batches of {args.batch})": ("analyze_correlation.csv", offline(correlation)),
        f"analyze, nearby tracker (batches of {args.batch}; the default with HOG)": ("analyze.csv", offline(nearby)),
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
    quality = tracker_quality(analyzer, work)
    for video, by_tracker in quality.items():
        print(f"{video}: " + "; ".join(f"{tracker}: gap {q['gap']:.4f}, spread {q['spread']:.4f}, {q['detections']} "
                                       f"detection(s)" for tracker, q in by_tracker.items()))
    print(json.dumps({"fps": {k: round(v, 1) for k, v in fps.items()}, "same_frames": same_frames,
                      "trackers": quality}))


def tracker_quality(analyzer: FaceAnalyzer, work: Path, frames: int = 60) -> dict:
    """What each tracker's boxes give the eyes' aspect ratios (both eyes, the faces of a frame
    averaged), one detection at the start and a detection again only where the tracker lost a face:
    video -> tracker -> the mean gap from a detection on every frame, the spread (standard deviation
    over the frames: on the still face, all jitter), and the detections run."""
    def drifting(period):
        def one(seed):
            return [f for _ in range(frames // period)
                    for f in photo_frames(skimage.data.astronaut(), period, (320, 240), seed=seed)]
        return [np.hstack(pair) for pair in zip(one(0), one(3))]

    videos = {"a still face": [next(photo_frames(skimage.data.astronaut(), 1, (640, 480)))] * frames,
              "two faces drifting over 30 frames": drifting(30), "two faces drifting over 6 frames": drifting(6)}
    quality = {}
    for video_name, video_frames in videos.items():
        video = write_mp4(work / "drift.mp4", video_frames, fps=30)
        eyes, detections = {}, {}
        for name, tracker, every in (("nearby", "nearby", 10 ** 6), ("correlation", "correlation", 10 ** 6),
                                     ("detected", "correlation", 1)):
            table = work / f"drift_{name}.csv"
            stats = run_live(analyzer, str(video), csv_path=str(table), draw=False, progress=False,
                             settings=replace(FAST, tracker=tracker, detect_every=every, idle_every=1))
            sums = {}
            for row in csv.DictReader(open(table, encoding="utf-8")):
                if row["success"] == "1":
                    sums.setdefault(int(row["frame"]), []).append(float(row["ear_left"]) + float(row["ear_right"]))
            eyes[name], detections[name] = {frame: np.mean(v) for frame, v in sums.items()}, stats.detections
        quality[video_name] = {name: {
            "gap": round(float(np.mean([abs(eyes[name][f] - eyes["detected"][f]) for f in eyes["detected"]
                                        if f > 1 and f in eyes[name]])), 4),
            "spread": round(float(np.std(list(eyes[name].values()))), 4), "detections": detections[name]}
            for name in ("nearby", "correlation")}
    return quality

if __name__ == "__main__":
    main()
