"""Deterministic splits: subject-exclusive hold-out and k-fold, and stratified hold-out."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold, train_test_split

from facslab.errors import ConfigError, UsersMistake


def checked_fold(fold: int | None, n_folds: int) -> int | None:
    """The validation fold a datamodule is given (0..n_folds-1, or None: no validation split)."""
    if fold is not None and not 0 <= fold < n_folds:
        raise ConfigError(f"fold must be in 0..{n_folds - 1} or None, not {fold}")
    return fold


def subject_holdout(subjects: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test samples; no subject has samples on both sides."""
    distinct = len(np.unique(subjects))
    if distinct < 2:
        raise TooFewSubjectsError(f"{distinct} subject(s) cannot be split into training and test subjects")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    _, test = next(splitter.split(np.zeros(len(subjects)), groups=subjects))
    mask = np.zeros(len(subjects), bool)
    mask[test] = True
    return mask


class TooFewSubjectsError(UsersMistake, ValueError):
    """A split asks for more subject groups than the data has."""


def subject_folds(subjects: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of every sample; each subject in exactly one fold."""
    distinct = len(np.unique(subjects))
    if distinct < n_folds:
        raise TooFewSubjectsError(f"{distinct} subject(s) outside the test split cannot make {n_folds} "
                                  "subject-exclusive folds: add subjects, lower n_folds or test_fraction")
    folds = np.full(len(subjects), -1)
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(subjects)), groups=subjects)):
        folds[held] = k
    return folds


def stratified_holdout(strata: np.ndarray, fraction: float | int, seed: int) -> np.ndarray:
    """Boolean mask of a ``fraction`` of samples (or, as an int, that many), keeping the
    proportions of ``strata``."""
    positions = np.arange(len(strata))
    _, held = train_test_split(positions, test_size=fraction, random_state=seed, stratify=strata)
    mask = np.zeros(len(strata), bool)
    mask[held] = True
    return mask


def grouped_stratified_holdout(strata: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of about a ``fraction`` of samples such that no group (identity) has samples on
    both sides, with the proportions of ``strata`` kept as far as whole groups allow."""
    n_splits = max(2, int(round(1 / fraction)))
    distinct = len(np.unique(groups))
    if distinct < 2:
        raise TooFewSubjectsError(f"{distinct} identity cannot make an identity-disjoint hold-out")
    if distinct < n_splits:  # a tiny dataset: one identity's share is more than the fraction
        logging.getLogger(__name__).warning("%d identities: the identity-disjoint hold-out is 1/%d of the data, "
                                            "not %.0f%%", distinct, distinct, 100 * fraction)
        n_splits = distinct
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(strata)), strata, groups))
    mask = np.zeros(len(strata), bool)
    mask[held] = True
    return mask


class SubjectFolds:
    """Datamodule roles: a held-out test split of subjects (``test_fraction``) and ``n_folds``
    subject-exclusive folds in the rest, of which ``fold`` validates (None: no validation)."""

    def test_mask(self, subjects: np.ndarray) -> np.ndarray:
        """Which samples are test samples (whole subjects). A datamodule that keeps only some of
        a dataset's samples (an emotion subset) draws from every subject it read
        (``all_subjects``): the draw depends only on the set of subjects and the seed, so its test
        subjects are those of the datamodule that keeps them all."""
        every = getattr(self, "all_subjects", None)
        if every is None:
            return subject_holdout(subjects, self.test_fraction, self.seed)
        return np.isin(subjects, every[subject_holdout(every, self.test_fraction, self.seed)])

    def assign_roles(self, samples):
        import pandas as pd

        subjects = samples["subject"].to_numpy()
        test = self.test_mask(subjects)
        folds = np.full(len(samples), -1)
        folds[~test] = subject_folds(subjects[~test], self.n_folds, self.seed)
        samples["fold"] = folds
        roles = np.where(test, "test", "train").astype(object)
        if self.fold is not None:
            roles[folds == self.fold] = "val"
        return pd.Series(roles, index=samples.index)
