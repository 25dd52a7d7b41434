"""The apps on real photographs: `facslab emoji`, `facslab live`, and the model under MLflow serving."""

import base64
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import mlflow
import numpy as np
import pytest
import skimage.data
from mlflow import MlflowClient
from PIL import Image

from facslab.cli import main
from facslab.live import CSV_COLUMNS
from facslab.predictor import AUPredictor
from facslab.synth.video import photo_frames, write_mp4


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """One face (astronaut), several faces (a collage of real photographs), none (coffee)."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.astronaut()).save(folder / "one.png")
    faces = skimage.data.lfw_subset()[:3]
    tiles = [np.dstack([cv2.resize((f * 255).astype(np.uint8), (160, 160), interpolation=cv2.INTER_CUBIC)] * 3)
             for f in faces]
    collage = np.full((200, 600, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        collage[20:180, 20 + 190 * k:180 + 190 * k] = tile
    Image.fromarray(collage).save(folder / "several.png")
    Image.fromarray(skimage.data.coffee()).save(folder / "none.png")
    return folder


def test_emoji_cli_on_one_several_and_no_faces(model_dir, photos, tmp_path, capsys):
    images = [str(photos / name) for name in ("one.png", "several.png", "none.png")]
    status = main(["emoji", *images, "--model", str(model_dir), "--json", "--annotate", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 1  # the image without a face fails alone
    assert "none.png: no face found" in captured.err
    assert captured.err.count("trained only on generated faces") == 1  # said once, not per face
    faces = json.loads(captured.out)
    per_image = {}
    for face in faces:
        per_image.setdefault(os.path.basename(face["image"]), []).append(face)
    assert len(per_image["one.png"]) == 1 and len(per_image["several.png"]) == 3 and "none.png" not in per_image
    face = per_image["one.png"][0]
    assert face["emoji"] in "😃😄😁🙂😊😐😮😲😣😠😖😫😤😉" and -1 <= face["score"] <= 1
    assert set(face["probabilities"]) == {"1", "2", "4", "5", "6", "7", "9", "10", "12", "14", "15", "17", "20",
                                          "23/24", "25", "26/27", "28", "43"}
    assert face["eyes_closed"] == {"left": False, "right": False}  # the astronaut's eyes are open
    assert len(face["ranking"]) == 14
    assert (tmp_path / "one_emoji.png").exists() and (tmp_path / "several_emoji.png").exists()


def test_emoji_cli_text_output(model_dir, photos, capsys):
    assert main(["emoji", str(photos / "one.png"), "--model", str(model_dir)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{photos / 'one.png'} face 0: ") and "kappa" in line


def test_live_on_a_video_of_a_real_photo(model_dir, tmp_path, capsys):
    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 24, (640, 480)))
    out, table = tmp_path / "out.mp4", tmp_path / "frames.csv"
    assert main(["live", "--source", str(video), "--model", str(model_dir), "--out", str(out), "--csv", str(table),
                 "--detect_every", "5", "--quiet"]) == 0
    assert "24 frames, 24 faces" in capsys.readouterr().out
    capture = cv2.VideoCapture(str(out))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 24 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 640
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [int(r["frame"]) for r in rows] == list(range(1, 25))  # one row per face per frame
    assert {r["face_id"] for r in rows} == {"0"} and all(r["success"] == "1" for r in rows)
    assert {"AU01_c", "AU23_c", "AU26_c", "AU45_c"} <= set(rows[0]) and rows[0]["emoji"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_registered_model_under_mlflow_serving(model_dir, photos, tmp_path):
    from facslab.registry import log_predictor
    from facslab.tracking import setup_tracking

    os.environ["FACSLAB_MLRUNS"] = str(tmp_path / "mlruns")
    try:
        uri = setup_tracking(None, "serving")
    finally:
        os.environ.pop("FACSLAB_MLRUNS")
    with mlflow.start_run():
        info = log_predictor(AUPredictor.load(model_dir), "served")
    MlflowClient().set_registered_model_alias("served", "champion", info.registered_model_version)
    assert info.signature.inputs.input_names() == ["image"]  # what serving and the UI show a caller
    port = _free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "serve", "-m", "models:/served@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        # mlflow starts `uvicorn` by name: the virtualenv's bin must be on PATH, as when it is activated
        env={**os.environ, "MLFLOW_TRACKING_URI": uri,
             "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                time.sleep(1)
        encoded = base64.b64encode((photos / "one.png").read_bytes()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"dataframe_records": [{"image": encoded}]}).encode(),
            headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        misnamed = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"dataframe_records": [{"img": encoded}]}).encode(),
            headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(misnamed, timeout=60)
        assert refused.value.code == 400 and "image" in refused.value.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = answer["predictions"]
    assert len(rows) == 1 and rows[0]["emoji"] and "AU12" in rows[0] and 0 <= rows[0]["AU12"] <= 1
    assert rows[0]["left_eye_closed"] is False and isinstance(rows[0]["aus"], str)
