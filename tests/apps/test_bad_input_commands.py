"""Bad input to the apps and the chain's commands, through the command line: videos, models,
images, sweeps, the registry, the report, servers, settings and the demo's files. One line naming
the file and the problem, exit status 2, no traceback; what was done before is kept."""

from __future__ import annotations

import csv

import pytest

from conftest import run_cli
from refusals import facslab, refused


def _mjpeg_video(path, frames: int, corrupt: int | None = None):
    """An MJPEG AVI of a real photograph; with ``corrupt``, that frame's (0-based) JPEG data zeroed."""
    import cv2
    import skimage.data

    from facslab.synth.video import photo_frames

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for frame in photo_frames(skimage.data.astronaut(), frames, (640, 480)):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    if corrupt is not None:
        data = bytearray(path.read_bytes())
        starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]  # each frame's JPEG
        assert len(starts) == frames
        data[starts[corrupt] + 2:starts[corrupt + 1] - 16] = bytes(starts[corrupt + 1] - 18 - starts[corrupt])
        path.write_bytes(bytes(data))
    return path


@pytest.mark.slow
def test_videos_and_cameras_that_cannot_be_opened_are_one_line(model_dir, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    for source, words in ((str(tmp_path / "missing.mp4"), ("missing.mp4", "no such video file")),
                          (str(text), ("notes.mp4", "not a video OpenCV can decode")),
                          ("7", ("camera 7", "no camera with this index"))):
        out = facslab(run_cli, "live", "--source", source, "--model", str(model_dir), "--quiet", tmp_path=tmp_path)
        refused(out, *words, command="live")


@pytest.mark.slow
def test_a_corrupt_frame_in_the_middle_is_skipped_counted_and_the_rest_kept(model_dir, tmp_path):
    import cv2

    video = _mjpeg_video(tmp_path / "in.avi", 16, corrupt=7)
    out, table = tmp_path / "out.mp4", tmp_path / "frames.csv"
    run = facslab(run_cli, "live", "--source", str(video), "--model", str(model_dir), "--out", str(out), "--csv", str(table),
                  "--quiet", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "15 frames, 15 faces" in run.stdout
    skipped = [line for line in run.stderr.splitlines() if not line.startswith("note: this model was trained only")]
    assert skipped == [f"{video}: 1 frame(s) did not decode and were skipped (frame 8); "
                                  "the frames around them are in the outputs"]
    with open(table, newline="", encoding="utf-8") as handle:
        frames = [int(row["frame"]) for row in csv.DictReader(handle)]
    assert frames == [k for k in range(1, 17) if k != 8]  # frame numbers stay those of the video
    capture = cv2.VideoCapture(str(out))
    written = 0
    while capture.read()[0]:
        written += 1
    assert written == 15


@pytest.mark.slow
def test_model_arguments_that_are_not_usable_models_are_one_line(model_dir, tmp_path, cli):
    image = tmp_path / "face.png"
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()).save(image)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    # an MLflow model facslab did not log, and a run of the apps' store that logged no model
    import mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.pyfunc.save_model(tmp_path / "plain_model", python_model=Echo())
    (tmp_path / "store").mkdir()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    experiment = client.create_experiment("facslab", artifact_location=(tmp_path / "store" / "artifacts").as_uri())
    run = client.create_run(experiment).info.run_id
    cases = [
        (("--model", str(tmp_path / "plain_model")), ("plain_model", "an MLflow model, but not one facslab logged")),
        (("--model", f"runs:/{run}/model"), (f"runs:/{run}/model", "not in the MLflow store", "MLmodel")),
        (("--model", str(tmp_path / "nowhere")), ("nowhere", "model not found")),
        (("--model", str(empty)), ("empty_folder", "not a facslab model folder (no")),
        (("--model", str(model_dir / "model.onnx")), ("model.onnx", "a file, not a model")),
        (("--model", "models:/no-such-model@champion"), ("models:/no-such-model@champion", "not in the MLflow store")),
        (("--model", str(model_dir), "--emotion_model", str(model_dir)),
         (str(model_dir), "a model of the au task; --emotion_model takes one of the emotion task")),
        (("--model", str(model_dir), "--va_model", str(model_dir)),
         (str(model_dir), "a model of the au task; --va_model takes one of the valence_arousal task")),
    ]
    for arguments, words in cases:
        refused(facslab(cli, "emoji", str(image), *arguments, tmp_path=tmp_path), *words, command="emoji")


@pytest.mark.slow
def test_an_unreadable_image_among_good_ones_is_named_and_the_others_still_answered(model_dir, tmp_path, cli):
    import skimage.data
    from PIL import Image

    good = tmp_path / "face.png"
    Image.fromarray(skimage.data.astronaut()).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])
    for command, extra in (("emoji", ("--model", str(model_dir))), ("eyes", ())):
        out = facslab(cli, command, str(tmp_path / "missing.png"), str(good), str(broken), *extra, tmp_path=tmp_path)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert f"{good} face 0:" in out.stdout  # what could be done was done
        errors = [line for line in out.stderr.splitlines() if " error: " in line]
        assert errors[0] == f"facslab {command}: error: {tmp_path / 'missing.png'}: file not found", errors
        assert errors[1].startswith(f"facslab {command}: error: {broken}: ") and len(errors) == 2, errors


