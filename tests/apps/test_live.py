"""The real-time path: the ONNX export and its parity with PyTorch, the model runtimes through the
CLI, and the live loop's levers (grey detection without upsampling and its upsampled retry, the
rate limit while no face is in view), each against the path before them."""

import json

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from facslab.analysis import FaceAnalyzer
from facslab.cli import main
from facslab.live import FAST, LEGACY, run_live
from facslab.onnx_export import ONNX_TOLERANCE, ExportError
from facslab.predictor import CONFIG_FILE, ONNX_FILE, AUPredictor
from facslab.synth.video import photo_frames, write_mp4
from lightning_modules.au_detector import AUDetector


def _predictor(image_size: int = 32) -> AUPredictor:
    torch.manual_seed(1)
    return AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, hidden_size=16, image_size=image_size))


def test_the_onnx_export_gives_the_pytorch_probabilities_on_a_real_face(tmp_path, astronaut):
    folder = _predictor().save(tmp_path / "model")
    recorded = json.loads((folder / CONFIG_FILE).read_text())["onnx"]
    assert (folder / ONNX_FILE).exists() and 0 <= recorded["max_abs_logit_difference"] <= ONNX_TOLERANCE
    by_torch = FaceAnalyzer([AUPredictor.load(folder, runtime="torch")]).analyze(astronaut)
    onnx_predictor = AUPredictor.load(folder, runtime="onnx", threads=1)
    assert onnx_predictor.runtime == "onnx" and AUPredictor.load(folder).runtime == "onnx"  # auto on a CPU
    by_onnx = FaceAnalyzer([onnx_predictor]).analyze(astronaut)
    assert len(by_torch) == len(by_onnx) == 1
    difference = np.abs(by_torch[0].probabilities - by_onnx[0].probabilities).max()
    assert difference <= ONNX_TOLERANCE, difference
    # a batch of another size than the export's example
    crops = np.stack([np.asarray(cv2.resize(astronaut[k * 40:k * 40 + 200, 150:350], (32, 32))) for k in range(5)])
    assert np.abs(onnx_predictor.predict_aligned(crops) - AUPredictor.load(folder, runtime="torch")
                  .predict_aligned(crops)).max() <= ONNX_TOLERANCE


def test_an_export_that_differs_from_pytorch_is_refused_and_removed(tmp_path, monkeypatch):
    import facslab.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "ONNX_TOLERANCE", 0.0)  # float reordering always differs a little
    with pytest.raises(ExportError, match="differ from PyTorch"):
        _predictor().save(tmp_path / "model")
    assert not (tmp_path / "model" / ONNX_FILE).exists()


def test_onnx_runtime_asked_for_a_model_without_export_says_what_to_do(tmp_path):
    folder = _predictor().save(tmp_path / "model", onnx=False)
    with pytest.raises(FileNotFoundError, match="--runtime torch"):
        AUPredictor.load(folder, runtime="onnx")
    assert AUPredictor.load(folder).runtime == "torch"  # auto falls back only where nothing was asked


