"""OpenCV's Haar cascades as a detector of the apps (Acting Mirror's detector), through the CLI:
the frontal cascade finds the astronaut where HOG does, the profile cascade finds the cameraman's
three-quarter face that neither HOG nor the frontal cascade finds, in the photograph and in its
mirror image, and a video runs emotion-only with it."""

import csv
import json

import cv2
import pytest
import skimage.data

from facslab.cli import main
from facslab.faces.detect import box_iou
from facslab.synth.video import photo_frames, write_mp4


def _save(path, image):
    cv2.imwrite(str(path), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return str(path)


def _boxes(capsys, *args) -> tuple[int, list[list[int]]]:
    status = main(["emoji", *args, "--json"])
    return status, [face["box"] for face in json.loads(capsys.readouterr().out or "[]")]


def test_the_frontal_cascade_finds_the_astronaut_where_hog_does(emotion_model_dir, tmp_path, capsys):
    photo = _save(tmp_path / "astronaut.png", skimage.data.astronaut())
    model = ["--model", str(emotion_model_dir)]
    status_hog, hog = _boxes(capsys, photo, *model)
    status_haar, haar = _boxes(capsys, photo, *model, "--detector", "haar")
    assert status_hog == status_haar == 0 and len(hog) == len(haar) == 1
    assert box_iou(hog[0], haar[0]) > 0.5, (hog, haar)


def test_the_profile_cascade_finds_a_turned_face_in_the_photograph_and_its_mirror(emotion_model_dir, tmp_path, capsys):
    camera = skimage.data.camera()  # the cameraman looks three-quarters to the image's left
    width = camera.shape[1]
    model = ["--model", str(emotion_model_dir)]
    photo, mirror = _save(tmp_path / "camera.png", camera), _save(tmp_path / "mirror.png", camera[:, ::-1].copy())
    for detector in ("hog", "haar"):
        assert _boxes(capsys, photo, *model, "--detector", detector) == (1, [])  # no face: exit status 1
    status, found = _boxes(capsys, photo, *model, "--detector", "haar-profile")
    status_mirror, found_mirror = _boxes(capsys, mirror, *model, "--detector", "haar-profile")
    assert status == status_mirror == 0 and len(found) == len(found_mirror) == 1, (found, found_mirror)
    left, top, right, bottom = found_mirror[0]
    assert box_iou(found[0], [width - right, top, width - left, bottom]) > 0.9, (found, found_mirror)
    x = (found[0][0] + found[0][2]) / 2  # the face, not the camera or the tripod: upper middle
    assert 0.25 * width < x < 0.65 * width and found[0][3] < 0.5 * camera.shape[0], found


def test_live_runs_emotion_only_with_the_haar_detector(emotion_model_dir, tmp_path):
    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 6, (640, 480)))
    table = tmp_path / "frames.csv"
    assert main(["live", "--source", str(video), "--model", str(emotion_model_dir), "--detector", "haar",
                 "--csv", str(table), "--quiet"]) == 0
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["frame"]) for row in rows] == list(range(1, 7))
    assert {row["emotion"] for row in rows} == {"happy"}


def test_an_opencv_without_cascades_is_one_line_naming_the_fix(emotion_model_dir, tmp_path, capsys, monkeypatch):
    import facslab.faces.detect as detect

    monkeypatch.delattr(cv2, "CascadeClassifier")
    detect._cascade.cache_clear()
    try:
        status = main(["emoji", _save(tmp_path / "a.png", skimage.data.astronaut()), "--model",
                       str(emotion_model_dir), "--detector", "haar"])
    finally:
        detect._cascade.cache_clear()
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert status == 2 and len(err) == 1 and "opencv-contrib-python-headless" in err[0], err


@pytest.mark.parametrize("method", ["haar", "haar-profile"])
def test_nothing_is_found_on_photographs_without_faces(method):
    from facslab.faces.detect import MIN_CONFIDENCE, detect_faces

    # the coffee cup at 1280x960 gave the frontal cascade a false face of level weight 1.2
    for image in (skimage.data.coffee(), cv2.resize(skimage.data.coffee(), (1280, 960)), skimage.data.chelsea(),
                  skimage.data.rocket()):
        assert detect_faces(image, method, 1, MIN_CONFIDENCE) == []
