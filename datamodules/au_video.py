"""BP4D / BP4D+ and DISFA: AU labels per video frame, with subject-exclusive folds and a held-out
test split of subjects (as ``CKPlusDataModule``). Unknown codes are NaN, masked out of the loss
and the metrics. Frames are aligned by dlib (detection and its 5 landmarks)."""

from __future__ import annotations

import pandas as pd

from datamodules.base import AUFaceDataModule
from datamodules.splits import SubjectFolds, checked_fold
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import FaceSource
from facslab.formats import bp4d


class BP4DDataModule(SubjectFolds, AUFaceDataModule):
    """BP4D or BP4D+ (told apart per file by the column count) AU occurrence per frame; the
    protocol's 12 AUs are coded (23 and 24 as the model's 23/24), every other model AU is NaN.

    Args:
        fold, n_folds, test_fraction: subject-exclusive splits (the protocol's 3 folds by default).
        layout: label and image folder names.
        **kwargs: see ``AUFaceDataModule``.
    """

    def __init__(self, root: str, fold: int | None = 0, n_folds: int = 3, test_fraction: float = 0.2,
                 layout: bp4d.BP4DLayout | dict = bp4d.BP4DLayout(), **kwargs):
        super().__init__(root, **kwargs)
        self.fold, self.n_folds, self.test_fraction = checked_fold(fold, n_folds), n_folds, test_fraction
        self.layout = bp4d.BP4DLayout(**layout) if isinstance(layout, dict) else layout
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        table = bp4d.read_bp4d(self.root, self.layout, report)
        labels = [bp4d.protocol_only(label) for label in table["labels"]]
        return table.assign(labels=labels, source=[FaceSource(path) for path in table["image"]])


class DISFADataModule(SubjectFolds, AUFaceDataModule):
    """DISFA per frame: ``target: occurrence`` gives the detection protocol's 8 AUs, present at
    intensity >= ``threshold`` (2); ``target: intensity`` gives the 12 AUs' intensities 0-5 (for
    the intensity task). Every other model AU is NaN."""

    def __init__(self, root: str, target: str = "occurrence", threshold: float = 2.0, fold: int | None = 0,
                 n_folds: int = 3, test_fraction: float = 0.2, layout: bp4d.DISFALayout | dict = bp4d.DISFALayout(),
                 **kwargs):
        super().__init__(root, **kwargs)
        if target not in ("occurrence", "intensity"):
            raise ConfigError(f"target must be occurrence or intensity, not {target!r}")
        self.target, self.threshold = target, threshold
        self.fold, self.n_folds, self.test_fraction = checked_fold(fold, n_folds), n_folds, test_fraction
        self.layout = bp4d.DISFALayout(**layout) if isinstance(layout, dict) else layout
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        table = bp4d.read_disfa(self.root, self.layout, report)
        if self.target == "occurrence":
            labels = [bp4d.disfa_to_model_aus(v, self.threshold) for v in table["intensity"]]
        else:
            labels = [bp4d.disfa_to_model_aus(v, None, bp4d.DISFA_AUS) for v in table["intensity"]]
        return table.assign(labels=labels, source=[FaceSource(path) for path in table["image"]])
