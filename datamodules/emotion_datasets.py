"""AffectNet, RAF-DB, CK+'s emotion labels and BP4D / BP4D+'s induced emotions as emotion
datamodules (FER-2013: ``fer2013``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from datamodules.emotion import EmotionDataModule, resized_crops
from datamodules.splits import SubjectFolds, checked_fold
from facslab.badinput import SkipReport
from facslab.errors import ConfigError
from facslab.faces.cache import CachedCrops, FaceSource
from facslab.au import AU_LABELS, labels_from_facs_codes
from facslab.formats import affectnet, bp4d, rafdb
from facslab.formats.ckplus import CKPlusLayout, read_ckplus, read_landmarks
from facslab.emotions import EMOTIONS as CK_EMOTIONS


class AffectNetDataModule(EmotionDataModule):
    """AffectNet (either release): faces aligned from the released 68 landmarks (dlib detection
    when a row has none). Codes 8-10 (None, Uncertain, No-Face) are left out. The released
    validation set is the test set; ``val_fraction`` of training validates.

    Args:
        target: ``expression`` (8 classes; ``drop_classes: [contempt]`` gives AffectNet-7) or
            ``valence_arousal`` (two floats per face, for the regression task; rows without them
            are left out).
        **kwargs: see ``EmotionDataModule``.
    """

    all_classes = affectnet.CLASSES

    def __init__(self, root: str, target: str = "expression", **kwargs):
        super().__init__(root, **kwargs)
        if target not in ("expression", "valence_arousal"):
            raise ConfigError(f"target must be expression or valence_arousal, not {target!r}")
        self.target = target
        if target == "valence_arousal":
            self.label_dtype = np.float32
        self.save_hyperparameters()

    def emotion_rows(self, report: SkipReport) -> pd.DataFrame:
        tables = []
        for split in ("train", "test"):
            table = affectnet.read_affectnet(self.root, split, report)
            tables.append(table.assign(role=split))
        table = pd.concat(tables, ignore_index=True)
        table = table[table["expression"] < len(affectnet.CLASSES)]  # 8-10 are not emotions
        sources = [FaceSource(image, landmarks=landmarks) for image, landmarks in zip(table["image"], table["landmarks"])]
        return table.assign(source=sources, subject=table["name"], name=[affectnet.CLASSES[e] for e in table["expression"]],
                            image_name=table["name"]).reset_index(drop=True)

    def read_samples(self, report: SkipReport) -> pd.DataFrame:
        samples = super().read_samples(report)
        if self.target == "valence_arousal":
            samples = samples[samples[["valence", "arousal"]].notna().all(axis=1)].reset_index(drop=True)
            samples["labels"] = list(samples[["valence", "arousal"]].to_numpy(np.float32))
        return samples

    def assign_roles(self, samples: pd.DataFrame) -> pd.Series:
        if self.target == "expression":
            return super().assign_roles(samples)
        roles = samples["role"].to_numpy(dtype=object).copy()
        train = np.flatnonzero((roles == "train") & samples["ok"].to_numpy())
        held = np.random.default_rng(self.seed).permutation(train)[:max(1, int(round(self.val_fraction * len(train))))]
        roles[held] = "val"
        # the partition the split id names: the final model's (fold None) is its trials'
        self.samples_partition = pd.Series(roles.copy(), index=samples.index)
        if self.fold is None:  # the final model trains on the carved validation rows too
            roles[held] = "train"
        return pd.Series(roles, index=samples.index)


class RAFDBDataModule(EmotionDataModule):
    """RAF-DB basic: its aligned 100x100 faces (resized to ``image_size``), train/test by name;
    ``val_fraction`` of training validates."""

    all_classes = rafdb.CLASSES

    def __init__(self, root: str, image_size: int = 100, **kwargs):
        super().__init__(root, image_size=image_size, **kwargs)
        self.save_hyperparameters()

    def emotion_rows(self, report: SkipReport) -> pd.DataFrame:
        table = rafdb.read_rafdb(self.root, report)
        return table.assign(subject=table["name"], name=[rafdb.CLASSES[k] for k in table["label"]],
                            image_name=table["name"])

    def build_crops(self, samples: pd.DataFrame) -> CachedCrops:
        return resized_crops(list(samples["image"]), self.image_size, self.cache_dir, self.progress, "reading RAF-DB")


class CKPlusEmotionDataModule(EmotionDataModule):
    """CK+'s emotion labels (327 of 593 sequences in the release) on the peak frame, with
    subject-exclusive folds and a held-out test split of subjects, as ``CKPlusDataModule``.

    Args:
        fold: validation fold (0..n_folds-1), or None.
        n_folds, test_fraction: the subject-exclusive splits.
        include_neutral: add each labelled sequence's first (neutral) frame as ``neutral``.
        layout: CK+ folder names.
    """

    all_classes = CK_EMOTIONS  # neutral, anger, contempt, disgust, fear, happy, sadness, surprise
    codes_au_intensity = True  # FACS files grade AUs A-E: min_intensity applies

    def __init__(self, root: str, fold: int | None = 0, n_folds: int = 3, test_fraction: float = 0.1,
                 include_neutral: bool = False, layout: CKPlusLayout | dict = CKPlusLayout(), **kwargs):
        drop = list(kwargs.pop("drop_classes", ()))
        if not include_neutral and "neutral" not in drop:
            drop.append("neutral")
        super().__init__(root, drop_classes=drop, fold=None, **kwargs)
        self.fold, self.n_folds, self.test_fraction = checked_fold(fold, n_folds), n_folds, test_fraction
        self.include_neutral = include_neutral
        self.layout = CKPlusLayout(**layout) if isinstance(layout, dict) else layout
        self.save_hyperparameters()

    def emotion_rows(self, report: SkipReport) -> pd.DataFrame:
        # the emotion labels do not need FACS: a sequence whose FACS file is broken keeps its emotion
        sequences = read_ckplus(self.root, self.layout, report, facs_required=False)
        self.all_subjects = np.unique(sequences["subject"].to_numpy())
        labelled = sequences[sequences["emotion"].notna()]
        rows = [dict(source=FaceSource(s.peak_image, landmarks_file=s.peak_landmarks, read_landmarks=read_landmarks), subject=s.subject,
                     sequence=s.sequence, name=CK_EMOTIONS[int(s.emotion)], role="train", kind="peak", facs=s.facs)
                for s in labelled.itertuples()]
        if self.include_neutral:
            rows += [dict(source=FaceSource(s.neutral_image, landmarks_file=s.neutral_landmarks, read_landmarks=read_landmarks), subject=s.subject,
                          sequence=s.sequence, name="neutral", role="train", kind="neutral", facs={})
                     for s in labelled.itertuples()]
        return pd.DataFrame(rows)

    # the test subjects are drawn from every CK+ subject (all_subjects), as CKPlusDataModule draws
    # them: an AU model trained on that module's training split has never seen these test subjects
    test_mask = SubjectFolds.test_mask
    assign_roles = SubjectFolds.assign_roles  # EmotionDataModule's own carves validation from training

    def true_aus(self, min_intensity: int = 1) -> np.ndarray:
        """(samples, 18) AU presences from each sequence's FACS file, an AU present from
        ``min_intensity``; a row of NaN where the sequence has no readable FACS file."""
        return np.stack([labels_from_facs_codes(f, min_intensity) if isinstance(f, dict)
                         else np.full(len(AU_LABELS), np.nan, np.float32) for f in self.samples["facs"]])


class BP4DEmotionDataModule(EmotionDataModule):
    """BP4D / BP4D+ coded frames labelled with the emotion their task induced
    (``facslab.formats.bp4d.TASK_EMOTIONS``: T1-T8, BP4D+'s T1-T10), with subject-exclusive folds
    and held-out test subjects drawn as ``BP4DDataModule`` draws them (the same root, seed and
    test_fraction hold out the same participants). Every frame keeps its AU occurrence codes (the
    protocol's 12 AUs; ``true_aus``) for the AU -> emotion evaluation. A BP4D copy without BP4D+
    has no skepticism frames (BP4D+'s T5), and BP4D+'s AU codes cover only some of its tasks:
    ``drop_classes`` leaves the classes without frames out.

    Args:
        fold: validation fold (0..n_folds-1), or None.
        n_folds, test_fraction: the subject-exclusive splits.
        layout: label and image folder names.
    """

    all_classes = bp4d.INDUCED_EMOTIONS
    codes_au_intensity = False  # occurrence only, coded from intensity A

    def __init__(self, root: str, fold: int | None = 0, n_folds: int = 3, test_fraction: float = 0.2,
                 layout: bp4d.BP4DLayout | dict = bp4d.BP4DLayout(), **kwargs):
        super().__init__(root, fold=None, **kwargs)
        self.fold, self.n_folds, self.test_fraction = checked_fold(fold, n_folds), n_folds, test_fraction
        self.layout = bp4d.BP4DLayout(**layout) if isinstance(layout, dict) else layout
        self.save_hyperparameters()

    def emotion_rows(self, report: SkipReport) -> pd.DataFrame:
        table = bp4d.read_bp4d(self.root, self.layout, report)
        self.all_subjects = np.unique(table["subject"].to_numpy())
        names = [bp4d.TASK_EMOTIONS[r].get(t) for r, t in zip(table["release"], table["task"])]
        induced = pd.notna(pd.Series(names, dtype=object)).to_numpy()
        for path in table.loc[~induced, "label_file"].unique():
            report.skip(path, "its task induced no emotion in the release's protocol (BP4D T1-T8, BP4D+ T1-T10)")
        table = table.assign(name=names)[induced]
        return pd.DataFrame({"source": [FaceSource(path) for path in table["image"]], "subject": table["subject"],
                             "task": table["task"], "frame": table["frame"], "video": table["subject"] + "_" + table["task"],
                             "name": table["name"], "role": "train", "release": table["release"],
                             "aus": [bp4d.protocol_only(label) for label in table["labels"]]}).reset_index(drop=True)

    test_mask = SubjectFolds.test_mask  # from every participant read (all_subjects), as BP4DDataModule draws them
    assign_roles = SubjectFolds.assign_roles

    def true_aus(self, min_intensity: int = 1) -> np.ndarray:
        """(samples, 18) the frames' AU occurrence codes (NaN: unknown or not in the protocol)."""
        if min_intensity != 1:  # occurrence is coded from FACS intensity A: there is no other threshold to apply
            raise ConfigError(f"BP4D codes AU occurrence, not intensity: min_intensity must be 1, not {min_intensity}")
        return np.stack(self.samples["aus"].to_numpy())
