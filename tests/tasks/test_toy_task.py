"""Proof of the task seam: a task the project has never heard of, defined here and only here (its
LightningModule, its datamodule over generated CK+ faces, its predictor and its description),
goes through sweep -> register -> report -> ``emoji --json`` -> ``live --csv`` -> the pyfunc model
with no change to the project's code. The sweep config names it by import path.

The toy task: is the face smiling (AU12, the lip corner puller, present)? One sigmoid output,
scored by ROC-AUC.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

import conftest

from datamodules import CKPlusDataModule
from facslab.au import AU_LABELS
from facslab.badinput import BadInputError
from facslab.evaluation import grouped_bootstrap
from facslab.predictor import TaskPredictor
from facslab.tasks import AUTask, Evaluation, Task, held_out_outputs, held_out_subjects
from lightning_modules.backbones import SPATIAL_OUTPUT
from lightning_modules.base import BackboneModule

SMILE = AU_LABELS.index("12")


class SmileDetector(BackboneModule):
    """P(smiling) of a face crop."""

    objective = "val_auroc"
    history_metrics = ("train_loss", "val_loss", "val_auroc")

    def __init__(self, backbone: str = "resnet18", unfrozen_blocks: int = 1, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0, lr_schedule: str = "constant",
                 weights: str | None = None, image_size: int = 32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        self.save_hyperparameters()
        built = self.init_backbone(backbone, weights, unfrozen_blocks)
        pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)] if backbone in SPATIAL_OUTPUT else []
        self.head = nn.Sequential(*pool, nn.Linear(built.features, 1))
        self._val_outputs = []

    def loss_from_logits(self, logits, labels):
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    def outputs_from_logits(self, logits):
        return torch.sigmoid(logits)

    def validation_metrics(self, outputs, labels):
        return {"val_auroc": torch.tensor(auroc(outputs.cpu().numpy(), labels.cpu().numpy()))}


def auroc(outputs: np.ndarray, labels: np.ndarray) -> float:
    labels = np.asarray(labels).ravel()
    return float(roc_auc_score(labels, np.asarray(outputs).ravel())) if 0 < labels.sum() < len(labels) else 0.5


class SmileDataModule(CKPlusDataModule):
    """CK+ faces labelled smiling or not (AU12 present)."""

    def read_samples(self, report):
        samples = super().read_samples(report)
        samples["labels"] = [np.asarray(labels, np.float32)[SMILE:SMILE + 1] for labels in samples["labels"]]
        return samples


class SmilePredictor(TaskPredictor):
    task = "smile"
    outputs_name = "smile probability"
    module_class = SmileDetector

    def fields(self, row):
        return {"smile": round(float(row[0]), 4)}

    def column_names(self):
        return ("smile_probability",)

    def columns(self, row):
        return [round(float(row[0]), 4)]

    def summary(self, row):
        return f"smiling {float(row[0]):.2f}"


class SmileTask(Task):
    name, module_class, predictor_class = "smile", SmileDetector, SmilePredictor
    default_datamodule, registered_name = f"{__name__}.SmileDataModule", "toy-smile"
    metric, metric_label = "auroc", "ROC-AUC"

    def build_model(self, model_args, dm, train, init_from):
        return SmileDetector(**{**model_args, "image_size": dm.image_size, "mean": list(dm.mean), "std": list(dm.std)})

    def fold_score(self, outputs, labels):
        return auroc(outputs, labels)

    def summarise_validation(self, outputs, labels, dm, train):
        score = auroc(outputs, labels)
        return Evaluation(score, {"oof_auroc": score})

    def evaluate_test(self, predictor, dm):
        probs, labels = held_out_outputs(predictor, dm)
        score = auroc(probs, labels)
        lo, hi = grouped_bootstrap(lambda rows: [auroc(probs[rows], labels[rows])], len(labels), held_out_subjects(dm),
                                   n_boot=200, valid=lambda rows: 0 < labels[rows].sum() < len(rows))
        table = pd.DataFrame({"target": ["smile"], "auroc": [score], "auroc_lo": lo, "auroc_hi": hi,
                              "positives": [int(labels.sum())], "faces": [len(labels)]})
        return Evaluation(score, {"test_auroc": score}, {"metrics/test_smile.csv": table},
                          interval=(float(lo[0]), float(hi[0])), predictions=(probs, labels))


class TweakedAU(AUTask):
    """Keeps its parent's name: defining it does not take the AU task over."""


def run_cli(*args, env):
    """The CLI in a process that can import this module, as a user's package would be."""
    here = Path(__file__).parent  # this module, and conftest.py (which it imports) one folder up
    path = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    return conftest.run_cli(*args, env={"PYTHONPATH": path, **env})


