"""LightningDataModules: each dataset's samples, splits and transforms."""

from datamodules.celeba_noisy import CelebANoisyDataModule
from datamodules.ckplus import CKPlusDataModule
from datamodules.emotion_datasets import AffectNetDataModule, CKPlusEmotionDataModule, RAFDBDataModule
from datamodules.fer2013 import FER2013DataModule

__all__ = ["AffectNetDataModule", "CelebANoisyDataModule", "CKPlusDataModule", "CKPlusEmotionDataModule",
           "FER2013DataModule", "RAFDBDataModule"]
