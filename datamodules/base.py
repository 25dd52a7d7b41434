"""What the face datamodules share: cached crops, splits, normalisation and loaders.

A subclass says which samples a dataset has (``read_samples``) and how they split
(``assign_roles``); this class turns them into cached crops and PyTorch datasets. By default a
sample is a ``FaceSource`` (an image file, maybe with landmarks) that dlib aligns into the crop
cache; datasets released as pixels (FER-2013) override ``build_crops``.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from datamodules.transforms import eval_transform, mix_face_halves, train_transform
from facslab.au import AU_LABELS
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.align import AlignmentSpec
from facslab.faces.cache import CachedCrops, DetectionSettings, build_cache
from facslab.faces.landmarks import crop_landmarks, unmirror

log = logging.getLogger(__name__)


class FaceDataset(Dataset):
    """Face crops with their labels (18 AU presences, a class number, ...): ``(image, label)``, or
    ``((image, landmarks), label)`` given each crop's 68 landmarks (for models that read face
    parts), which the transform moves with the image."""

    def __init__(self, crops: np.ndarray, positions: np.ndarray, labels: np.ndarray, transform,
                 landmarks: np.ndarray | None = None):
        self.crops, self.positions, self.labels, self.transform = crops, positions, labels, transform
        self.landmarks = landmarks

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        position = self.positions[k]
        label = torch.as_tensor(self.labels[position])
        if self.landmarks is None:
            return self.transform(image=np.asarray(self.crops[position]))["image"], label
        if "keypoints" not in self.transform.processors:  # no augmentation: the points stay where they are
            image, points = self.transform(image=np.asarray(self.crops[position]))["image"], self.landmarks[position]
        else:
            out = self.transform(image=np.asarray(self.crops[position]), keypoints=self.landmarks[position])
            image, points = out["image"], unmirror(np.asarray(out["keypoints"], dtype=np.float32))
        return (image, torch.from_numpy(np.array(points, dtype=np.float32))), label


def _augmentation_generators(transform) -> list:
    """The generators of an albumentations pipeline: the Compose's and each transform's own."""
    if transform is None:
        return []
    found = [transform]
    for child in getattr(transform, "transforms", []):
        found += _augmentation_generators(child)
    return [t for t in found if hasattr(t, "random_generator")]


def random_streams(loader: DataLoader) -> dict:
    """Every random stream a training epoch draws from: the loader's shuffling generator, the
    augmentation's generators (albumentations gives every transform its own), and torch's,
    numpy's and Python's global ones (dropout, mixed face halves). With ``num_workers > 0`` each
    worker's copy of the augmentation is its own and is not included."""
    augmentation = _augmentation_generators(getattr(loader.dataset, "transform", None))
    return {"generator": loader.generator.get_state(), "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(), "python": random.getstate(),
            "augmentation": [(t.random_generator.bit_generator.state, t.py_random.getstate()) for t in augmentation]}


def set_random_streams(loader: DataLoader, state: dict) -> None:
    loader.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    augmentation = _augmentation_generators(getattr(loader.dataset, "transform", None))
    if len(augmentation) != len(state["augmentation"]):
        raise ValueError(f"the checkpoint's augmentation has {len(state['augmentation'])} random streams, this "
                         f"pipeline {len(augmentation)}: it was written by other code")
    for t, (numpy_state, python_state) in zip(augmentation, state["augmentation"]):
        t.random_generator.bit_generator.state = numpy_state
        t.py_random.setstate(python_state)


class FeatureDataset(Dataset):
    """Cached frozen-prefix features with their labels (see ``datamodules.features``). Indexed by a
    list of sample numbers it returns the whole batch with one array read: with the frozen stages
    gone, per-sample fetching and collation would be most of an epoch."""

    def __init__(self, features: np.ndarray, positions: np.ndarray, labels: np.ndarray):
        self.features, self.positions, self.labels = features, positions, labels

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.positions[k]
        return torch.from_numpy(np.array(self.features[rows])), torch.from_numpy(np.array(self.labels[rows]))