@pytest.mark.slow
def test_a_task_defined_outside_the_project_goes_through_sweep_registry_report_and_every_app(ckplus, tmp_path):
    store = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    config = tmp_path / "smile.yaml"
    config.write_text(f"""study: smile
task: {__name__}.SmileTask
n_trials: 2
pruner: none
experiment: toy
datamodule:
  class_path: {__name__}.SmileDataModule
  init_args: {{root: {ckplus[0]}, image_size: 32, batch_size: 16, test_fraction: 0.34, cache_dir: {tmp_path / 'cache'},
              progress: false}}
model: {{class_path: {__name__}.SmileDetector, init_args: {{backbone: resnet18, unfrozen_blocks: 1}}}}
train: {{max_epochs: 2, patience: 2, init_from: null, progress: false}}
search: {{lr: {{low: 1.0e-4, high: 1.0e-2, log: true}}}}
""")
    swept = run_cli("sweep", "--config", str(config), env=store)
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert "toy-smile" in swept.stdout and "ROC-AUC" in swept.stdout, swept.stdout

    report = run_cli("report", "--config.experiment", "toy", "--config.model_name", "toy-smile",
                     "--config.output", str(tmp_path / "report"), env=store)
    assert report.returncode == 0, report.stderr[-3000:]
    table = (tmp_path / "report" / "table1.md").read_text()
    assert "| target | auroc | positives | faces |" in table and "| smile |" in table and "ROC-AUC" not in table

    uri = "models:/toy-smile@champion"
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    shown = run_cli("emoji", str(photo), "--model", uri, "--emotion_model", "none", "--json", env=store)
    assert shown.returncode == 0, shown.stderr[-3000:]
    face = json.loads(shown.stdout)[0]
    assert 0 <= face["smile"] <= 1 and [s["task"] for s in face["said"]] == ["smile"]

    from facslab.synth.video import photo_frames, write_mp4

    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 4, (320, 240)))
    frames = tmp_path / "frames.csv"
    live = run_cli("live", "--source", str(video), "--model", uri, "--emotion_model", "none", "--csv", str(frames),
                   "--quiet", env=store)
    assert live.returncode == 0, live.stderr[-3000:]
    with open(frames, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0])[-1] == "smile_probability" and 0 <= float(rows[0]["smile_probability"]) <= 1

    import mlflow

    from facslab.mlflow_store import setup_tracking

    os.environ.update(store)
    try:
        setup_tracking(None, "toy")
        served = mlflow.pyfunc.load_model(uri)
    finally:
        os.environ.pop("FACSLAB_MLRUNS")
    encoded = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(encoded, format="PNG")
    answer = served.predict(pd.DataFrame({"image": [base64.b64encode(encoded.getvalue()).decode()]}))
    assert list(answer.columns)[-1] == "smile_probability" and len(answer) == 1
    assert answer["smile_probability"].iloc[0] == pytest.approx(face["smile"], abs=1e-3)


@pytest.mark.slow
def test_a_task_or_a_model_whose_code_cannot_be_imported_is_one_line(ckplus, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"study: lost\ntask: no_such_package.SmileTask\n"
                      f"datamodule: {{class_path: CKPlusDataModule, init_args: {{root: {ckplus[0]}}}}}\n")
    out = run_cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "facslab sweep: error: task: task 'no_such_package.SmileTask' cannot be imported (No module named "
        "'no_such_package')"], out.stderr

    torch.manual_seed(0)
    folder = SmilePredictor(SmileDetector(unfrozen_blocks=0)).save(tmp_path / "smile", onnx=False)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    # a process that cannot import this module (no PYTHONPATH to the tests)
    out = subprocess.run([sys.executable, "-m", "facslab.cli", "emoji", str(photo), "--model", str(folder),
                          "--emotion_model", "none"], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"facslab emoji: error: {folder / 'config.json'}: the model's predictor {__name__}:SmilePredictor cannot be "
        f"imported (ModuleNotFoundError: No module named '{__name__}'): install the package that defines its task"), out.stderr


def test_a_name_belongs_to_one_class_and_a_saved_model_to_the_class_that_saved_it(tmp_path):
    import json

    from facslab.predictor import PREDICTORS, TaskPredictor
    from facslab.model_uri import load_predictor
    from facslab.tasks import TASKS, get_task

    assert type(TASKS["au"]) is AUTask
    with pytest.raises(ValueError, match="task 'au' is facslab.tasks:AUTask already"):
        type("ClashingTask", (AUTask,), {"name": "au", "__module__": "somewhere.else"})
    with pytest.raises(ValueError, match="not a facslab.tasks.Task subclass with a name of its own"):
        get_task(f"{__name__}.TweakedAU")
    with pytest.raises(ValueError, match="task 'smile' is test_toy_task:SmilePredictor already"):
        type("OtherSmile", (TaskPredictor,), {"task": "smile", "__module__": "somewhere.else"})
    assert PREDICTORS["smile"] is SmilePredictor

    torch.manual_seed(0)
    folder = SmilePredictor(SmileDetector(unfrozen_blocks=0)).save(tmp_path / "smile", onnx=False)
    assert load_predictor(str(folder), runtime="torch").task == "smile"
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "predictor": "facslab.predictor:AUPredictor"}))
    with pytest.raises(BadInputError, match="saved by facslab.predictor:AUPredictor, but task 'smile' is "
                                            "test_toy_task:SmilePredictor here"):
        load_predictor(str(folder), runtime="torch")
