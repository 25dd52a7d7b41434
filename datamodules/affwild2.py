"""Aff-Wild2 valence/arousal: the release's cropped, aligned frames (resized to ``image_size``, no
detection), two floats per frame. The split is by video: the official validation set is the test
split (the test set's labels are not released), ``val_fraction`` of the training videos validates
(``fold: None``: the final model trains on them too), and ``frame_step`` keeps every n-th frame
(neighbouring frames are nearly the same picture)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datamodules.base import FaceDataModule
from datamodules.emotion import resized_crops
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import CachedCrops
from facslab.formats.affwild2 import read_affwild2


class AffWild2DataModule(FaceDataModule):
    """Args:
        root: the Aff-Wild2 copy (annotations/VA_Estimation_Challenge and cropped_aligned).
        fold: 0 validates on ``val_fraction`` of the training videos; None trains on them too.
        val_fraction: the training videos that validate (whole videos: a person is in one split).
        frame_step: keep every ``frame_step``-th annotated frame of a video.
        **kwargs: see ``FaceDataModule``.
    """

    n_folds = 1
    target = "valence_arousal"  # what the valence_arousal task trains on

    def __init__(self, root: str, fold: int | None = 0, val_fraction: float = 0.2, frame_step: int = 1,
                 image_size: int = 112, **kwargs):
        super().__init__(root, image_size=image_size, **kwargs)
        if fold not in (0, None):
            raise ConfigError(f"fold must be 0 or None (Aff-Wild2 has one validation split), not {fold}")
        if not 0 < val_fraction < 1 or frame_step < 1:
            raise ConfigError(f"val_fraction must be in (0, 1) and frame_step at least 1, not {val_fraction}, {frame_step}")
        self.fold, self.val_fraction, self.frame_step = fold, val_fraction, frame_step
        self.not_annotated: dict[str, int] = {}
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        table = read_affwild2(self.root, report)
        self.not_annotated = table.attrs["not_annotated"]
        table = table[(table["frame"] - 1) % self.frame_step == 0].reset_index(drop=True)
        # a video's two people (_left, _right) are two subjects; a subject stays in one split
        return table.assign(labels=list(table[["valence", "arousal"]].to_numpy(np.float32)), subject=table["video"])

    def build_crops(self, samples: pd.DataFrame) -> CachedCrops:
        return resized_crops(list(samples["image"]), self.image_size, self.cache_dir, self.progress, "reading Aff-Wild2")

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        roles = np.where(samples["set"] == "validation", "test", "train").astype(object)
        # whole clips validate: the two people of one clip (_left, _right) stay in one split
        clips = samples["video"].str.replace(r"_(left|right)$", "", regex=True)
        train_clips = np.unique(clips[samples["set"] == "train"])
        held = np.random.default_rng(self.seed).permutation(train_clips)[:max(1, int(round(self.val_fraction * len(train_clips))))]
        validating = (clips.isin(held) & (samples["set"] == "train")).to_numpy()
        roles[validating] = "val"
        self.samples_partition = pd.Series(roles.copy(), index=samples.index)  # what the split id names
        if self.fold is None:
            roles[validating] = "train"
        return pd.Series(roles, index=samples.index)
