"""Benchmark: training throughput (images/s) of the AU detector by number of unfrozen blocks.

Times optimizer steps on random batches (model cost only; the cached datamodule adds little, see
bench/preprocessing.py). Run: `.venv/bin/python bench/training.py --size 224 --backbone resnet18`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lightning_modules.au_detector import AUDetector


def images_per_second(backbone: str, unfrozen: int, size: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = AUDetector(backbone, unfrozen_blocks=unfrozen, image_size=size)
    model.train()
    optimizer = model.configure_optimizers()
    images, labels = torch.randn(batch, 3, size, size), (torch.rand(batch, 18) > 0.8).float()

    def step():
        optimizer.zero_grad()
        model.loss(model(images), labels).backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, nargs="+", default=[224, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    results = {}
    n_blocks = {"resnet18": 5, "resnet34": 5, "resnet50": 5}.get(args.backbone, 5)
    for size in args.size:
        for unfrozen, label in ((0, "0 unfrozen"), (1, "1 unfrozen"), (2, "2 unfrozen"), (n_blocks, "all trainable")):
            rate = images_per_second(args.backbone, unfrozen, size, args.batch, args.steps)
            results[f"{args.backbone} {size}px {label}"] = rate
            print(f"{args.backbone} {size}px {label:>13}: {rate:7.1f} images/s", flush=True)
    print(json.dumps({"threads": torch.get_num_threads(), **results}))


if __name__ == "__main__":
    main()
