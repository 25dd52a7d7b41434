"""FER-2013 (Kaggle CSV or its ICML variant), optionally with FER+ majority labels.

Official splits: Training trains, PublicTest validates (model selection, early stopping, the
sweep's objective) and PrivateTest is the test split, looked at once. ``fold=None`` trains on
Training alone with no validation split (the final model, for a number of epochs chosen on
PublicTest). Training is augmented as in Arriaga et al. (``EmotionDataModule``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from datamodules.emotion import EmotionDataModule
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import CachedCrops, default_cache_dir
from facslab.formats import fer2013 as fer

PIXEL_CACHE_VERSION = 1


class FER2013DataModule(EmotionDataModule):
    """FER-2013 emotion classes.

    Args:
        labels: ``fer2013`` (the 7 original classes) or ``ferplus`` (FER+ majority votes, 8
            classes; rows without a majority are left out).
        drop_classes: class names to leave out (e.g. ``[disgust]``, FER-2013's rarest class);
            the remaining classes are renumbered in order.
        fold: 0 validates on PublicTest; None has no validation split.
        channels: 1 (grey, mini-Xception) or 3 (grey repeated, ImageNet backbones).
        image_size: the 48-pixel images are resized to this side (mini-Xception's is 64).
        **kwargs: see ``FaceDataModule``.
    """

    def __init__(self, root: str, labels: str = "fer2013", drop_classes: list[str] = (), fold: int | None = 0,
                 channels: int = 1, image_size: int = 64, **kwargs):
        if labels not in ("fer2013", "ferplus"):
            raise ConfigError(f"labels must be fer2013 or ferplus, not {labels!r}")
        self.all_classes = fer.CLASSES if labels == "fer2013" else fer.FERPLUS_CLASSES
        super().__init__(root, drop_classes=drop_classes, fold=fold, image_size=image_size, **kwargs)
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, not {channels}")
        self.labels, self.channels_wanted = labels, channels
        self.save_hyperparameters()

    def emotion_rows(self, report: SkipReport) -> pd.DataFrame:
        table = fer.read_fer2013(self.root, report)
        self.csv_path = fer.find_csv(self.root)
        if self.labels == "ferplus":
            votes = fer.read_ferplus(self.csv_path.parent, report)
            table = fer.pair_ferplus(table, votes, self.csv_path)  # by row position, counts and usage checked
            table = table[table["ferplus"] >= 0]
            names = [fer.FERPLUS_CLASSES[k] for k in table["ferplus"]]
        else:
            names = [fer.CLASSES[k] for k in table["emotion"]]
        return table.assign(name=names, subject=table["row"], image=[f"{self.csv_path.name}:{r + 2}" for r in table["row"]])

    def build_crops(self, samples: pd.DataFrame) -> CachedCrops:
        """The images resized to ``image_size`` with ``channels`` channels, in a memory-mapped
        cache keyed by the file and the rows, built once."""
        stat = self.csv_path.stat()
        key = hashlib.sha256(repr([PIXEL_CACHE_VERSION, str(self.csv_path.resolve()), stat.st_size, stat.st_mtime_ns,
                                   self.image_size, self.channels_wanted, samples["row"].tolist()]).encode())
        entry = (Path(self.cache_dir) if self.cache_dir else default_cache_dir()).parent / "pixels" / key.hexdigest()[:24]
        built = not (entry / "crops.npy").exists()
        if built:
            tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
            tmp.mkdir(parents=True, exist_ok=True)
            out = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8,
                                            shape=(len(samples), self.image_size, self.image_size, self.channels_wanted))
            for k, pixels in enumerate(samples["pixels"]):
                image = cv2.resize(pixels, (self.image_size, self.image_size), interpolation=cv2.INTER_LINEAR)
                out[k] = image[..., None] if self.channels_wanted == 1 else np.repeat(image[..., None], 3, axis=2)
            out.flush()
            del out
            shutil.rmtree(entry, ignore_errors=True)
            tmp.rename(entry)
        crops = np.load(entry / "crops.npy", mmap_mode="r")
        return CachedCrops(crops=crops, index=np.arange(len(samples)), report=SkipReport(), path=entry, built=built)