def _sweep_config(tmp_path, root, **lines: str):
    config = tmp_path / "sweep.yaml"
    config.write_text("\n".join([f"study: {lines.pop('study', 'bad-input')}", "n_trials: 1", "pruner: none",
                                 f"datamodule: {{class_path: CKPlusDataModule, init_args: {{root: {root}, image_size: 32, "
                                 f"n_folds: 2, cache_dir: {tmp_path / 'cache'}, progress: false}}}}",
                                 "model: {class_path: AUDetector, init_args: {backbone: resnet18}}", "train: {init_from: null, max_epochs: 1, progress: false}",
                                 *(f"{key}: {value}" for key, value in lines.items())]) + "\n")
    return config


@pytest.mark.slow
def test_a_sweep_on_a_missing_dataset_is_one_line_before_any_trial(tmp_path, cli):
    config = _sweep_config(tmp_path, tmp_path / "no-such-ckplus")
    line = refused(facslab(cli, "sweep", "--config", str(config), tmp_path=tmp_path), command="sweep")
    assert f"{tmp_path / 'no-such-ckplus' / 'cohn-kanade-images'}: CK+ image folder not found" in line
    assert not (tmp_path / "store" / "optuna" / "bad-input.journal").exists()  # no study, no trial was made


@pytest.mark.slow
def test_register_and_report_without_anything_to_use_are_one_line(ckplus, tmp_path, cli):
    config = _sweep_config(tmp_path, ckplus[0], study="never-run", register="{name: facslab-au, alias: champion}")
    refused(facslab(cli, "register", "--config", str(config), tmp_path=tmp_path), "no study never-run at",
            "run `facslab sweep` with this config first", command="register")
    unregistered = _sweep_config(tmp_path, ckplus[0], register="null")
    refused(facslab(cli, "register", "--config", str(unregistered), tmp_path=tmp_path), "register: null", command="register")
    refused(facslab(cli, "report", "--config.experiment", "nothing-here", "--config.output", str(tmp_path / "report"),
                    tmp_path=tmp_path), "experiment 'nothing-here'", "has no runs", command="report")


