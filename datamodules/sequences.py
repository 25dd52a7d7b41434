"""Stacks of frames for the temporal AU model: every labelled frame with the ``window - 1`` frames
before it in its video (the first frame repeated at a video's start; a frame whose face was not
found is replaced by the nearest usable frame of the stack). Splits are the frame datamodules'
(subject-exclusive). Stacks are normalised but not augmented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from datamodules.au_video import BP4DDataModule
from datamodules.ckplus import CKPlusDataModule
from datamodules.emotion_datasets import BP4DEmotionDataModule
from facslab.au import NUM_AUS, labels_from_facs_codes
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import FaceSource
from facslab.formats.ckplus import read_ckplus, read_landmarks


class StackDataset(Dataset):
    def __init__(self, crops, windows: np.ndarray, positions: np.ndarray, labels: np.ndarray, mean, std):
        self.crops, self.windows, self.positions, self.labels = crops, windows, positions, labels
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        position = self.positions[k]
        stack = (np.asarray(self.crops[self.windows[position]], np.float32) - self.mean) / self.std
        return torch.from_numpy(stack.transpose(0, 3, 1, 2).copy()), torch.as_tensor(self.labels[position])


class SequenceMixin:
    """Adds ``windows`` (cache positions of every sample's stack) to a frame datamodule whose
    samples carry ``video`` and ``frame``."""

    window: int = 8

    def setup(self, stage: str | None = None) -> None:
        if self.samples is not None:
            return
        super().setup(stage)
        self.windows = stack_windows(self.samples, self.window)

    def dataset(self, role: str):
        if self.features is not None:
            raise ConfigError("frame stacks are not feature-cached: set train.feature_cache: false")
        if self.with_landmarks:
            raise ConfigError("frame stacks carry no landmarks: a backbone that reads face parts takes single crops")
        return StackDataset(self.cached.crops, self.windows, self.positions(role), self.labels_array(), self.mean, self.std)

    def restack(self, part: pd.Series) -> None:
        """Stacks that stay within each video's ``part`` (a value per sample): no stack reads a
        frame of another part (at a part's start its first frame is repeated)."""
        self.windows = stack_windows(self.samples.assign(video=self.samples["video"].astype(str) + "/" + part.astype(str)),
                                     self.window)

    def stacks(self, positions: np.ndarray) -> np.ndarray:
        """(N, window, S, S, C) uint8 crops of the stacks ending at ``positions``."""
        return np.asarray(self.cached.crops[self.windows[positions].ravel()]).reshape(
            len(positions), self.window, *self.cached.crops.shape[1:])


def stack_windows(samples: pd.DataFrame, window: int) -> np.ndarray:
    windows = np.zeros((len(samples), window), int)
    for _, group in samples.groupby("video", sort=False):
        order = group.sort_values("frame").index.to_numpy()
        usable = samples.loc[order, "ok"].to_numpy()
        for j, position in enumerate(order):
            chosen = [order[max(0, j - back)] for back in range(window - 1, -1, -1)]
            ok = [samples.at[p, "ok"] for p in chosen]
            fallback = position if samples.at[position, "ok"] else (order[usable][0] if usable.any() else position)
            # a missing face borrows the nearest usable frame before it in the stack, or at the
            # stack's start the first usable one after it (the target's own if need be): the
            # frames stay in time order
            first = next((p for p, good in zip(chosen, ok) if good), fallback)
            filled, last = [], None
            for p, good in zip(chosen, ok):
                last = p if good else last
                filled.append(p if good else (last if last is not None else first))
            windows[position] = filled
    return windows


class BP4DSequenceDataModule(SequenceMixin, BP4DDataModule):
    """BP4D / BP4D+ frame stacks; every coded frame is a sample.

    Args:
        window: frames per stack.
        **kwargs: see ``BP4DDataModule``.
    """

    def __init__(self, root: str, window: int = 8, **kwargs):
        super().__init__(root, **kwargs)
        self.window = window

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        samples = super().read_samples(report)
        return samples.assign(video=samples["subject"] + "_" + samples["task"])


class BP4DEmotionSequenceDataModule(SequenceMixin, BP4DEmotionDataModule):
    """BP4D / BP4D+ induced emotions on frame stacks (what a temporal AU model reads, for the AU ->
    emotion evaluation from video).

    Args:
        window: frames per stack.
        **kwargs: see ``BP4DEmotionDataModule``.
    """

    def __init__(self, root: str, window: int = 8, **kwargs):
        super().__init__(root, **kwargs)
        self.window = window


class CKPlusSequenceDataModule(SequenceMixin, CKPlusDataModule):
    """CK+ sequences, onset to peak: the peak frame's stack carries the peak's FACS labels, the
    first (neutral) frame's stack all zeros; the frames between give context only.

    Args:
        window: frames per stack (a shorter sequence repeats its first frame).
        **kwargs: see ``CKPlusDataModule`` (``include_neutral`` adds the neutral stacks).
    """

    def __init__(self, root: str, window: int = 8, **kwargs):
        super().__init__(root, **kwargs)
        self.window = window

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        sequences = read_ckplus(self.root, self.layout, report)
        rows = []
        for seq in sequences.itertuples():
            try:
                peak = labels_from_facs_codes(seq.facs, self.min_intensity, self.ungraded)
            except ValueError as error:
                report.skip(seq.facs_file, str(error))
                continue
            frames = sorted(Path(seq.peak_image).parent.glob("*.png"))
            landmarks_dir = Path(seq.peak_landmarks).parent if seq.peak_landmarks else None
            for k, frame in enumerate(frames):
                landmarks = landmarks_dir / f"{frame.stem}_landmarks.txt" if landmarks_dir else None
                last = k == len(frames) - 1
                labels = peak if last else (np.zeros(NUM_AUS, np.float32) if k == 0 and self.include_neutral
                                            else np.full(NUM_AUS, np.nan, np.float32))
                rows.append(dict(source=FaceSource(str(frame), landmarks_file=str(landmarks) if landmarks and
                                                   landmarks.exists() else None, read_landmarks=read_landmarks),
                                 labels=labels, subject=seq.subject, sequence=seq.sequence, frame=k,
                                 video=f"{seq.subject}_{seq.sequence}", target=last or (k == 0 and self.include_neutral),
                                 kind="peak" if last else "frame"))
        return pd.DataFrame(rows)

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        roles = super().assign_roles(samples)
        return roles.where(samples["target"], "context")
