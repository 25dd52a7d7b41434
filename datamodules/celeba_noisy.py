"""CelebA with noisy AU labels from OpenFace 2.0, for pretraining.

Labels come from OpenFace's presence columns (``AUxx_c``), either one ``FeatureExtraction`` CSV
run over the image folder or a folder of ``FaceLandmarkImg`` per-image CSVs. Faces are aligned
from CelebA's own landmarks (no detection). The split is 95/5 train/validation, stratified by
gender (``Male``) and identity-disjoint when ``identity_CelebA.txt`` is present; ``fraction`` uses a
stratified part of the training data (the report's dataset-size experiment) against the same
validation set.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from datamodules.base import AUFaceDataModule
from datamodules.splits import grouped_stratified_holdout, stratified_holdout
from facslab.badinput import BadInputError, SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import FaceSource
from facslab.formats.celeba import CelebALayout, read_celeba
from facslab.formats.openface import read_face_landmark_img, read_feature_extraction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class CelebANoisyDataModule(AUFaceDataModule):
    """CelebA images, OpenFace AU labels.

    Args:
        openface_csv: a ``FeatureExtraction`` CSV for the image folder (relative to root or absolute).
        openface_dir: a folder of ``FaceLandmarkImg`` CSVs (used when ``openface_csv`` is None).
        val_fraction: validation share, stratified by ``Male``.
        fraction: share of the data used at all (stratified), for dataset-size experiments.
        layout: CelebA file and folder names (the release's by default), a ``CelebALayout`` or a dict.
        **kwargs: see ``AUFaceDataModule``.
    """

    def __init__(
        self,
        root: str,
        openface_csv: str | None = "openface/img_align_celeba.csv",
        openface_dir: str | None = None,
        val_fraction: float = 0.05,
        fraction: float = 1.0,
        layout: CelebALayout | dict = CelebALayout(),
        **kwargs,
    ):
        super().__init__(root, **kwargs)
        if not 0 < fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], not {fraction}")
        if openface_csv is None and openface_dir is None:
            raise ConfigError("give openface_csv (FeatureExtraction) or openface_dir (FaceLandmarkImg)")
        self.openface_csv, self.openface_dir = openface_csv, openface_dir
        self.val_fraction, self.fraction = val_fraction, fraction
        self.layout = CelebALayout(**layout) if isinstance(layout, dict) else layout
        self.has_identities = False  # set when identity_CelebA.txt is read
        self.save_hyperparameters()

    def _labels(self, report: SkipReport) -> pd.DataFrame:
        folder = self.root / self.layout.images
        if not folder.is_dir():
            raise BadInputError(folder, "CelebA image folder not found (set the layout's folder names?)")
        names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if self.openface_csv is not None:
            path = self.root / self.openface_csv
            return read_feature_extraction(path, names)
        labels, problems = read_face_landmark_img(self.root / self.openface_dir, names)
        for problem in problems:
            report.add(problem)
        return labels

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        table = read_celeba(self.root, self.layout)
        labels = self._labels(report)
        table = table.merge(labels, on="image", how="left")
        folder = self.root / self.layout.images
        rows = []
        for row in table.itertuples():
            path = folder / row.image
            label = row.labels
            if not isinstance(label, np.ndarray):
                report.skip(path, "no OpenFace label for this image")
                continue
            if not row.success:
                report.skip(path, "OpenFace found no face in this image (success 0)")
                continue
            if np.isnan(label).any():
                report.skip(path, "OpenFace label has non-numeric AU values")
                continue
            eyes = (row.lefteye_x, row.lefteye_y, row.righteye_x, row.righteye_y)
            identity = getattr(row, "identity", None)
            subject = str(row.image) if identity is None or pd.isna(identity) else str(int(identity))
            rows.append(dict(source=FaceSource(str(path), landmarks=tuple(float(v) for v in eyes)),
                             labels=label.astype(np.float32), subject=subject, male=int(row.Male)))
        self.has_identities = "identity" in table.columns and table["identity"].notna().all()
        return pd.DataFrame(rows)

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        """Validation first, on all usable data, so every ``fraction`` shares one validation set;
        then ``fraction`` of the rest trains. With ``identity_CelebA.txt`` no identity is on both
        sides; the split is stratified by ``Male`` either way."""
        roles = pd.Series("unused", index=samples.index, dtype=object)
        usable = samples.index[samples["ok"]].to_numpy()
        male = samples.loc[usable, "male"].to_numpy()
        if self.has_identities:
            identities = samples.loc[usable, "subject"].to_numpy()
            val = grouped_stratified_holdout(male, identities, self.val_fraction, self.seed)
        else:
            val = stratified_holdout(male, self.val_fraction, self.seed)
        roles[usable[val]] = "val"
        train, train_male = usable[~val], male[~val]
        if self.fraction < 1:
            train = train[stratified_holdout(train_male, self.fraction, self.seed)]
        roles[train] = "train"
        return roles