@pytest.mark.slow
def test_serve_and_services_on_a_port_in_use_and_generate_into_a_file_are_one_line(model_dir, tmp_path, cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(facslab(cli, "serve", "--model", str(model_dir), "--port", str(port), tmp_path=tmp_path),
                f"--port {port}: cannot listen on 127.0.0.1:{port}", command="serve")
        # before PostgreSQL is initialised: nothing is made in the services' folder
        refused(facslab(cli, "services", "up", "--folder", str(tmp_path / "services"), "--mlflow_port", str(port),
                        tmp_path=tmp_path), f"--mlflow_port {port}: cannot listen on 127.0.0.1:{port}", command="services")
        refused(facslab(cli, "services", "up", "--folder", str(tmp_path / "services"), "--postgres_port", str(port),
                        tmp_path=tmp_path), f"--postgres_port {port}: cannot listen on 127.0.0.1:{port}", command="services")
        assert not (tmp_path / "services").exists()
    target = tmp_path / "a-file"
    target.write_text("")
    refused(facslab(cli, "generate", "ckplus", str(target), tmp_path=tmp_path), str(target), "a file, not a folder",
            command="generate")
    refused(facslab(cli, "services", "up", "--folder", str(target), tmp_path=tmp_path), str(target), "a file, not a folder",
            command="services")


@pytest.mark.slow
def test_pretrain_and_au_emotion_on_a_missing_dataset_are_one_line(tmp_path, cli):
    missing = tmp_path / "no-such-dataset"
    pretrain = tmp_path / "pretrain.yaml"
    pretrain.write_text(f"data: {{root: {missing}, image_size: 32, cache_dir: {tmp_path / 'cache'}, progress: false}}\n"
                        "model: {backbone: resnet18}\ntrain: {max_epochs: 1, progress: false, init_from: null}\n")
    refused(facslab(cli, "pretrain", "--config", str(pretrain), tmp_path=tmp_path),
            f"{missing / 'list_landmarks_align_celeba.txt'}: file not found", command="pretrain")
    mapping = tmp_path / "au_emotion.yaml"
    mapping.write_text(f"datamodule: {{class_path: CKPlusEmotionDataModule, init_args: {{root: {missing}, image_size: 32, "
                       f"cache_dir: {tmp_path / 'cache'}, progress: false}}}}\nau_model: null\noutput: {tmp_path / 'out'}\n")
    refused(facslab(cli, "au-emotion", "--config", str(mapping), tmp_path=tmp_path),
            f"{missing / 'cohn-kanade-images'}: CK+ image folder not found", command="au-emotion")


#: a setting a datamodule or task refuses, through each command that builds one: (command, how to
#: make its arguments from the CK+ and CelebA roots and a folder, words of the one line)
BAD_SETTINGS = [
    ("preprocess", lambda ck, celeba, tmp: ["--data", "datamodules.CKPlusDataModule", "--data.init_args.root", str(ck),
                                            "--data.init_args.fold", "7"], ["fold must be in 0..2 or None, not 7"]),
    ("preprocess", lambda ck, celeba, tmp: ["--data", "datamodules.CelebANoisyDataModule", "--data.init_args.root",
                                            str(celeba), "--data.init_args.fraction", "1.5"],
     ["fraction must be in (0, 1], not 1.5"]),
    ("pretrain", lambda ck, celeba, tmp: ["--config", str(_pretrain_config(tmp, celeba, "model: {backbone: resnet19}"))],
     ["model.backbone: unknown backbone 'resnet19'", "choose from"]),
    ("sweep", lambda ck, celeba, tmp: ["--config", str(_sweep_config(tmp, ck).with_name("sweep.yaml")),
                                       "--config.datamodule.ungraded", "maybe"],
     ["ungraded must be positive, negative or reject, not 'maybe'"]),
]


def _pretrain_config(tmp_path, root, *lines: str):
    config = tmp_path / "pretrain.yaml"
    config.write_text("\n".join([f"data: {{root: {root}, image_size: 32, cache_dir: {tmp_path / 'cache'}, progress: false}}",
                                 "train: {init_from: null, max_epochs: 1, progress: false}", *lines]) + "\n")
    return config


@pytest.mark.slow
@pytest.mark.parametrize("command, arguments, words", BAD_SETTINGS, ids=[f"{c}-{w[0][:20]}" for c, _, w in BAD_SETTINGS])
def test_a_setting_a_datamodule_or_task_refuses_is_one_line(ckplus, celeba, tmp_path, command, arguments, words, cli):
    """What a class raises while jsonargparse or a command builds it reaches the user as one line."""
    out = facslab(cli, command, *arguments(ckplus[0], celeba[0], tmp_path), tmp_path=tmp_path)
    refused(out, *words, command=command)
    assert not (tmp_path / "store" / "optuna" / "bad-input.journal").exists()  # a sweep made no study


@pytest.mark.slow
def test_the_demo_and_config_files_a_user_names_are_one_line_before_any_data_is_made(tmp_path, cli):
    """facslab demo reads every config and checks its folder and fractions before it generates
    anything; a config jsonargparse cannot load, an unknown option or a missing argument is one
    line too, not jsonargparse's usage screen."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    broken = tmp_path / "broken.yaml"
    broken.write_text("study: [\n")
    out = tmp_path / "demo"
    # two of them in a real process: nothing a fresh interpreter prints on its own stderr either
    refused(facslab(run_cli, "demo", "--out", str(a_file), tmp_path=tmp_path), str(a_file), "a file, not a folder",
            command="demo")
    refused(facslab(cli, "demo", "--out", str(out), "--sweep_config", str(tmp_path / "no.yaml"), tmp_path=tmp_path),
            f"{tmp_path / 'no.yaml'}: config file not found", command="demo")
    refused(facslab(cli, "demo", "--out", str(out), "--sweep_config", str(broken),
                    tmp_path=tmp_path), f"{broken}: not valid YAML", command="demo")
    refused(facslab(cli, "demo", "--out", str(out), "--pretrain_fractions", "1.5", "0.3", tmp_path=tmp_path),
            "--pretrain_fractions: 1.5 not in (0, 1]", command="demo")
    assert not out.exists()  # nothing was generated
    refused(facslab(cli, "sweep", "--config", str(tmp_path / "no.yaml"), tmp_path=tmp_path), "no.yaml",
            "--help lists the options", command="sweep")
    refused(facslab(cli, "sweep", "--config", str(broken), tmp_path=tmp_path), "broken.yaml", "while parsing", command="sweep")
    refused(facslab(run_cli, "sweep", "--bogus", "1", tmp_path=tmp_path), "unrecognized arguments: --bogus 1", command="sweep")
    refused(facslab(cli, "emoji", tmp_path=tmp_path), "the following arguments are required", command="emoji")
