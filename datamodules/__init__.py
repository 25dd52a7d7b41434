"""LightningDataModules: each dataset's samples, splits and transforms."""

from datamodules.celeba_noisy import CelebANoisyDataModule
from datamodules.ckplus import CKPlusDataModule
from datamodules.fer2013 import FER2013DataModule

__all__ = ["CelebANoisyDataModule", "CKPlusDataModule", "FER2013DataModule"]
