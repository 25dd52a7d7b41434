"""What the emotion datamodules share: class names (some may be left out), integer labels, a
validation split carved from training when the dataset has none, optional class-balanced
down-sampling of training, and Arriaga et al.'s augmentation (flips, rotations, shifts, zooms)."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pandas as pd
from albumentations.pytorch import ToTensorV2

from datamodules.base import FaceDataModule
from datamodules.splits import stratified_holdout
from datamodules.transforms import keypoint_params
from facslab.badinput import SkipReport
from facslab.errors import ConfigError


class EmotionDataModule(FaceDataModule):
    """Base of the emotion datamodules.

    Args:
        drop_classes: class names to leave out (e.g. ``[contempt]`` for AffectNet-7); the others
            are renumbered in order.
        fold: 0 has a validation split; None trains on all of training (the final model).
        val_fraction: where the dataset has no validation split of its own, this stratified
            fraction of training validates (the released validation set is the test set).
        balance_train: down-sample every training class to the rarest one's count (AffectNet's
            class-balanced setting).
        **kwargs: see ``FaceDataModule``.
    """

    label_dtype = np.int64
    n_folds = 1
    #: the dataset's class names, in its label order
    all_classes: tuple[str, ...] = ()

    def __init__(self, root: str, drop_classes: list[str] = (), fold: int | None = 0, val_fraction: float = 0.1,
                 balance_train: bool = False, **kwargs):
        super().__init__(root, **kwargs)
        unknown = sorted(set(drop_classes) - set(self.all_classes))
        if unknown:
            raise ConfigError(f"drop_classes: {', '.join(unknown)} not among {', '.join(self.all_classes)}")
        if fold not in (0, None):
            raise ConfigError(f"{type(self).__name__} has one validation split: fold must be 0 or None, not {fold}")
        self.drop_classes, self.fold = list(drop_classes), fold
        self.val_fraction, self.balance_train = val_fraction, balance_train
        self.classes = tuple(c for c in self.all_classes if c not in self.drop_classes)

    def emotion_rows(self, report: SkipReport) -> pd.DataFrame:
        """One row per sample: ``name`` (class name), ``role`` (train, val or test), ``subject``,
        and what ``build_crops`` reads (``source``, or ``image``)."""
        raise NotImplementedError

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        rows = self.emotion_rows(report)
        rows = rows[rows["name"].isin(self.classes)].reset_index(drop=True)
        number = {name: k for k, name in enumerate(self.classes)}
        return rows.assign(labels=[number[n] for n in rows["name"]])

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        roles = samples["role"].to_numpy(dtype=object).copy()
        usable = samples["ok"].to_numpy()
        official_val = (roles == "val").any()
        if not official_val:  # carve validation out of training, class proportions kept
            train = np.flatnonzero((roles == "train") & usable)
            roles[train[self._validation_mask(samples["labels"].to_numpy()[train])]] = "val"
        # the partition the split id names: the final model's (fold None) is its trials'
        self.samples_partition = pd.Series(roles.copy(), index=samples.index)
        if self.fold is None:  # the final model: a carved validation split goes back to training
            roles[roles == "val"] = "unused" if official_val else "train"
        if self.balance_train:
            train = np.flatnonzero((roles == "train") & usable)
            labels = samples["labels"].to_numpy()[train]
            smallest = np.bincount(labels, minlength=len(self.classes))
            smallest = smallest[smallest > 0].min()
            rng = np.random.default_rng(self.seed)
            for label in np.unique(labels):
                members = train[labels == label]
                roles[rng.permutation(members)[smallest:]] = "unused"
        return pd.Series(roles, index=samples.index)

    def _validation_mask(self, labels: np.ndarray) -> np.ndarray:
        """A stratified ``val_fraction`` of training (at least one sample per class that has two
        or more; a class with a single sample keeps it in training)."""
        counts = np.bincount(labels, minlength=len(self.classes))
        strata = np.where(counts[labels] >= 2, labels, -1)
        lone = strata == -1
        if lone.sum() == 1:  # one lone sample cannot be a stratum of its own: it trains
            strata[lone] = -2
        keep = strata != -2
        n_strata = len(np.unique(strata[keep]))
        size = max(int(round(self.val_fraction * keep.sum())), n_strata)
        mask = np.zeros(len(labels), bool)
        if size >= keep.sum() - n_strata:
            raise ValueError(f"{type(self).__name__}: {keep.sum()} training samples in {n_strata} classes are too few "
                             f"to carve a stratified validation split; add data or lower val_fraction")
        rows = np.flatnonzero(keep)
        mask[rows] = stratified_holdout(strata[rows], size, self.seed)
        return mask

    def transform(self, role: str):
        steps = []
        if role == "train" and self.augment:
            steps = [A.HorizontalFlip(p=0.5),
                     A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), rotate=(-10, 10), p=0.8)]
        return A.Compose(steps + [A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0), ToTensorV2()],
                         seed=self.seed, **keypoint_params(self.with_landmarks and bool(steps)))

    def class_counts(self, role: str = "train") -> np.ndarray:
        return np.bincount(self.labels_array()[self.positions(role)], minlength=len(self.classes))


def resized_crops(images: list[str], size: int, cache_dir: str | None, progress: bool = True, desc: str = "reading"):
    """Crops of already aligned face images (RAF-DB's), resized to ``size``, in a memory-mapped
    cache keyed by the files (path, size, time) and the size; an unreadable file is reported and
    left out. Returns a ``CachedCrops``."""
    import hashlib
    import os
    import shutil
    from pathlib import Path

    import cv2
    from tqdm import tqdm

    from facslab.faces.cache import CachedCrops, default_cache_dir

    def stat(path: str) -> tuple:
        try:
            info = os.stat(path)
            return info.st_size, info.st_mtime_ns
        except OSError:
            return ()

    key = hashlib.sha256(repr([1, size, [(str(Path(p).resolve()), stat(p)) for p in images]]).encode()).hexdigest()[:24]
    entry = (Path(cache_dir) if cache_dir else default_cache_dir()).parent / "resized" / key
    report = SkipReport()
    built = not (entry / "done").exists()
    if built:
        tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8, shape=(len(images), size, size, 3))
        bad = []
        for k, path in enumerate(tqdm(images, desc=desc, disable=not progress)):
            # checked first: OpenCV would print its own warning for a missing file beside the report
            if not os.path.isfile(path):
                bad.append((k, path, "file not found"))
                continue
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                bad.append((k, path, "not a readable image"))
                continue
            out[k] = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        out.flush()
        del out
        pd.DataFrame(bad, columns=["position", "file", "problem"]).to_csv(tmp / "skipped.csv", index=False)
        (tmp / "done").touch()
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
    skipped = pd.read_csv(entry / "skipped.csv")
    for row in skipped.itertuples():
        report.skip(row.file, row.problem)
    index = np.setdiff1d(np.arange(len(images)), skipped["position"].to_numpy())
    return CachedCrops(crops=np.load(entry / "crops.npy", mmap_mode="r"), index=index, report=report, path=entry,
                       built=built)
