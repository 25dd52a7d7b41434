"""Benchmark: the temporal AU model's time per window on the CPU (2 threads: the machine's 2
cores), for both architectures, eager PyTorch beside ONNX Runtime, one window (the live loop's
case) and a batch of 32 (training/evaluation), at 64 px and 8 frames.

Run: `.venv/bin/python bench/temporal.py [--windows 300]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facslab.predictor import TemporalAUPredictor
from facslab.threads import set_threads
from lightning_modules.temporal import TemporalAUDetector


def per_window_ms(predictor: TemporalAUPredictor, stacks: np.ndarray, repeats: int) -> float:
    for _ in range(5):
        predictor.predict_aligned(stacks)
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict_aligned(stacks)
    return 1000 * (time.perf_counter() - start) / (repeats * len(stacks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    set_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="facslab-temporal-"))
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, args.window, args.size, args.size, 3), dtype=np.uint8)
    batch = rng.integers(0, 256, (32, args.window, args.size, args.size, 3), dtype=np.uint8)
    results = {}
    for architecture in ("mobilenet3d", "frames_gru"):
        torch.manual_seed(0)
        model = TemporalAUDetector(architecture, window=args.window, image_size=args.size, unfrozen_blocks=1)
        parameters = sum(p.numel() for p in model.parameters())
        folder = TemporalAUPredictor(model).save(work / architecture)
        parity = json.loads((folder / "config.json").read_text())["onnx"]["max_abs_logit_difference"]
        for runtime in ("torch", "onnx"):
            predictor = TemporalAUPredictor.load(folder, runtime=runtime, threads=args.threads)
            single = per_window_ms(predictor, one, args.windows)
            batched = per_window_ms(predictor, batch, max(1, args.windows // 32))
            results[f"{architecture} {runtime}"] = {"one window ms": round(single, 2), "batch of 32, ms per window": round(batched, 2)}
            print(f"{architecture:12s} {runtime:5s} ({parameters:,} parameters, ONNX parity {parity:.1e}): "
                  f"{single:.2f} ms per window alone, {batched:.2f} ms per window in batches of 32 "
                  f"({args.window} frames of {args.size} px, {args.threads} threads)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
