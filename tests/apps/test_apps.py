"""The apps on real photographs: `facslab emoji` and `facslab live` (serving: test_serving.py)."""

import csv
import json
import os

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from facslab.analysis import FaceAnalyzer
from facslab.cli import main
from facslab.live import FRAME_COLUMNS
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    # the frame's columns, the eyes, the emoji, then the AU model's own (declared by its predictor)
    assert list(rows[0]) == list(FRAME_COLUMNS + FaceAnalyzer([AUPredictor.load(model_dir)]).column_names())
    assert [int(r["frame"]) for r in rows] == list(range(1, 25))  # one row per face per frame
    assert {r["face_id"] for r in rows} == {"0"} and all(r["success"] == "1" for r in rows)
    assert {"AU01_c", "AU23_c", "AU26_c", "AU45_c"} <= set(rows[0]) and rows[0]["emoji"]




@pytest.mark.slow
def test_any_model_joins_the_apps_with_also_and_its_answer_follows_its_declaration(model_dir, photos, tmp_path,
                                                                                    capsys):
    """`--also` takes models of any task: a valence/arousal model adds its JSON fields and CSV
    columns beside the AU model's; the same model twice is one line, not a traceback."""
    import torch

    from facslab.predictor import ValenceArousalPredictor
    from lightning_modules.valence_arousal import ValenceArousalRegressor

    torch.manual_seed(0)
    va = ValenceArousalPredictor(ValenceArousalRegressor(unfrozen_blocks=0, image_size=32)).save(tmp_path / "va")
    assert main(["emoji", str(photos / "one.png"), "--model", str(model_dir), "--also+", str(va), "--json"]) == 0
    face = json.loads(capsys.readouterr().out)[0]
    assert -1 <= face["valence"] <= 1 and face["emoji"] and [s["task"] for s in face["said"]] == ["au", "valence_arousal"]
    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 4, (320, 240)))
    table = tmp_path / "frames.csv"
    assert main(["live", "--source", str(video), "--model", str(va), "--csv", str(table), "--quiet"]) == 0
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # a valence/arousal model alone: its own columns, the eyes, and no emoji (no model decides AUs)
    assert rows and list(rows[0]) == list(FRAME_COLUMNS) + ["ear_left", "ear_right", "eye_left_closed",
                                                            "eye_right_closed", "valence", "arousal"]
    capsys.readouterr()
    assert main(["emoji", str(photos / "one.png"), "--model", str(va), "--also+", str(va)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "answer the same columns (valence, arousal)" in error[0], error
