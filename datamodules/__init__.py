"""LightningDataModules: each dataset's samples, splits and transforms."""

from datamodules.affwild2 import AffWild2DataModule
from datamodules.au_affect import AUAffectDataModule
from datamodules.au_video import BP4DDataModule, DISFADataModule
from datamodules.celeba_noisy import CelebANoisyDataModule
from datamodules.ckplus import CKPlusDataModule
from datamodules.emotionet import EmotioNetDataModule
from datamodules.emotion_datasets import (AffectNetDataModule, BP4DEmotionDataModule, CKPlusEmotionDataModule,
                                          RAFDBDataModule)
from datamodules.fer2013 import FER2013DataModule
from datamodules.sequences import BP4DEmotionSequenceDataModule, BP4DSequenceDataModule, CKPlusSequenceDataModule

__all__ = ["AUAffectDataModule", "AffWild2DataModule", "AffectNetDataModule", "BP4DDataModule", "BP4DEmotionDataModule", "BP4DEmotionSequenceDataModule", "BP4DSequenceDataModule", "CKPlusSequenceDataModule", "CelebANoisyDataModule", "CKPlusDataModule",
           "CKPlusEmotionDataModule", "DISFADataModule", "EmotioNetDataModule", "FER2013DataModule", "RAFDBDataModule"]
