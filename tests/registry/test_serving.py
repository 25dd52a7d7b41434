"""Every registered task type is served: ``load_predictor(uri).predict_image`` and the pyfunc
model answer for AU, emotion, valence/arousal, AU+affect, intensity and temporal models, each with
the fields and columns its predictor declares; a real ``mlflow models serve`` process answers
``/invocations`` for the AU and the valence/arousal model."""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from mlflow import MlflowClient
from PIL import Image


def _untrained(task: str):
    """A small untrained model of ``task`` in its predictor: serving does not depend on training."""
    from facslab.predictor import (AUAffectPredictor, AUIntensityPredictor, AUPredictor, EmotionPredictor,
                                   TemporalAUPredictor, ValenceArousalPredictor)
    from lightning_modules.au_affect import AUAffectModel
    from lightning_modules.au_detector import AUDetector
    from lightning_modules.au_intensity import AUIntensityRegressor
    from lightning_modules.emotion_classifier import EmotionClassifier
    from lightning_modules.temporal import TemporalAUDetector
    from lightning_modules.valence_arousal import ValenceArousalRegressor

    torch.manual_seed(0)
    small = dict(unfrozen_blocks=0, image_size=32)
    build = {
        "au": lambda: AUPredictor(AUDetector("resnet18", hidden_size=16, **small)),
        "emotion": lambda: EmotionPredictor(EmotionClassifier(image_size=48)),
        "valence_arousal": lambda: ValenceArousalPredictor(ValenceArousalRegressor(**small)),
        "au_affect": lambda: AUAffectPredictor(AUAffectModel(hidden_size=16, **small)),
        "au_intensity": lambda: AUIntensityPredictor(AUIntensityRegressor(hidden_size=16, **small)),
        "au_temporal": lambda: TemporalAUPredictor(TemporalAUDetector(window=2, width=4, hidden_size=16, image_size=32)),
    }
    predictor = build[task]()
    predictor.provenance = {"trained_on": "generated", "datasets": "none (untrained)"}
    return predictor


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from facslab.mlflow_store import setup_tracking

    os.environ["FACSLAB_MLRUNS"] = str(tmp_path_factory.mktemp("mlruns"))
    try:
        uri = setup_tracking(None, "serving")
    finally:
        os.environ.pop("FACSLAB_MLRUNS")
    return uri


def _register(predictor, name: str) -> str:
    from facslab.serving import log_predictor

    with mlflow.start_run():
        info = log_predictor(predictor, name)
    MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)
    return f"models:/{name}@champion"


def _encoded(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("task", ["au", "emotion", "valence_arousal", "au_affect", "au_intensity", "au_temporal"])
def test_every_task_is_served_by_load_predictor_and_the_pyfunc_model(store, task):
    from facslab.model_uri import load_predictor

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    uri = _register(_untrained(task), f"served-{task}")
    astronaut = skimage.data.astronaut()
    predictor = load_predictor(uri)
    assert predictor.task == task
    faces = predictor.predict_image(astronaut)
    assert len(faces) == 1
    row = faces[0].output(task)
    assert row is not None and np.isfinite(row).all()
    answer = faces[0].as_dict()
    assert set(predictor.fields(row)) <= set(answer) and answer["said"][0]["task"] == task
    assert ("emoji" in answer) == predictor.decides_aus  # the emoji follows a model that decides AUs
    table = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image": [_encoded(astronaut)]}))
    assert len(table) == 1 and list(table.columns[:4]) == ["input", "face", "box", "confidence"]
    assert set(predictor.column_names()) <= set(table.columns)
    assert table.iloc[0][list(predictor.column_names())].tolist() == predictor.columns(row)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["au", "valence_arousal"])
def test_mlflow_models_serve_answers_invocations(store, task):
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    predictor = _untrained(task)
    uri = _register(predictor, f"http-{task}")
    port = _free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "serve", "-m", uri,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        # mlflow starts `uvicorn` by name: the virtualenv's bin must be on PATH, as when it is activated
        env={**os.environ, "MLFLOW_TRACKING_URI": store,
             "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def ask(records: list[dict]):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"dataframe_records": records}).encode(),
                                         headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                time.sleep(1)
        encoded = _encoded(skimage.data.astronaut())
        rows = ask([{"image": encoded}])["predictions"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            ask([{"img": encoded}])
        assert refused.value.code == 400 and "image" in refused.value.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(rows) == 1 and set(predictor.column_names()) <= set(rows[0])
    if task == "au":
        assert rows[0]["emoji"] and 0 <= rows[0]["AU12_p"] <= 1 and rows[0]["eye_left_closed"] in (0, 1)
    else:
        assert -1 <= rows[0]["valence"] <= 1 and -1 <= rows[0]["arousal"] <= 1 and "emoji" not in rows[0]
