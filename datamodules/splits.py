"""Deterministic splits: subject-exclusive hold-out and k-fold, and stratified hold-out."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, train_test_split


def subject_holdout(subjects: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test samples; no subject has samples on both sides."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    _, test = next(splitter.split(np.zeros(len(subjects)), groups=subjects))
    mask = np.zeros(len(subjects), bool)
    mask[test] = True
    return mask


def subject_folds(subjects: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of every sample; each subject in exactly one fold."""
    folds = np.full(len(subjects), -1)
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(subjects)), groups=subjects)):
        folds[held] = k
    return folds


def stratified_holdout(strata: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a ``fraction`` of samples, keeping the proportions of ``strata``."""
    positions = np.arange(len(strata))
    _, held = train_test_split(positions, test_size=fraction, random_state=seed, stratify=strata)
    mask = np.zeros(len(strata), bool)
    mask[held] = True
    return mask