def test_emoji_cli_gives_the_same_answer_with_either_runtime(model_dir, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(image)
    answers = {}
    for runtime in ("torch", "onnx"):
        assert main(["emoji", str(image), "--model", str(model_dir), "--json", "--runtime", runtime,
                     "--threads", "1"]) == 0
        answers[runtime] = json.loads(capsys.readouterr().out)[0]
    assert answers["torch"]["emoji"] == answers["onnx"]["emoji"] and answers["torch"]["aus"] == answers["onnx"]["aus"]
    for au, p in answers["torch"]["probabilities"].items():
        assert abs(p - answers["onnx"]["probabilities"][au]) <= 1e-4  # rounded to 4 places in the JSON


def _video(tmp_path, name, frames) -> str:
    return str(write_mp4(tmp_path / name, frames, fps=30))


@pytest.fixture(scope="module")
def analyzer(model_dir):
    return FaceAnalyzer([AUPredictor.load(model_dir, threads=1)])


def test_the_fast_path_follows_a_face_in_every_frame_with_a_detection_every_tenth(analyzer, tmp_path):
    video = _video(tmp_path, "astronaut.mp4", photo_frames(skimage.data.astronaut(), 30, (640, 480)))
    fast = run_live(analyzer, video, progress=False, settings=FAST, csv_path=str(tmp_path / "fast.csv"))
    legacy = run_live(analyzer, video, progress=False, settings=LEGACY, csv_path=str(tmp_path / "legacy.csv"))
    assert (fast.frames, fast.faces, fast.detections) == (30, 30, 3)
    assert (legacy.frames, legacy.faces, legacy.detections) == (30, 30, 3)
    # grey landmarks and the BGR frame give the model nearly the crops of the RGB path
    columns = [c for c in np.genfromtxt(tmp_path / "fast.csv", delimiter=",", names=True, dtype=None,
                                        encoding="utf-8").dtype.names if c.endswith("_p")]
    fast_p = np.genfromtxt(tmp_path / "fast.csv", delimiter=",", names=True, encoding="utf-8")[columns]
    legacy_p = np.genfromtxt(tmp_path / "legacy.csv", delimiter=",", names=True, encoding="utf-8")[columns]
    gap = max(np.abs(fast_p[c] - legacy_p[c]).mean() for c in columns)
    assert gap < 0.05, gap


class _Recorded:
    """An OpenCV capture or writer that records the thread of each read or write, and (writer)
    fails at write number ``fail_at``."""

    def __init__(self, inner, threads: list, fail_at: int | None = None):
        self.inner, self.threads, self.fail_at = inner, threads, fail_at

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read(self):
        import threading

        self.threads.append(threading.current_thread().name)
        return self.inner.read()

    def write(self, frame):
        import threading

        self.threads.append(threading.current_thread().name)
        if self.fail_at is not None and len(self.threads) >= self.fail_at:
            raise OSError("disk full")
        self.inner.write(frame)


def test_codec_threads_decode_and_encode_beside_the_loop_and_change_no_frame(analyzer, tmp_path, monkeypatch):
    """With ``codec_threads`` a video file's frames are read in the decoder's thread and the annotated
    video is written in the encoder's; the CSV and every written frame are those of the inline path.
    The encoder's error reaches the loop's caller."""
    from dataclasses import replace

    import facslab.live
    import facslab.video_io

    video = _video(tmp_path, "astronaut.mp4", photo_frames(skimage.data.astronaut(), 24, (640, 480)))
    drawn = facslab.live.annotate  # without the measured frame rate, the frames of two runs can be equal
    monkeypatch.setattr(facslab.live, "annotate", lambda frame, results, fps=None, **options: drawn(frame, results, **options))
    opened = cv2.VideoWriter
    threads = {}
    for codec in (False, True):
        reads, writes = threads.setdefault(codec, ([], []))
        monkeypatch.setattr(facslab.video_io.cv2, "VideoWriter", lambda *a, _w=writes: _Recorded(opened(*a), _w))
        stats = run_live(analyzer, _Recorded(cv2.VideoCapture(video), reads), out=str(tmp_path / f"{codec}.mp4"),
                         csv_path=str(tmp_path / f"{codec}.csv"), progress=False,
                         settings=replace(FAST, codec_threads=codec))
        assert stats.frames == 24
    assert set(threads[False][0]) == set(threads[False][1]) == {"MainThread"}
    assert set(threads[True][0]) == {"facslab-decode"} and set(threads[True][1]) == {"facslab-encode"}
    assert len(threads[True][1]) == len(threads[False][1]) == 24
    assert (tmp_path / "True.csv").read_text() == (tmp_path / "False.csv").read_text()
    written = {codec: cv2.VideoCapture(str(tmp_path / f"{codec}.mp4")) for codec in (False, True)}
    for _ in range(24):
        (ok_inline, inline), (ok_threaded, threaded) = written[False].read(), written[True].read()
        assert ok_inline and ok_threaded and np.array_equal(inline, threaded)
    # a camera (its frame count -1) is read when the loop wants a frame: the newest, not one queued
    camera_reads = []
    camera = _Recorded(cv2.VideoCapture(video), camera_reads)
    camera.get = lambda prop: -1.0 if prop == cv2.CAP_PROP_FRAME_COUNT else camera.inner.get(prop)
    assert run_live(analyzer, camera, max_frames=6, progress=False, settings=FAST).frames == 6
    assert set(camera_reads) == {"MainThread"}
    for capture in written.values():
        capture.release()
    # the writer's error reaches the caller once, in either mode, and the CSV written so far is closed
    for codec in (False, True):
        monkeypatch.setattr(facslab.video_io.cv2, "VideoWriter", lambda *a: _Recorded(opened(*a), [], fail_at=5))
        with pytest.raises(OSError, match="disk full"):
            run_live(analyzer, video, out=str(tmp_path / "failing.mp4"), csv_path=str(tmp_path / f"failing{codec}.csv"),
                     progress=False, settings=replace(FAST, codec_threads=codec))
        rows = (tmp_path / f"failing{codec}.csv").read_text().splitlines()
        assert rows[0].startswith("frame,face_id") and len(rows) >= 5, rows[:2]


def test_a_face_too_small_for_hog_without_upsampling_is_found_by_the_retry(analyzer, tmp_path):
    from facslab.faces.detect import detect_faces

    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[100:330, 200:430] = cv2.resize(skimage.data.astronaut(), (230, 230), interpolation=cv2.INTER_AREA)
    assert detect_faces(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY), "hog", 0, 0.5) == []  # the retry is needed
    stats = run_live(analyzer, _video(tmp_path, "small.mp4", [canvas] * 6), progress=False, settings=FAST)
    assert stats.faces == 6


