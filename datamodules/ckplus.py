"""CK+ with clean FACS labels: peak frames plus one neutral frame per subject.

Splits are subject-exclusive: a held-out test split (10% of subjects by default), and k folds
(3 by default) inside the rest, of which ``fold`` is the validation fold. ``fold=None`` trains on
the whole training split (for the final model) and has no validation split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datamodules.base import AUFaceDataModule
from datamodules.splits import SubjectFolds, checked_fold
from facslab.au import NUM_AUS, intensities_from_facs_codes, labels_from_facs_codes
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import FaceSource
from facslab.formats.ckplus import CKPlusLayout, read_ckplus, read_landmarks


class CKPlusDataModule(SubjectFolds, AUFaceDataModule):
    """CK+ AU data.

    Args:
        fold: validation fold (0..n_folds-1), or None for no validation split.
        n_folds: subject-exclusive folds inside the training split.
        test_fraction: fraction of subjects held out for the test split.
        min_intensity: FACS intensity (1-5 = A-E) at or above which an AU is positive.
        ungraded: an AU coded with intensity 0 ("present, not graded") counts as "positive",
            "negative", or makes its sequence be skipped ("reject").
        include_neutral: add the first (neutral) frame of each subject as an all-negative sample.
        layout: CK+ folder names (the release's by default), a ``CKPlusLayout`` or a plain dict.
        target: ``occurrence`` (AU presence) or ``intensity`` (0-5 from the FACS grades, NaN for
            an AU coded present but not graded; for the AU intensity task).
        **kwargs: see ``AUFaceDataModule``.
    """

    def __init__(
        self,
        root: str,
        fold: int | None = 0,
        n_folds: int = 3,
        test_fraction: float = 0.1,
        min_intensity: int = 1,
        ungraded: str = "positive",
        include_neutral: bool = True,
        layout: CKPlusLayout | dict = CKPlusLayout(),
        target: str = "occurrence",
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        if target not in ("occurrence", "intensity"):
            raise ConfigError(f"target must be occurrence or intensity, not {target!r}")
        self.target = target
        checked_fold(fold, n_folds)
        if ungraded not in ("positive", "negative", "reject"):
            raise ConfigError(f"ungraded must be positive, negative or reject, not {ungraded!r}")
        self.fold, self.n_folds, self.test_fraction = fold, n_folds, test_fraction
        self.min_intensity, self.ungraded, self.include_neutral = min_intensity, ungraded, include_neutral
        self.layout = CKPlusLayout(**layout) if isinstance(layout, dict) else layout
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        sequences = read_ckplus(self.root, self.layout, report)
        rows = []
        for seq in sequences.itertuples():
            try:
                labels = (intensities_from_facs_codes(seq.facs) if self.target == "intensity"
                          else labels_from_facs_codes(seq.facs, self.min_intensity, self.ungraded))
            except ValueError as error:
                report.skip(seq.facs_file, str(error))
                continue
            rows.append(dict(source=FaceSource(seq.peak_image, landmarks_file=seq.peak_landmarks, read_landmarks=read_landmarks),
                             labels=labels, subject=seq.subject, kind="peak", sequence=seq.sequence))
        if self.include_neutral:
            for subject, group in sequences.groupby("subject", sort=True):
                first = group.sort_values("sequence").iloc[0]
                rows.append(dict(source=FaceSource(first.neutral_image, landmarks_file=first.neutral_landmarks,
                                                   read_landmarks=read_landmarks),
                                 labels=np.zeros(NUM_AUS, np.float32), subject=subject, kind="neutral",
                                 sequence=first.sequence))
        return pd.DataFrame(rows)
