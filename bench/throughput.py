"""Benchmark: training throughput against the machine's limits, in one run.

For the pretraining model (ResNet-18 AU detector, every block training, batch 64) at 64 and 128 px:

* the machine's limit: a 2048x2048 float32 matmul's GFLOP/s at these threads;
* the model's cost: FLOPs of one image's forward and backward pass (torch's FLOP counter);
* a plain PyTorch loop on random tensors (forward, BCE loss, backward, fused Adam), as it is and
  with each CPU lever: channels_last memory format, torch.compile, batch 32 and 128;
* training through ``facslab.training.fit`` on a generated CelebA (the pretraining datamodule with
  its augmentation, the loader in the main process): training images per second of training-epoch
  time (validation not counted), in the default memory order and channels-last
  (``TrainerConfig.channels_last``, off by default: see its comment), beside the plain loop.

Images/s x FLOPs/image gives the GFLOP/s each reaches: the fraction of the matmul's is how close to
the machine a path runs. Then ``--pairs`` times the plain loop and ``fit`` back to back: the
median of their ratios is the comparison that drift between minutes does not move. Run:
`.venv/bin/python bench/throughput.py [--sizes 64 128] [--threads 2] [--compile] [--pairs 3]`
(torch.compile takes a minute or more to compile on a CPU; off unless asked).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from datamodules import CelebANoisyDataModule
from facslab.demo_data import generate_celeba
from facslab.training import TrainerConfig, build_model, fit
from lightning_modules.au_detector import AUDetector

MODEL = dict(backbone="resnet18", unfrozen_blocks=-1, hidden_size=256, dropout=0.2, lr=1e-3)


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / float(np.median(times)) / 1e9


def model(size: int) -> AUDetector:
    torch.manual_seed(0)
    return AUDetector(**MODEL, image_size=size, mean=[0.5] * 3, std=[0.25] * 3)


def flops_per_image(size: int, batch: int = 8) -> float:
    """Forward and backward FLOPs of one image (torch's counter: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = model(size).train()
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch, 18)).float()
    with FlopCounterMode(display=False) as counter:
        net.loss_from_logits(net(x), y).backward()
    return counter.get_total_flops() / batch


def plain_loop(size: int, batch: int, steps: int, channels_last: bool = False, compiled: bool = False) -> float:
    """Images/s of forward, loss, backward and a fused Adam step on random tensors."""
    net = model(size).train()
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch, 18)).float()
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    step_model = torch.compile(net) if compiled else net

    def step():
        optimizer.zero_grad(set_to_none=True)
        net.loss_from_logits(step_model(x), y).backward()
        optimizer.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


class EpochTimer(Callback):
    """Training seconds of each epoch: Lightning ends a training epoch (``on_train_epoch_end``)
    after its validation, whose time is taken out."""

    def __init__(self):
        self.seconds, self.images = [], 0

    def on_train_epoch_start(self, trainer, module):
        self.start, self.validating = time.perf_counter(), 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.images += len(batch[-1])

    def on_validation_start(self, trainer, module):
        self.validation_start = time.perf_counter()

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.validating += time.perf_counter() - self.validation_start

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self.start - self.validating)


def through_fit(root: Path, cache: Path, size: int, batch: int, epochs: int, channels_last: bool) -> float:
    """Training images per second of training-epoch time, through ``fit`` (the first epoch left out)."""
    L.seed_everything(0)
    dm = CelebANoisyDataModule(str(root), image_size=size, batch_size=batch, cache_dir=str(cache), progress=False)
    dm.setup("fit")
    net = build_model(MODEL, dm)
    timer = EpochTimer()
    fit(net, dm, TrainerConfig(max_epochs=epochs, min_epochs=epochs, patience=epochs + 1, progress=False,
                               channels_last=channels_last), callbacks=[timer])
    per_epoch = timer.images / len(timer.seconds)
    return per_epoch * (len(timer.seconds) - 1) / sum(timer.seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=1500, help="generated CelebA images")
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first is left out")
    parser.add_argument("--steps", type=int, default=20, help="steps of each plain loop")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--pairs", type=int, default=3, choices=range(0, 100), metavar="N",
                        help="plain loop and fit run back to back, this many times")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is left out")
    torch.set_num_threads(args.threads)
    limit = matmul_gflops()
    print(f"threads {args.threads}; 2048x2048 float32 matmul: {limit:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as folder:
        root, cache = Path(folder) / "CelebA", Path(folder) / "cache"
        generate_celeba(root, args.images, seed=0, progress=False)
        for size in args.sizes:
            flops = flops_per_image(size)
            rows = [("plain loop, batch 64", plain_loop(size, 64, args.steps)),
                    ("plain, channels_last", plain_loop(size, 64, args.steps, channels_last=True)),
                    ("plain, batch 32", plain_loop(size, 32, 2 * args.steps)),
                    ("plain, batch 128", plain_loop(size, 128, max(3, args.steps // 2)))]
            if args.compile:
                rows.append(("plain, torch.compile", plain_loop(size, 64, args.steps, compiled=True)))
            rows += [("fit, default order", through_fit(root, cache, size, 64, args.epochs, False)),
                     ("fit, channels_last", through_fit(root, cache, size, 64, args.epochs, True))]
            print(f"\n{size} px: {flops / 1e9:.2f} GFLOP per image (forward + backward)")
            base = rows[0][1]
            for name, rate in rows:
                print(f"  {name:<30} {rate:7.1f} images/s  {rate * flops / 1e9:6.1f} GFLOP/s "
                      f"({rate * flops / 1e9 / limit:5.1%} of the matmul)  {rate / base:5.2f}x the plain loop")
            if args.pairs:
                # the shared machine's speed drifts by 20 % within minutes: fit against the plain loop
                # is read from pairs run back to back, each pair's own ratio, the order alternating
                ratios, paths = [], {"plain": lambda: plain_loop(size, 64, args.steps),
                                     "fit": lambda: through_fit(root, cache, size, 64, args.epochs, False)}
                for k in range(args.pairs):
                    rates = {name: paths[name]() for name in (("plain", "fit"), ("fit", "plain"))[k % 2]}
                    plain, fitted = rates["plain"], rates["fit"]
                    ratios.append(fitted / plain)
                    print(f"  pair {k + 1}: plain loop {plain:7.1f}, fit {fitted:7.1f} images/s: {fitted / plain:5.2f}x")
                print(f"  fit against the plain loop, median of {args.pairs} pairs: {np.median(ratios):5.2f}x")


if __name__ == "__main__":
    main()
