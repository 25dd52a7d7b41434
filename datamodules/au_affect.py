"""AUs from one dataset and valence/arousal from another, in one datamodule for the multi-task
model: CK+ peak frames (AU presences; valence/arousal unknown) and AffectNet faces
(valence/arousal; AUs unknown). Labels are 20 floats, NaN where a dataset does not annotate.
CK+'s subjects split as in ``CKPlusDataModule`` (test subjects held out, ``fold`` validates);
AffectNet's released validation set is test, ``val_fraction`` of its training validates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datamodules.base import AUFaceDataModule
from datamodules.ckplus import CKPlusDataModule
from datamodules.emotion_datasets import AffectNetDataModule
from facslab.au import NUM_AUS
from facslab.badinput import SkipReport


class AUAffectDataModule(AUFaceDataModule):
    """Args:
        root: the CK+ copy; affectnet_root: the AffectNet copy.
        fold, n_folds, test_fraction: CK+'s subject splits (fold None: no validation split).
        val_fraction: AffectNet's validation share of its training set.
        **kwargs: see ``AUFaceDataModule``.
    """

    n_folds = 1

    def __init__(self, root: str, affectnet_root: str, fold: int | None = 0, n_folds: int = 3,
                 test_fraction: float = 0.1, val_fraction: float = 0.1, **kwargs):
        super().__init__(root, **kwargs)
        self.affectnet_root, self.fold, self.ck_folds = affectnet_root, fold, n_folds
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        common = dict(image_size=self.image_size, cache_dir=self.cache_dir, detector=self.detector,
                      preprocess_workers=self.preprocess_workers, progress=self.progress, seed=self.seed)
        self.parts = (CKPlusDataModule(root, fold=fold, n_folds=n_folds, test_fraction=test_fraction, **common),
                      AffectNetDataModule(affectnet_root, target="valence_arousal", fold=fold, val_fraction=val_fraction,
                                          **common))
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        ck, affect = self.parts
        au_rows = ck.read_samples(report).assign(dataset="CK+")
        au_rows["labels"] = [np.concatenate([label, [np.nan, np.nan]]).astype(np.float32) for label in au_rows["labels"]]
        va_rows = affect.read_samples(report).assign(dataset="AffectNet")
        va_rows["labels"] = [np.concatenate([np.full(NUM_AUS, np.nan), label]).astype(np.float32)
                             for label in va_rows["labels"]]
        va_rows["subject"] = "affectnet:" + va_rows["subject"].astype(str)
        columns = ["source", "labels", "subject", "dataset"]
        return pd.concat([au_rows[columns + []], va_rows[columns + ["role"]]], ignore_index=True)

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        ck, affect = self.parts
        roles = pd.Series("unused", index=samples.index, dtype=object)
        is_ck = samples["dataset"] == "CK+"
        ck_samples = samples[is_ck].copy()
        roles[is_ck] = ck.assign_roles(ck_samples).to_numpy()
        samples.loc[is_ck, "fold"] = ck_samples["fold"]
        va = samples[~is_ck].copy()
        va_roles = va["role"].to_numpy(dtype=object).copy()
        train = np.flatnonzero((va_roles == "train") & va["ok"].to_numpy())
        held = np.random.default_rng(self.seed).permutation(train)[:max(1, int(round(self.val_fraction * len(train))))]
        va_roles[held] = "val" if self.fold is not None else "train"
        roles[~is_ck] = va_roles
        return roles

    def split_table(self) -> pd.DataFrame:
        table = super().split_table()
        return table.assign(dataset=self.samples["dataset"])
