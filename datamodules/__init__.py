"""LightningDataModules: each dataset's samples, splits and transforms."""

from datamodules.celeba_noisy import CelebANoisyDataModule
from datamodules.ckplus import CKPlusDataModule

__all__ = ["CelebANoisyDataModule", "CKPlusDataModule"]
