"""Benchmark: seconds per training epoch of the AU detector with and without the frozen-feature
cache, for 0, 1 and 2 unfrozen blocks at 64 and 224 px, through the real path
(``facslab.training.fit`` on a generated CK+ copy, augmentation off in both columns).

The cache's one-off cost (computing the frozen stages once per fold and cut) is printed beside
it. Run: `.venv/bin/python bench/training.py [--size 64 224] [--epochs 3]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from datamodules import CKPlusDataModule
from facslab.synth.ckplus import write_ckplus
from facslab.training import TrainerConfig, build_model, fit


class EpochTimer(Callback):
    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self.start)


def epoch_seconds(root: Path, cache: Path, backbone: str, unfrozen: int, size: int, epochs: int,
                  feature_cache: bool) -> tuple[float, float]:
    """(median train-epoch seconds, seconds spent before the first epoch incl. the cache build)."""
    L.seed_everything(0)
    dm = CKPlusDataModule(str(root), fold=0, image_size=size, batch_size=32, cache_dir=str(cache), augment=False,
                          progress=False)
    dm.setup("fit")
    model = build_model(dict(backbone=backbone, unfrozen_blocks=unfrozen, hidden_size=256, lr=1e-3), dm)
    timer = EpochTimer()
    start = time.perf_counter()
    fit(model, dm, TrainerConfig(max_epochs=epochs, min_epochs=epochs, patience=epochs + 1, progress=False,
                                 feature_cache=feature_cache), callbacks=[timer])
    total = time.perf_counter() - start
    return float(np.median(timer.seconds)), total - sum(timer.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subjects", type=int, default=123, help="generated CK+ subjects (the real release has 123)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        root, cache = Path(folder) / "CK+", Path(folder) / "cache"
        write_ckplus(root, n_subjects=args.subjects, sequences_per_subject=2, frames=(2, 3), seed=0, progress=False)
        print(f"{'':>22} {'no cache s/epoch':>17} {'cache s/epoch':>14} {'speed-up':>9} {'cache build s':>14}")
        for size in args.size:
            for unfrozen in (0, 1, 2):
                old, _ = epoch_seconds(root, cache, args.backbone, unfrozen, size, args.epochs, feature_cache=False)
                new, build = epoch_seconds(root, cache, args.backbone, unfrozen, size, args.epochs,
                                           feature_cache=True)
                name = f"{args.backbone} {size}px {unfrozen} unfrozen"
                results[name] = {"no_cache": old, "cache": new, "speedup": old / new, "cache_build": build}
                print(f"{name:>22} {old:17.3f} {new:14.3f} {old / new:8.1f}x {build:14.2f}", flush=True)
    print(json.dumps({"threads": torch.get_num_threads(), **results}))


if __name__ == "__main__":
    main()