def test_with_no_face_in_view_detection_is_rate_limited(analyzer, tmp_path):
    empty = cv2.resize(skimage.data.coffee(), (640, 480))
    video = _video(tmp_path, "coffee.mp4", [empty] * 20)
    fast = run_live(analyzer, video, progress=False, settings=FAST)
    legacy = run_live(analyzer, video, progress=False, settings=LEGACY)
    assert fast.faces == legacy.faces == 0
    assert legacy.detections == 20  # the old path: a full detection on every frame
    assert fast.detections == 20 // FAST.idle_every  # frames 0, 5, 10, 15


def test_an_emotion_model_alone_runs_the_apps_with_no_aus_and_no_emoji(emotion_model_dir, tmp_path, capsys):
    """Acting Mirror's use: only the real FER-2013 port, no AU model. The CSV has the eyes and the
    emotion columns and nothing of AUs; the JSON has the emotion and no emoji match."""
    import csv

    from facslab.live import FRAME_COLUMNS

    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 4, (320, 240)))
    table = tmp_path / "frames.csv"
    assert main(["live", "--source", str(video), "--model", str(emotion_model_dir), "--csv", str(table), "--quiet"]) == 0
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert rows and list(rows[0]) == list(FRAME_COLUMNS) + ["ear_left", "ear_right", "eye_left_closed", "eye_right_closed",
                                                           "emotion"] + [f"emotion_{c}" for c in classes]
    assert {row["emotion"] for row in rows} == {"happy"}  # the astronaut smiles
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    capsys.readouterr()
    assert main(["emoji", str(photo), "--model", str(emotion_model_dir), "--json"]) == 0
    face = json.loads(capsys.readouterr().out)[0]
    assert face["emotion"]["label"] == "happy" and "emoji" not in face and "aus" not in face


def _two_astronauts(canvas_size=(480, 640)) -> np.ndarray:
    """A frame with the astronaut twice: 300 and 200 px photographs side by side."""
    canvas = np.full((*canvas_size, 3), 128, np.uint8)
    photo = skimage.data.astronaut()
    canvas[60:360, 20:320] = cv2.resize(photo, (300, 300), interpolation=cv2.INTER_AREA)
    canvas[100:300, 400:600] = cv2.resize(photo, (200, 200), interpolation=cv2.INTER_AREA)
    return canvas