class FaceDataModule(L.LightningDataModule):
    """Base for datasets of face crops with labels.

    Args:
        root: dataset folder.
        image_size: side of the aligned square crop.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        preprocess_workers: processes that decode and align faces for the cache (None: all cores).
        cache_dir: where aligned crops are cached (None: ``$FACSLAB_CACHE`` or ~/.cache/facslab).
        detector: dlib detector for images without landmarks: "hog" or "mmod".
        strict: raise on the first bad file instead of skipping and reporting it.
        augment: albumentations augmentation of the training split.
        seed: makes the splits deterministic.
        landmarks: where a model that reads face parts gets each crop's 68 points: ``dlib`` (the
            predictor run on the crop, as every app and the test evaluation find them) or
            ``dataset`` (the dataset's own points where it ships 68, carried into the crop; dlib's
            elsewhere). See docs/explain.md for what the difference cost on generated faces.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        preprocess_workers: int | None = None,
        cache_dir: str | None = None,
        detector: str = "hog",
        strict: bool = False,
        augment: bool = True,
        seed: int = 0,
        progress: bool = True,
        landmarks: str = "dlib",
    ):
        super().__init__()
        if landmarks not in ("dlib", "dataset"):
            raise ConfigError(f"landmarks must be dlib or dataset, not {landmarks!r}")
        self.landmark_source = landmarks
        self.root = Path(root)
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.preprocess_workers, self.cache_dir, self.detector = preprocess_workers, cache_dir, detector
        self.strict, self.augment, self.seed, self.progress = strict, augment, seed, progress
        self._train_loader, self._resumed_streams = None, None
        self.report = SkipReport(strict=strict)
        self.samples: pd.DataFrame | None = None
        self.cached: CachedCrops | None = None
        self.mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
        self.std: tuple[float, float, float] = (0.25, 0.25, 0.25)
        #: cached frozen-prefix features that train and val batches carry instead of images
        self.features: np.ndarray | None = None
        #: batches carry each crop's 68 landmarks beside it (set for a model that reads face parts)
        self.with_landmarks = False
        self._landmarks: np.ndarray | None = None

    #: dtype of the label array: float32 for multi-label AUs, int64 for a class number
    label_dtype = np.float32

    # -- what a subclass provides -------------------------------------------------------------
    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        """One row per sample: ``source`` (FaceSource) or ``image`` (a name), ``labels``, ``subject``."""
        raise NotImplementedError

    def build_crops(self, samples: pd.DataFrame) -> CachedCrops:
        """The crop of every sample (aligned from its ``source`` by dlib, cached on disk)."""
        return build_cache(
            list(samples["source"]), self.spec, DetectionSettings(self.detector),
            cache_dir=self.cache_dir, workers=self.preprocess_workers, strict=self.strict,
            progress=self.progress, desc=f"aligning {type(self).__name__.removesuffix('DataModule')}",
        )

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        """``train``, ``val`` or ``test`` (or ``unused``) for every sample."""
        raise NotImplementedError

    # -- the shared machinery -----------------------------------------------------------------
    @property
    def spec(self) -> AlignmentSpec:
        return AlignmentSpec(size=self.image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.samples is not None:
            return
        report = SkipReport(strict=self.strict)
        samples = self.read_samples(report).reset_index(drop=True)
        self.cached = self.build_crops(samples)
        report.extend(self.cached.report)
        samples["ok"] = False
        samples.loc[self.cached.index, "ok"] = True
        samples["role"] = self.assign_roles(samples)
        if getattr(self, "samples_partition", None) is not None:
            samples["partition"] = self.samples_partition
        self.samples, self.report = samples, report
        self._labels = np.asarray(list(samples["labels"])).astype(self.label_dtype)
        train = self.positions("train")
        if len(train):
            self.mean, self.std = channel_stats(self.cached.crops, train, self.seed)
        log.info("%s: %s", type(self).__name__, self.describe())
        if len(report):  # one line, not one per file: the report lists them
            log.warning("%s: %s (see .report / the run's data/skipped.csv)", type(self).__name__, report.summary())

    def positions(self, role: str) -> np.ndarray:
        """Cache positions of the usable samples with this role."""
        s = self.samples
        return s.index[(s["role"] == role) & s["ok"]].to_numpy()

    def describe(self) -> str:
        counts = self.samples[self.samples["ok"]]["role"].value_counts()
        return ", ".join(f"{n} {role}" for role, n in counts.items())

    def split_table(self) -> pd.DataFrame:
        """Which file went where: save it with the run so a split can be checked and repeated."""
        columns = ["image", "subject", "role", "ok"] + [c for c in ("fold",) if c in self.samples]
        if "image" in self.samples:
            return self.samples[columns]
        return self.samples.assign(image=[s.image for s in self.samples["source"]])[columns]

    def split_id(self) -> str:
        """Digest of the split itself (which file, which subject, test or which fold), the same
        whichever fold validates, and for the final model (``fold: None``) as for its trials:
        runs on equal split ids saw the same partition of the same files."""
        import hashlib

        table = self.split_table()
        if "fold" in table:  # which fold validates is not part of the split: the fold numbers are
            side, fold = np.where(table["role"] == "test", "test", "train"), table["fold"]
        elif "partition" in self.samples:  # one validation split, which the final model trains on
            side, fold = self.samples["partition"], pd.Series(-1, index=table.index)
        else:
            side, fold = table["role"], pd.Series(-1, index=table.index)
        lines = sorted(f"{Path(i).name},{s},{r},{f}" for i, s, r, f in zip(table["image"], table["subject"], side, fold))
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def label_id(self) -> str:
        """Digest of what the labels are: the dataset, the target, the label names and every
        usable sample's label (so label settings such as CK+'s ``min_intensity`` or
        ``ungraded`` change it). Equal split ids with other label ids are not like with like."""
        import hashlib

        ok = self.samples["ok"].to_numpy()
        names = np.array([Path(str(n)).name for n in self.split_table()["image"]])[ok]
        labels = np.asarray(self._labels)[ok]
        order = np.argsort(names, kind="stable")
        digest = hashlib.sha256(repr((self.dataset_name, getattr(self, "target", "default"),
                                      tuple(getattr(self, "classes", ()) or ()), labels.dtype.str,
                                      labels.shape[1:])).encode())
        digest.update("\n".join(names[order]).encode())
        digest.update(np.ascontiguousarray(labels[order]).tobytes())
        return digest.hexdigest()[:16]

    @property
    def dataset_name(self) -> str:
        return type(self).__name__.removesuffix("DataModule")

    @property
    def generated(self) -> bool:
        """True for a copy written by facslab's generators (no real faces)."""
        from facslab.formats import is_generated

        return is_generated(self.root)

    def save_split(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.split_table().to_csv(path, index=False)
        return path

    @property
    def channels(self) -> int:
        return int(self.cached.crops.shape[-1])

    def labels_array(self) -> np.ndarray:
        """Labels of every sample ((n, 18) AU presences, or (n,) class numbers), indexed like the
        cache positions."""
        return self._labels

    def transform(self, role: str):
        """Albumentations pipeline of a split: augmentation (``augment``) for training only."""
        return (train_transform(self.mean, self.std, self.augment, seed=self.seed, keypoints=self.with_landmarks)
                if role == "train" else eval_transform(self.mean, self.std))

    def landmarks(self) -> np.ndarray:
        """(n, 68, 2) landmarks of every crop, in its pixels, indexed like the cache positions:
        dlib's 68-point predictor on the crop, or (``landmarks: dataset``) the dataset's own 68
        points where it ships them."""
        if self._landmarks is None:
            cached = self.cached.landmarks if self.landmark_source == "dataset" else None
            points = (np.full((len(self.cached.crops), 68, 2), np.nan, np.float32) if cached is None
                      else np.array(cached, dtype=np.float32))
            used = self.samples.index[self.samples["ok"] & (self.samples["role"] != "unused")].to_numpy()
            missing = used[np.isnan(points[used]).any(axis=(1, 2))]
            if len(missing):
                points[missing] = self._dlib_landmarks(missing)
            self._landmarks = points
        return self._landmarks

    def _dlib_landmarks(self, rows: np.ndarray) -> np.ndarray:
        """dlib's points on the crops of ``rows``, a few hundred crops at a time (a whole CelebA's
        crops do not fit in memory), kept beside the crop cache entry for the next run."""
        import hashlib

        from facslab.faces import landmarks as source

        key = hashlib.sha256(Path(source.__file__).read_bytes() + repr(self.cached.crops.shape).encode()
                             + rows.tobytes()).hexdigest()[:16]
        kept = Path(self.cached.path) / f"dlib-landmarks-{key}.npy"
        if kept.exists():
            return np.load(kept)
        log.info("%s: dlib's landmarks on %d crops", type(self).__name__, len(rows))
        points = np.concatenate([crop_landmarks(np.asarray(self.cached.crops[rows[k:k + 256]]))
                                 for k in range(0, len(rows), 256)])
        if Path(self.cached.path).is_dir():
            tmp = kept.with_name(f"{kept.stem}.tmp{os.getpid()}.npy")
            np.save(tmp, points)
            tmp.replace(kept)  # atomic: a parallel worker reads a whole file or none
        return points

    def dataset(self, role: str) -> FaceDataset | FeatureDataset:
        if self.features is not None and role in ("train", "val"):
            return FeatureDataset(self.features, self.positions(role), self.labels_array())
        return FaceDataset(self.cached.crops, self.positions(role), self.labels_array(), self.transform(role),
                           self.landmarks() if self.with_landmarks else None)

    def _loader(self, role: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        dataset = self.dataset(role)
        # a last training batch of one sample cannot train BatchNorm: leave that sample for the next epoch
        drop_last = role == "train" and len(dataset) % self.batch_size == 1 and len(dataset) > 1
        if isinstance(dataset, FeatureDataset):  # whole batches at once, in the order the per-sample loader uses
            order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
            return DataLoader(dataset, sampler=BatchSampler(order, self.batch_size, drop_last), batch_size=None,
                              generator=generator)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, generator=generator, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", shuffle=True)
        if self._resumed_streams is not None:  # a fit resumed from a checkpoint draws on where it stopped
            set_random_streams(loader, self._resumed_streams)
            self._resumed_streams = None
        self._train_loader = loader
        return loader

    # Lightning saves these with a fit's checkpoint and restores them before building the loaders
    def state_dict(self) -> dict:
        return {} if self._train_loader is None else {"random_streams": random_streams(self._train_loader)}

    def load_state_dict(self, state: dict) -> None:
        self._resumed_streams = state.get("random_streams")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

#: where the lower face starts in an eye-aligned crop, in eye distances under the eye line: below
#: the cheeks (AU6's bulge), above the nose wings and the folds beside them (AU9, AU10, AU12)
LOWER_FACE_FROM = 0.55


class AUFaceDataModule(FaceDataModule):
    """Base for datasets of faces with 18 AU presence labels.

    Args:
        mix_halves: the fraction of training faces that get another training face's lower half,
            their labels following the halves (``transforms.mix_face_halves``): against learning
            the lower-face AUs from the upper face's prototype. 0: off.
        **kwargs: see ``FaceDataModule``.
    """

    def __init__(self, root: str, mix_halves: float = 0.0, **kwargs):
        super().__init__(root, **kwargs)
        if not 0.0 <= mix_halves <= 1.0:
            raise ConfigError(f"mix_halves is a fraction of the training faces, 0-1, not {mix_halves}")
        self.mix_halves = mix_halves

    def lower_face_row(self) -> int:
        """The first image row of the lower face in this datamodule's aligned crops."""
        spec = self.spec
        return int(round((spec.eye_y + LOWER_FACE_FROM * spec.eye_distance) * spec.size))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # on the device, after the per-image pipeline; training batches only
        if self.mix_halves and self.trainer is not None and self.trainer.training:
            if self.features is not None:
                raise ConfigError("mix_halves mixes images: it cannot train on cached features; "
                                 "set train.feature_cache: false")
            if self.with_landmarks:
                raise ConfigError("mix_halves gives a face another's lower half, whose landmarks it does not "
                                  "carry: it cannot train a model that reads face parts; set data.mix_halves: 0")
            batch = mix_face_halves(*batch, self.lower_face_row(), self.mix_halves)
        return batch

    def positive_rate(self, role: str = "train") -> np.ndarray:
        """Fraction of positives per AU in a split (for BCE ``pos_weight``)."""
        labels = self.labels_array()[self.positions(role)]
        if not len(labels):
            return np.zeros(len(AU_LABELS))
        import warnings

        with warnings.catch_warnings():  # an AU never coded (all NaN) has no rate: 0
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nan_to_num(np.nanmean(labels, axis=0))


def channel_stats(crops: np.ndarray, positions: np.ndarray, seed: int, max_images: int = 2000, chunk: int = 128):
    """Per-channel mean and std (0-1 scale, one value per channel) over (at most ``max_images`` of) the training crops,
    read ``chunk`` crops at a time as float32 (2000 crops of 224 px as one float64 array would be
    2.4 GB); the per-chunk sums are added in float64."""
    rng = np.random.default_rng(seed)
    if len(positions) > max_images:
        positions = np.sort(rng.choice(positions, max_images, replace=False))
    total, squares, count = np.zeros(crops.shape[-1]), np.zeros(crops.shape[-1]), 0
    for start in range(0, len(positions), chunk):
        pixels = np.asarray(crops[positions[start:start + chunk]], dtype=np.float32) / np.float32(255.0)
        total += pixels.sum(axis=(0, 1, 2), dtype=np.float64)
        squares += np.square(pixels).sum(axis=(0, 1, 2), dtype=np.float64)
        count += pixels.shape[0] * pixels.shape[1] * pixels.shape[2]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 0.0)) + 1e-6
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
