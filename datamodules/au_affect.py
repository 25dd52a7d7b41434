"""AUs from one dataset and valence/arousal from another, in one datamodule for the multi-task
model: by default CK+ peak frames (AU presences; valence/arousal unknown) and AffectNet faces
(valence/arousal; AUs unknown); EmotioNet and Aff-Wild2 (``au_data: EmotioNetDataModule``,
``affect_data: AffWild2DataModule``) for the in-the-wild system. Labels are 20 floats, NaN where a
dataset does not annotate. Each part splits as its own datamodule does (CK+: test subjects held
out, ``fold`` validates; AffectNet: its validation set is test, ``val_fraction`` of training
validates; Aff-Wild2: by clip), so a part's test split is the one its single-task model is
tested on."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd

from datamodules.base import AUFaceDataModule, FaceDataModule
from facslab.au import NUM_AUS
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import CachedCrops


def _datamodule(name: str) -> type[FaceDataModule]:
    """A ``datamodules`` class by name, or a datamodule by import path."""
    import importlib

    import datamodules

    module, _, attribute = name.rpartition(".")
    found = getattr(importlib.import_module(module) if module else datamodules, attribute, None)
    if not (isinstance(found, type) and issubclass(found, FaceDataModule)):
        raise ConfigError(f"{name!r} is not a datamodule (a datamodules class name or an import path)")
    return found


def _arguments(cls: type) -> set[str]:
    """The arguments a class's constructor takes, through the ``**kwargs`` it hands its parents."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        parameters = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


class AUAffectDataModule(AUFaceDataModule):
    """Args:
        root: the AU dataset's copy; affectnet_root: the valence/arousal dataset's copy.
        au_data, affect_data: their datamodules (class names in ``datamodules`` or import paths).
        fold: the parts' validation split (None: the final model, trained on it too).
        n_folds, test_fraction, val_fraction: given to each part whose datamodule takes them.
        au_options, affect_options: more arguments of one part (Aff-Wild2's ``frame_step``).
        **kwargs: see ``AUFaceDataModule`` (shared by both parts).
    """

    n_folds = 1

    def __init__(self, root: str, affectnet_root: str, fold: int | None = 0, n_folds: int = 3,
                 test_fraction: float = 0.1, val_fraction: float = 0.1, au_data: str = "CKPlusDataModule",
                 affect_data: str = "AffectNetDataModule", au_options: dict | None = None,
                 affect_options: dict | None = None, **kwargs):
        super().__init__(root, **kwargs)
        self.affectnet_root, self.fold, self.ck_folds = affectnet_root, fold, n_folds
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        common = dict(image_size=self.image_size, cache_dir=self.cache_dir, detector=self.detector,
                      preprocess_workers=self.preprocess_workers, progress=self.progress, seed=self.seed, strict=self.strict, fold=fold,
                      n_folds=n_folds, test_fraction=test_fraction, val_fraction=val_fraction, target=None)
        parts = []
        for path, cls, options, target in ((root, _datamodule(au_data), au_options, "occurrence"),
                                           (affectnet_root, _datamodule(affect_data), affect_options, "valence_arousal")):
            accepted = _arguments(cls)
            given = {k: v for k, v in {**common, "target": target}.items() if k in accepted}
            parts.append(cls(path, **{**given, **(options or {})}))
        self.parts = tuple(parts)
        if getattr(self.parts[1], "target", None) != "valence_arousal":
            raise ConfigError(f"affect_data: {affect_data} gives no valence/arousal")
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        au, affect = self.parts
        au_rows = au.read_samples(report).assign(dataset=au.dataset_name)
        au_rows["labels"] = [np.concatenate([label, [np.nan, np.nan]]).astype(np.float32) for label in au_rows["labels"]]
        va_rows = affect.read_samples(report).assign(dataset=affect.dataset_name)
        va_rows["labels"] = [np.concatenate([np.full(NUM_AUS, np.nan), label]).astype(np.float32)
                             for label in va_rows["labels"]]
        va_rows["subject"] = f"{affect.dataset_name.lower()}:" + va_rows["subject"].astype(str)
        # what each part's own split and crops read: its sources (or Aff-Wild2's aligned images),
        # AffectNet's released role, Aff-Wild2's set and clip, EmotioNet's URL
        kept = ("source", "image", "labels", "subject", "dataset", "role", "set", "video", "url")
        for rows in (au_rows, va_rows):
            if "image" not in rows:  # every row names its file in the split table
                rows["image"] = [source.image for source in rows["source"]]
        return pd.concat([rows[[c for c in kept if c in rows]] for rows in (au_rows, va_rows)], ignore_index=True)

    def build_crops(self, samples: pd.DataFrame) -> CachedCrops:
        """Each part's crops as its own datamodule makes them (dlib alignment for CK+ and EmotioNet,
        Aff-Wild2's aligned crops resized), one after the other as ``read_samples`` lists them. The
        two are joined in memory: fine at the sizes one machine trains this model on."""
        made = [part.build_crops(samples[samples["dataset"] == part.dataset_name].reset_index(drop=True))
                for part in self.parts]
        report = SkipReport(strict=self.strict)
        for part in made:
            report.extend(part.report)
        landmarks = [part.landmarks if part.landmarks is not None else np.full((len(part.crops), 68, 2), np.nan, np.float32)
                     for part in made]
        return CachedCrops(np.concatenate([np.asarray(part.crops) for part in made]),
                           np.concatenate([made[0].index, made[1].index + len(made[0].crops)]), report, made[0].path,
                           any(part.built for part in made), np.concatenate(landmarks))

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        au, affect = self.parts
        roles = pd.Series("unused", index=samples.index, dtype=object)
        partition = roles.copy()
        for part, rows in ((au, samples["dataset"] == au.dataset_name), (affect, samples["dataset"] == affect.dataset_name)):
            part_samples = samples[rows].reset_index(drop=True)
            part_roles = part.assign_roles(part_samples).to_numpy()
            roles[rows] = part_roles
            partition[rows] = getattr(part, "samples_partition", pd.Series(part_roles)).to_numpy()
            if "fold" in part_samples:
                samples.loc[rows, "fold"] = part_samples["fold"].to_numpy()
        self.samples_partition = partition
        return roles

    def split_table(self) -> pd.DataFrame:
        table = super().split_table()
        return table.assign(dataset=self.samples["dataset"])