def test_live_charts_the_largest_faces_emotions_over_time_with_only_the_fer_port(emotion_model_dir, tmp_path):
    """Acting Mirror's graph through ``facslab live --chart`` with only the real FER-2013 port: the
    live CSV and the chart's CSV have a row per frame (empty where no face is in view, so it lines up with the
    video), and on every other frame the values of the largest face's row of the live CSV; the PNG
    is written; the strip chart is drawn into the video's bottom-left corner."""
    import csv

    from facslab.faces.detect import MIN_CONFIDENCE, detect_faces
    from facslab.ports.keras_fer import FER2013_CLASSES

    faces, empty = _two_astronauts(), cv2.resize(skimage.data.coffee(), (640, 480))
    frames = [faces] * 5 + [empty] * 3 + [faces] * 5
    video = write_mp4(tmp_path / "in.mp4", frames)
    table, png, out = tmp_path / "frames.csv", tmp_path / "chart.png", tmp_path / "out.mp4"
    assert main(["live", "--source", str(video), "--model", str(emotion_model_dir), "--csv", str(table),
                 "--chart", str(png), "--out", str(out), "--detect_every", "1", "--idle_every", "1", "--upsample", "1",
                 "--quiet"]) == 0
    with open(table, newline="", encoding="utf-8") as handle:
        live_rows = {(row["frame"], row["face_id"]): row for row in csv.DictReader(handle)}
    # the live CSV has a row for every frame, as OpenFace writes it: success 0 and no values without a face
    assert sorted({int(frame) for frame, _ in live_rows}) == list(range(1, len(frames) + 1))
    for (frame, face_id), row in live_rows.items():
        if 6 <= int(frame) <= 8:
            assert face_id == "" and row["success"] == "0" and row["emotion"] == "" and row["ear_left"] == "", row
        else:
            assert face_id != "" and row["success"] == "1" and row["emotion"] in FER2013_CLASSES, row
    with open(png.with_suffix(".csv"), newline="", encoding="utf-8") as handle:
        chart_rows = list(csv.DictReader(handle))
    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert list(chart_rows[0]) == ["frame", "timestamp", "face_id", *classes]
    assert [int(row["frame"]) for row in chart_rows] == list(range(1, len(frames) + 1))
    # the tracker numbers faces in detection order, and anew after the gap (0, 1, then 2, 3)
    found = detect_faces(cv2.cvtColor(faces, cv2.COLOR_RGB2GRAY), "hog", 1, MIN_CONFIDENCE)
    assert len(found) == 2, found
    largest = int(np.argmax([(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in found]))
    assert sum(1 for key in live_rows if key[0] == "1") == 2  # both faces are in the live CSV
    for row in chart_rows:
        if 6 <= int(row["frame"]) <= 8:  # the coffee: no face, no values
            assert row["face_id"] == "" and all(row[c] == "" for c in classes), row
            continue
        assert row["face_id"] == str(largest if int(row["frame"]) <= 5 else 2 + largest), row
        largest_id = row["face_id"]
        face = live_rows[(row["frame"], largest_id)]
        assert [float(row[c]) for c in classes] == [float(face[f"emotion_{c}"]) for c in classes]
    assert cv2.imread(str(png)) is not None
    capture = cv2.VideoCapture(str(out))
    drawn = [capture.read()[1] for _ in frames]
    capture.release()
    # the strip chart's panel (bottom-left, 320 x 100 at 8 px from the edges) darkens the frame
    # under it and draws a line per class: the last face frame's panel holds coloured pixels
    panel = drawn[-1][480 - 108:480 - 8, 8:328].astype(int)
    assert panel.mean() < 0.6 * cv2.cvtColor(faces, cv2.COLOR_RGB2BGR)[480 - 108:480 - 8, 8:328].mean()
    assert (panel.max(axis=2) - panel.min(axis=2) > 60).sum() > 50


def test_a_chart_asked_of_models_without_outputs_over_time_is_one_line(model_dir, tmp_path, capsys):
    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 2, (320, 240)))
    assert main(["live", "--source", str(video), "--model", str(model_dir), "--chart", str(tmp_path / "c.png"),
                 "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(err) == 1 and "--chart" in err[0] and "the models given: au" in err[0], err
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("chart, problem", [("nowhere/c.png", "folder does not exist"), ("c.txt", "ending in .png"),
                                            ("frames.png", "the --csv file"), ("shots.png", "is a folder")])
def test_a_chart_that_could_not_be_saved_is_one_line_before_any_frame(emotion_model_dir, tmp_path, capsys, chart,
                                                                      problem):
    """A chart into a missing folder, not a PNG, whose table would overwrite the --csv file
    (frames.png's is frames.csv), or a folder: one line before the video is read."""
    video = write_mp4(tmp_path / "in.mp4", photo_frames(skimage.data.astronaut(), 2, (320, 240)))
    table = tmp_path / "frames.csv"
    if problem == "is a folder":
        (tmp_path / chart).mkdir()
    assert main(["live", "--source", str(video), "--model", str(emotion_model_dir), "--chart", str(tmp_path / chart),
                 "--csv", str(table), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0], err
    assert not table.exists()  # said before the video was read


def test_the_nearby_tracker_follows_moving_faces_and_drops_them_when_they_leave(model_dir, tmp_path):
    """``--tracker nearby`` with one detection at the start: HOG run near each face's last box
    follows two drifting faces under their ids, loses both when the picture changes to a coffee cup
    (rows with success 0), and the faces coming back are found again, under new ids."""
    import csv

    pairs = [np.hstack(pair) for pair in zip(photo_frames(skimage.data.astronaut(), 6, (320, 240)),
                                             photo_frames(skimage.data.astronaut(), 6, (320, 240), seed=3))]
    coffee = cv2.resize(skimage.data.coffee(), (640, 240))
    video = write_mp4(tmp_path / "in.mp4", pairs + [coffee] * 3 + pairs[:4])
    table = tmp_path / "nearby.csv"
    assert main(["live", "--source", str(video), "--model", str(model_dir), "--csv", str(table), "--tracker", "nearby",
                 "--detect_every", "100", "--idle_every", "1", "--quiet"]) == 0
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["frame"]), r["face_id"]) for r in rows] == [(f, i) for f in range(1, 7) for i in ("0", "1")] + \
        [(f, "") for f in (7, 8, 9)] + [(f, i) for f in range(10, 14) for i in ("2", "3")]
    # the confidence column is HOG's score near the face on every frame, not the detection's carried on
    assert len({r["confidence"] for r in rows if r["face_id"] == "0"}) == 6


