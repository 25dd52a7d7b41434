"""Small generated datasets in the real layouts, shared by the tests of one worker."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from facslab.formats.celeba import write_celeba
from facslab.formats.ckplus import write_ckplus
from facslab.formats.openface import write_openface

CK_SUBJECTS = 12


@pytest.fixture(scope="session")
def ckplus(tmp_path_factory):
    """(root, truth) of a CK+-format dataset: 12 subjects x 2 sequences of 3-4 frames."""
    root = tmp_path_factory.mktemp("ckplus")
    truth = write_ckplus(root, n_subjects=CK_SUBJECTS, sequences_per_subject=2, frames=(3, 4), seed=7,
                         progress=False)
    return root, truth


@pytest.fixture(scope="session")
def celeba(tmp_path_factory):
    """(root, truth, noisy labels) of a CelebA-format dataset with a FeatureExtraction CSV."""
    root = tmp_path_factory.mktemp("celeba")
    truth = write_celeba(root, n_images=160, seed=3, progress=False)
    noisy = write_openface(truth, root / "openface" / "img_align_celeba.csv", seed=3)
    return root, truth, noisy


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()
