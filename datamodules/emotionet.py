"""EmotioNet's manually annotated subset (a downloaded copy: the sheet, ``images/``, ``mapping.csv``):
in-the-wild faces found by dlib, 18 AU presences with NaN where the sheet does not code an AU
(masked in the loss and the metrics). The release has no identities, so every image is its own
subject; a seeded split by URL holds out ``test_fraction`` for the test split and ``val_fraction``
of the rest for validation (``fold: None``: the final model trains on it too)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from datamodules.base import AUFaceDataModule
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import FaceSource
from facslab.formats.emotionet import find_sheet, model_labels, read_mapping, read_sheet


class EmotioNetDataModule(AUFaceDataModule):
    """Args:
        root: the downloaded copy (``facslab download emotionet SHEET root``).
        fold: 0 validates on ``val_fraction`` of the training images; None trains on them as well.
        test_fraction, val_fraction: the seeded split.
        **kwargs: see ``AUFaceDataModule``.
    """

    n_folds = 1

    def __init__(self, root: str, fold: int | None = 0, test_fraction: float = 0.1, val_fraction: float = 0.1,
                 **kwargs):
        super().__init__(root, **kwargs)
        if fold not in (0, None):
            raise ConfigError(f"fold must be 0 or None (EmotioNet has one validation split), not {fold}")
        for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
            if not 0 < value < 1:
                raise ConfigError(f"{name} must be in (0, 1), not {value}")
        self.fold, self.test_fraction, self.val_fraction = fold, test_fraction, val_fraction
        self.save_hyperparameters()

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        table = read_sheet(find_sheet(self.root))
        mapping = read_mapping(self.root)
        labels = model_labels(table)
        rows = []
        for url, label in zip(table["url"], labels):
            file = self.root / mapping.get(url, "")
            if url not in mapping or not file.is_file():
                report.skip(file if url in mapping else url, "not downloaded (its error is in errors.csv; run "
                                                             "`facslab download emotionet` again to retry)")
                continue
            rows.append(dict(source=FaceSource(str(file)), labels=label, subject=file.name, url=url))
        return pd.DataFrame(rows)

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        # each image's role is drawn from its URL and the seed alone: images fetched by a later
        # rerun of the download join the split without moving any other image
        draw = np.array([int(hashlib.sha256(f"{self.seed}:{url}".encode()).hexdigest()[:12], 16) / 16 ** 12
                         for url in samples["url"]])
        test = draw < self.test_fraction
        val = ~test & (draw < self.test_fraction + self.val_fraction * (1 - self.test_fraction))
        roles = np.where(test, "test", np.where(val, "val", "train")).astype(object)
        self.samples_partition = pd.Series(roles.copy(), index=samples.index)  # what the split id names
        if self.fold is None:
            roles[val] = "train"
        return pd.Series(roles, index=samples.index)