def test_background_detection_never_holds_a_frame_and_its_faces_join_the_tracks(model_dir, tmp_path, monkeypatch):
    """``--detection background`` with the nearby tracker, whose HOG runs beside the detection's and
    a detector slowed to take several frames: every detection runs on the detection thread; the
    first is waited for and its face followed; a face that comes into view joins only when a later
    detection ends, several frames after its own frame (inline, it would join on the detection's
    frame, 11), under a new id while the first keeps its own."""
    import csv
    import threading
    import time

    import facslab.live

    threads, detect = [], facslab.live.detect_faces

    def slow(image, *args, **kwargs):
        if image.shape[0] > 8:  # not the warm-up
            threads.append(threading.current_thread().name)
            time.sleep(0.3)
        return detect(image, *args, **kwargs)

    monkeypatch.setattr(facslab.live, "detect_faces", slow)
    both = _two_astronauts()
    one = both.copy()
    one[100:300, 400:600] = 128  # the smaller astronaut not yet in view
    # long enough for two 0.3 s detections however fast the loop runs (alone on this machine,
    # 150 frames of both went by before the second detection ended)
    frames = 400
    video = write_mp4(tmp_path / "in.mp4", [one] * 10 + [both] * (frames - 10))
    table = tmp_path / "rows.csv"
    assert main(["live", "--source", str(video), "--model", str(model_dir), "--csv", str(table), "--tracker", "nearby",
                 "--detection", "background", "--detect_every", "5", "--upsample", "1", "--quiet"]) == 0
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    ids = [sorted(r["face_id"] for r in rows if int(r["frame"]) == f) for f in range(1, frames + 1)]
    joined = ids.index(["0", "1"])  # 0-based; when depends on the threads' pace
    assert ids[:joined] == [["0"]] * joined and ids[joined:] == [["0", "1"]] * (frames - joined), ids
    assert 10 < joined < frames
    assert len(threads) >= 2 and all(name.startswith("facslab-detect") for name in threads), threads


def test_the_nearby_tracker_takes_hog_detections_only(model_dir, tmp_path, capsys):
    video = write_mp4(tmp_path / "in.mp4", [_two_astronauts()] * 3)
    assert main(["live", "--source", str(video), "--model", str(model_dir), "--tracker", "nearby", "--detector",
                 "haar", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--tracker nearby follows faces with HOG: it takes --detector hog, not haar (use --tracker correlation)")
