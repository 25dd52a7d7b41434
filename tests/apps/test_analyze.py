"""``facslab analyze``: whole videos and folders of frames offline, one CSV per source, resumable."""

from __future__ import annotations

import csv

import numpy as np
import skimage.data
from PIL import Image

from facslab.synth.video import photo_frames, write_mp4


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_analyze_writes_a_row_per_frame_for_every_source_and_a_rerun_skips_finished_ones(model_dir, tmp_path, capsys):
    from facslab.cli import main

    video = write_mp4(tmp_path / "talk.mp4", photo_frames(skimage.data.astronaut(), 12, (320, 240)))
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(photo_frames(skimage.data.astronaut(), 4, (320, 240), seed=1)):
        Image.fromarray(frame).save(folder / f"{k:03d}.png")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(folder / "004.png")  # no face in it
    (folder / "005.png").write_bytes(b"not a png")  # a frame that does not decode
    Image.fromarray(next(photo_frames(skimage.data.astronaut(), 1, (320, 240)))).save(folder / "006.png")
    out = tmp_path / "csv"
    args = ["analyze", str(video), str(folder), str(tmp_path / "missing.mp4"), "--csv", str(out), "--model",
            str(model_dir), "--emotion_model", "none", "--quiet", "--idle_every", "1"]

    assert main(args) == 2  # the missing video: one line, the other two still analysed
    said = capsys.readouterr()
    assert [line for line in said.err.splitlines() if "error" in line] == [
        f"facslab analyze: error: {tmp_path / 'missing.mp4'}: no such video file"]
    talk = _rows(out / "talk.csv")
    assert [int(r["frame"]) for r in talk] == list(range(1, 13))  # a row per frame, one face in each
    assert all(r["success"] == "1" for r in talk) and len({r["face_id"] for r in talk}) == 1
    frames = _rows(out / "frames.csv")
    # 6 decoded frames (the broken one skipped and said), the empty one with success 0 and no values
    assert [int(r["frame"]) for r in frames] == [1, 2, 3, 4, 5, 7]
    assert [r["success"] for r in frames] == ["1", "1", "1", "1", "0", "1"]
    assert frames[4]["face_id"] == "" and frames[4]["AU12_c"] == ""
    assert "1 frame(s) did not decode" in said.out and not list(out.glob("*.partial"))

    written = (out / "talk.csv").stat().st_mtime_ns
    (out / "frames.csv").rename(out / "frames.csv.partial")  # as a run stopped in the middle of it leaves it
    assert main(args[:3] + args[4:]) == 0
    said = capsys.readouterr().out
    assert "talk.csv exists: skipped" in said and (out / "talk.csv").stat().st_mtime_ns == written
    assert len(_rows(out / "frames.csv")) == 6 and not list(out.glob("*.partial"))


def test_analyze_batches_many_frames_faces_and_writes_the_rows_live_writes(emotion_model_dir, tmp_path, monkeypatch,
                                                                           capsys):
    """The batched path (decoded ahead, the models run on many frames' faces at once) gives the
    live loop's CSV: two faces a frame, a windowed AU model (its windows advance frame by frame
    inside a batch) and the emotion model."""
    import torch

    from facslab.cli import main
    from facslab.predictor import EmotionPredictor, TemporalAUPredictor
    from lightning_modules.temporal import TemporalAUDetector

    torch.manual_seed(0)
    network = TemporalAUDetector("mobilenet3d", window=3, width=8, image_size=32)
    for module in network.modules():  # untrained, its outputs hardly follow the frames: now they do
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_var.fill_(1e-4)
    temporal = TemporalAUPredictor(network).save(tmp_path / "temporal")
    pairs = zip(photo_frames(skimage.data.astronaut(), 11, (320, 240)),
                photo_frames(skimage.data.astronaut(), 11, (320, 240), seed=3))
    video = write_mp4(tmp_path / "pair.mp4", [np.hstack(pair) for pair in pairs])
    calls = []
    for cls in (TemporalAUPredictor, EmotionPredictor):
        def recording(self, crops, original=cls.predict_aligned):
            calls.append((self.task, len(crops)))
            return original(self, crops)
        monkeypatch.setattr(cls, "predict_aligned", recording)
    models = ["--model", str(temporal), "--emotion_model", str(emotion_model_dir), "--quiet", "--detect_every", "4"]

    assert main(["live", "--source", str(video), "--csv", str(tmp_path / "live.csv"), *models]) == 0
    live_calls, calls[:] = list(calls), []
    assert main(["analyze", str(video), "--csv", str(tmp_path / "out"), "--batch", "4", *models]) == 0
    capsys.readouterr()

    live, batched = _rows(tmp_path / "live.csv"), _rows(tmp_path / "out" / "pair.csv")
    assert [(r["frame"], r["face_id"]) for r in batched] == [(r["frame"], r["face_id"]) for r in live]
    faces = [sum(r["frame"] == str(f) and r["success"] == "1" for r in live) for f in range(1, 12)]
    assert sum(n == 2 for n in faces) >= 6 and {r["face_id"] for r in live} == {"0", "1"}
    for ours, theirs in zip(batched, live):
        for column, value in theirs.items():
            try:
                assert abs(float(ours[column]) - float(value)) <= 2e-4, column
            except ValueError:
                assert ours[column] == value, column
    # live: each model once a frame on its faces; analyze: once per batch of 4 frames
    assert live_calls == [(task, n) for n in faces if n for task in ("au_temporal", "emotion")]
    batches = [sum(faces[k:k + 4]) for k in range(0, 11, 4)]
    assert calls == [(task, n) for n in batches if n for task in ("au_temporal", "emotion")]


def test_analyze_refuses_background_detection(model_dir, tmp_path):
    """Rows that would depend on the threads' pace are refused, and the video is let go."""
    from dataclasses import replace

    import pytest

    from facslab.analysis import FaceAnalyzer
    from facslab.errors import ConfigError
    from facslab.live import FAST
    from facslab.video_io import open_source
    from facslab.offline import analyze_video
    from facslab.predictor import AUPredictor

    video = write_mp4(tmp_path / "talk.mp4", photo_frames(skimage.data.astronaut(), 3, (320, 240)))
    capture = open_source(str(video))
    with pytest.raises(ConfigError, match="analyze detects inline"):
        analyze_video(FaceAnalyzer([AUPredictor.load(model_dir)]), capture, tmp_path / "out.csv",
                      replace(FAST, detect_in_background=True))
    assert not capture.isOpened() and not (tmp_path / "out.csv").exists()
