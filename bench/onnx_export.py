"""Benchmark: writing a model folder (its ONNX export checked against PyTorch) for models of one
structure in a row, as a registry registers the next version or a chain refits: the old path (every
model exported by torch's exporter) beside the new (the graph kept from the first model of the
structure takes the next one's weights), in one run, alternating, and the largest difference between
the two paths' ONNX Runtime outputs on the same faces (0: the same to the last bit).

Structures: ResNet-18 AU models at 64 px (the demo's), the FER-2013 mini-Xception, ViT-B/16 at 64 px.
Run: `.venv/bin/python bench/onnx_export.py [--models 4]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import facslab.onnx_export as onnx_export
from facslab.predictor import AUPredictor, EmotionPredictor
from facslab.threads import set_threads
from lightning_modules.au_detector import AUDetector
from lightning_modules.emotion_classifier import EmotionClassifier

STRUCTURES = {
    "ResNet-18 AU, 64 px": (lambda: AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, image_size=64)), 64),
    "mini-Xception emotion, 48 px": (lambda: EmotionPredictor(EmotionClassifier(image_size=48)), 48),
    "ViT-B/16 AU, 64 px": (lambda: AUPredictor(AUDetector("vit_b_16", unfrozen_blocks=0, image_size=64)), 64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=4, help="models of each structure saved in a row, per path")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="facslab-export-"))
    crops = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    for name, (make, size) in STRUCTURES.items():
        seconds = {"old": [], "new": []}
        largest = 0.0
        onnx_export._kept_graph.clear()
        for k in range(args.models):
            torch.manual_seed(k)
            predictor = make()
            for path in (("old", "new") if k % 2 == 0 else ("new", "old")):
                if path == "old":
                    onnx_export._kept_graph.clear()  # what the old path had: nothing kept
                start = time.perf_counter()
                predictor.save(work / f"{path}{k}")
                seconds[path].append(time.perf_counter() - start)
            outputs = [type(predictor).load(work / f"{path}{k}", runtime="onnx", threads=1)
                       .predict_aligned(crops[:, :size, :size]) for path in ("old", "new")]
            largest = max(largest, float(np.abs(outputs[0] - outputs[1]).max()))
        # the first model of the structure: the new path finds the graph the old one's export kept
        old, new = statistics.median(seconds["old"][1:]), statistics.median(seconds["new"][1:])
        print(f"{name}: saving the next model of the structure {old:.2f} s (old) against {new:.2f} s (new), "
              f"{old / new:.1f}x (median of {args.models - 1}); largest difference between the two paths' "
              f"ONNX Runtime outputs {largest:.1e}")


if __name__ == "__main__":
    main()
