"""Frozen-prefix features: with ``unfrozen_blocks = k`` the frozen stages of a backbone are a
fixed function of the image, the starting weights and the input size, so a sweep computes their
outputs once and trains the rest on them, across epochs, folds and trials.

Stored next to the crop cache, keyed by the crop cache entry, the rows computed, the frozen
stages' weights (a digest of every parameter and buffer), the backbone, the cut point, the input
size, the normalisation and a digest of the code that computes them. Only unaugmented crops can
be cached, so the cache needs ``augment: false`` (``facslab.training.fit`` refuses otherwise).
The crops are normalised by the datamodule's own evaluation transform, so cached features are
what the frozen stages compute inside a plain fit, up to rounding: torch picks a convolution kernel
per batch shape and thread count, and the cache's batches are not the loader's (a few 1e-6 apart
on DenseNet-121's features at one thread; equal at two).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules.transforms import eval_transform


def code_digest() -> str:
    """A digest of the code that computes features (this module, the backbones, where the cut
    between frozen and trained stages is made, the freezing callback, the transforms and where
    face parts' landmarks come from) and of
    torch's and torchvision's versions (the backbones are torchvision's): a change to any of them
    is a new cache entry, with no version number to remember to bump."""
    import torchvision

    import datamodules.transforms as transforms
    import facslab.faces.landmarks as landmarks
    import lightning_modules.backbones as backbones
    import lightning_modules.base as base
    import lightning_modules.freezing as freezing
    import lightning_modules.landmark_patches as landmark_patches

    digest = hashlib.sha256(f"{torch.__version__} {torchvision.__version__}".encode())
    for module in (backbones, base, freezing, transforms, landmark_patches, landmarks):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def prefix_digest(model) -> str:
    digest = hashlib.sha256()
    for stage in model.frozen_stages():
        for name, tensor in sorted(stage.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def feature_key(model, dm, positions: np.ndarray) -> str:
    hp = model.hparams
    # a model that reads face parts: the prefix's output depends on where the patches were cut
    points = (hashlib.sha256(np.ascontiguousarray(dm.landmarks()[positions]).tobytes()).hexdigest()
              if model.takes_landmarks else None)
    parts = [code_digest(), dm.cached.path.name, hashlib.sha256(positions.tobytes()).hexdigest(), points,
             prefix_digest(model), hp.backbone, len(model.frozen_stages()), dm.image_size,
             [round(v, 8) for v in dm.mean], [round(v, 8) for v in dm.std]]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def feature_shape(model, size: int, channels: int = 3) -> tuple[int, ...]:
    """Shape of one sample's frozen-prefix output at this input size."""
    shapes = {}

    class _Shape:  # takes the one write compute_features makes
        def __setitem__(self, rows, value):
            shapes["one"] = value.shape[1:]

    compute_features(model, np.zeros((1, size, size, channels), np.uint8), np.array([0]), (0.5,) * channels,
                     (0.25,) * channels, _Shape(), progress=False,
                     landmarks=np.full((1, 68, 2), size / 2, np.float32) if model.takes_landmarks else None)
    return tuple(shapes["one"])


@torch.inference_mode()
def compute_features(model, crops: np.ndarray, positions: np.ndarray, mean, std, out: np.ndarray,
                     batch_size: int = 128, progress: bool = True, landmarks: np.ndarray | None = None) -> None:
    """``out[p] = frozen_prefix(normalised crops[p])`` for every position, frozen stages in eval
    mode (with ``landmarks[p]`` beside each crop for a model that reads face parts)."""
    stages = model.frozen_stages()
    modes = [stage.training for stage in stages]
    for stage in stages:
        stage.eval()
    device = next(model.parameters()).device
    transform = eval_transform(mean, std)  # the loader's own: the same floats as in a plain fit
    try:
        for start in tqdm(range(0, len(positions), batch_size), desc="frozen features", disable=not progress):
            rows = positions[start:start + batch_size]
            x = torch.stack([transform(image=np.asarray(crops[r]))["image"] for r in rows]).to(device)
            if landmarks is not None:
                x = (x, torch.from_numpy(np.asarray(landmarks[rows], np.float32)).to(device))
            out[rows] = model.frozen_prefix(x).float().cpu().numpy()
    finally:
        for stage, mode in zip(stages, modes):
            stage.train(mode)


def cached_features(model, dm, roles=("train", "val"), progress: bool = True) -> np.ndarray:
    """Frozen-prefix outputs of every usable sample in ``roles``, indexed like the crop cache
    (other rows are zeros), computed once and memory-mapped afterwards."""
    positions = np.sort(np.concatenate([dm.positions(role) for role in roles]))
    entry = Path(dm.cached.path).parent / "features" / feature_key(model, dm, positions)
    if not (entry / "done").exists():
        entry.parent.mkdir(parents=True, exist_ok=True)
        with open(entry.with_name(entry.name + ".lock"), "w") as lock:  # parallel workers build it once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (entry / "done").exists():
                tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                shape = feature_shape(model, dm.image_size, dm.channels)
                out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32,
                                                shape=(len(dm.cached.crops), *shape))
                compute_features(model, dm.cached.crops, positions, dm.mean, dm.std, out, progress=progress,
                                 landmarks=dm.landmarks() if model.takes_landmarks else None)
                out.flush()
                del out
                (tmp / "done").touch()
                shutil.rmtree(entry, ignore_errors=True)
                tmp.rename(entry)
    return np.load(entry / "features.npy", mmap_mode="r")
