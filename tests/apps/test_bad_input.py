"""Bad input as a user meets it, through the command line: one line naming the file and the problem,
exit status 2, no traceback; release quirks (a byte-order mark, empty label files) read or skipped
and listed."""

from __future__ import annotations

import csv
import shutil
import subprocess

import pytest

from facslab.synth.au_video_datasets import write_bp4d
from facslab.synth.emotion_datasets import write_fer2013

from conftest import run_cli

BOM = "\ufeff"


def preprocess(run, datamodule: str, root, tmp_path, *extra: str, verbose: bool = False) -> subprocess.CompletedProcess:
    """``facslab preprocess`` by ``run``: the ``cli`` fixture (in this process) or ``run_cli`` (a process)."""
    return run(*(["-v"] if verbose else []), "preprocess", "--data", f"datamodules.{datamodule}",
               "--data.init_args.root", str(root), "--data.init_args.cache_dir", str(tmp_path / "cache"),
               "--data.init_args.progress", "false", *extra, "--report", str(tmp_path / "skipped.csv"),
               env={"FACSLAB_MLRUNS": str(tmp_path / "store")})


def facslab(run, *args: str, tmp_path) -> subprocess.CompletedProcess:
    return run(*args, env={"FACSLAB_MLRUNS": str(tmp_path / "store")})


def refused(out: subprocess.CompletedProcess, *words: str, command: str = "preprocess") -> str:
    """The one line a user's mistake gets: the whole of stderr."""
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith(f"facslab {command}: error: ") and all(w in lines[0] for w in words), lines[0]
    print(lines[0])  # with -s: the lines docs/bad-input.md quotes
    return lines[0]


@pytest.fixture(scope="module")
def fer_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fer2013")
    write_fer2013(root, 60, seed=4, ferplus=True, progress=False)
    return root


@pytest.fixture(scope="module")
def bp4d_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bp4d")
    write_bp4d(root, n_subjects=4, tasks=("T1", "T6"), frames=6, seed=2, progress=False)
    return root


@pytest.mark.slow
def test_a_tree_without_its_label_folder_is_one_line_naming_it(bp4d_tree, tmp_path, cli):
    broken = tmp_path / "bp4d"
    shutil.copytree(bp4d_tree, broken)
    shutil.rmtree(broken / "AUCoding" / "AU_OCC")
    refused(preprocess(cli, "BP4DDataModule", broken, tmp_path), "AU_OCC", "no AU_OCC CSV files")
    verbose = preprocess(cli, "BP4DDataModule", broken, tmp_path, verbose=True)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr  # -v adds the traceback


@pytest.mark.slow
def test_an_empty_label_file_is_skipped_and_listed(bp4d_tree, tmp_path, cli):
    tree = tmp_path / "bp4d"
    shutil.copytree(bp4d_tree, tree)
    empty = sorted((tree / "AUCoding" / "AU_OCC").glob("*.csv"))[0]
    empty.write_bytes(b"")
    out = preprocess(cli, "BP4DDataModule", tree, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    skipped = (tmp_path / "skipped.csv").read_text()
    assert f"{empty},empty file" in skipped


@pytest.mark.slow
def test_a_byte_order_mark_is_read_as_if_absent(fer_tree, tmp_path, cli):
    plain = preprocess(cli, "FER2013DataModule", fer_tree, tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr[-2000:]
    marked = tmp_path / "marked"
    shutil.copytree(fer_tree, marked)
    for name in ("fer2013.csv", "fer2013new.csv"):
        path = marked / name
        path.write_text(BOM + path.read_text(), encoding="utf-8")
    out = preprocess(cli, "FER2013DataModule", marked, tmp_path / "bom")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("; cache at")[0] == plain.stdout.split("; cache at")[0]  # the same images and classes
    ferplus = preprocess(cli, "FER2013DataModule", marked, tmp_path / "bom+", "--data.init_args.labels", "ferplus")
    assert ferplus.returncode == 0, ferplus.stderr[-2000:]


@pytest.mark.slow
def test_ferplus_votes_of_another_length_or_usage_are_refused_naming_both_files(fer_tree, tmp_path, cli):
    short = tmp_path / "short"
    shutil.copytree(fer_tree, short)
    lines = (short / "fer2013.csv").read_text().splitlines(keepends=True)
    (short / "fer2013.csv").write_text("".join(lines[:33]))  # 32 data rows against 60 rows of votes
    refused(preprocess(cli, "FER2013DataModule", short, tmp_path / "a", "--data.init_args.labels", "ferplus"),
            "fer2013new.csv", "60 rows of votes", "32 data rows", str(short / "fer2013.csv"))
    swapped = tmp_path / "swapped"
    shutil.copytree(fer_tree, swapped)
    votes = (swapped / "fer2013new.csv").read_text().splitlines(keepends=True)
    first = votes[1].split(",", 1)
    other = "PrivateTest" if first[0] != "PrivateTest" else "Training"
    votes[1] = f"{other},{first[1]}"
    (swapped / "fer2013new.csv").write_text("".join(votes))
    refused(preprocess(cli, "FER2013DataModule", swapped, tmp_path / "b", "--data.init_args.labels", "ferplus"),
            "fer2013new.csv", "disagree", "data row 1")


@pytest.mark.slow
def test_an_empty_votes_file_is_one_line(fer_tree, tmp_path, cli):
    tree = tmp_path / "fer"
    shutil.copytree(fer_tree, tree)
    (tree / "fer2013new.csv").write_bytes(b"")
    refused(preprocess(cli, "FER2013DataModule", tree, tmp_path, "--data.init_args.labels", "ferplus"),
            "fer2013new.csv: empty file")


def _generated(name: str, root):
    """A small generated copy of one dataset in its real layout."""
    from facslab.demo_data import generate_celeba
    from facslab.synth.ckplus import write_ckplus
    from facslab.synth import emotion_datasets as emotion
    from facslab.synth.au_video_datasets import write_disfa

    made = {
        "FER2013DataModule": lambda: write_fer2013(root, 60, seed=4, ferplus=True, progress=False),
        "RAFDBDataModule": lambda: emotion.write_rafdb(root, 40, seed=3, progress=False),
        "AffectNetDataModule": lambda: emotion.write_affectnet(root, 40, 2, seed=3, progress=False),
        "BP4DDataModule": lambda: write_bp4d(root, n_subjects=5, tasks=("T1", "T6"), frames=4, seed=2, progress=False),
        "DISFADataModule": lambda: write_disfa(root, n_subjects=5, frames=5, seed=2, progress=False),
        "CKPlusDataModule": lambda: write_ckplus(root, n_subjects=5, sequences_per_subject=2, frames=(3, 3), seed=7,
                                                 progress=False),
        "CelebANoisyDataModule": lambda: generate_celeba(root, 24, seed=3, progress=False),
    }
    made[name]()
    return root


#: ``preprocess`` options that make the small trees usable (few subjects, few images)
_SMALL = {name: ("--data.init_args.n_folds", "2") for name in ("BP4DDataModule", "DISFADataModule", "CKPlusDataModule")}


def _spreadsheet_save(root) -> list:
    """Every label file rewritten as a spreadsheet saves it: a byte-order mark, CRLF line ends and
    trailing spaces on every line."""
    touched = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".csv", ".txt") and path.is_file() and path.stat().st_size:
            lines = path.read_text(encoding="utf-8").splitlines()
            path.write_bytes((BOM + "".join(f"{line}  \r\n" for line in lines)).encode("utf-8"))
            touched.append(path)
    return touched


@pytest.mark.slow
@pytest.mark.parametrize("datamodule", ["FER2013DataModule", "RAFDBDataModule", "AffectNetDataModule", "BP4DDataModule",
                                        "DISFADataModule", "CKPlusDataModule", "CelebANoisyDataModule"])
def test_a_spreadsheet_saved_copy_reads_label_for_label_as_the_original(datamodule, tmp_path, cli):
    plain = _generated(datamodule, tmp_path / "plain")
    saved = tmp_path / "saved"
    shutil.copytree(plain, saved)
    assert _spreadsheet_save(saved)
    runs = {}
    for name, root in (("plain", plain), ("saved", saved)):
        out = preprocess(cli, datamodule, root, tmp_path / name, *_SMALL.get(datamodule, ()),
                         "--split", str(tmp_path / name / "split.csv"))
        assert out.returncode == 0, out.stderr[-2000:]
        split = (tmp_path / name / "split.csv").read_text().replace(str(root), "<root>")
        skipped = (tmp_path / name / "skipped.csv").read_text().replace(str(root), "<root>")
        runs[name] = (out.stdout.split("; cache at")[0], split, skipped)
    assert runs["saved"] == runs["plain"]


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


def _first(root, pattern: str):
    return sorted(root.rglob(pattern))[0]


def _rewrite(path, edit):
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _header_only(path):
    return _rewrite(path, lambda text: text.splitlines(keepends=True)[0])


def _compound_list(root):
    path = _first(root, "list_patition_label.txt")
    return _rewrite(path, lambda text: "".join(f"{name[:-9]}{name[-8:]} {int(code) % 11 + 1}\n" for name, code in
                                               (line.split() for line in text.splitlines() if len(line.split()) == 2)))


def _trailing_comma(path):
    return _rewrite(path, lambda text: "".join(line + (",\n" if number == 1 else "\n")
                                               for number, line in enumerate(text.splitlines())))


def _wrong_count(path):
    return _rewrite(path, lambda text: "".join(f"{int(line) + 3}\n" if number == 0 else line + "\n"
                                               for number, line in enumerate(text.splitlines())))


def _empty(path):
    path.write_bytes(b"")
    return path


def _removed(path):
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path


#: (datamodule, what is broken, the break (root -> the path it broke), words the one line must hold,
#: extra preprocess options); the line must also name the broken path
BAD_TREES = [
    ("CKPlusDataModule", "no image folder", lambda root: _removed(root / "cohn-kanade-images"),
     ("CK+ image folder not found",), ()),
    ("CelebANoisyDataModule", "count line disagrees with the rows",
     lambda root: _wrong_count(root / "list_attr_celeba.txt"), ("count line says 27 images but 24 rows follow",), ()),
    ("CelebANoisyDataModule", "empty attribute list", lambda root: _empty(root / "list_attr_celeba.txt"),
     ("expected a count line and a header line",), ()),
    ("CelebANoisyDataModule", "OpenFace CSV of its header only",
     lambda root: _header_only(root / "openface" / "img_align_celeba.csv"), ("0 rows for 24 images",), ()),
    ("RAFDBDataModule", "the compound list in the basic list's place", _compound_list, ("RAF-DB's compound list",), ()),
    ("RAFDBDataModule", "no label list", lambda root: _removed(root / "basic" / "EmoLabel").parent.parent,
     ("no basic/EmoLabel/list_patition_label.txt or",), ()),
    ("RAFDBDataModule", "empty label list", lambda root: _empty(_first(root, "list_patition_label.txt")),
     ("no usable lines",), ()),
    ("AffectNetDataModule", "empty list", lambda root: _empty(_first(root, "training.csv")), ("empty file",), ()),
    ("AffectNetDataModule", "list of its header only", lambda root: _header_only(_first(root, "training.csv")),
     ("header only, no rows",), ()),
    ("FER2013DataModule", "fer2013.csv of its header only", lambda root: _header_only(root / "fer2013.csv"),
     ("no usable rows",), ()),
    ("FER2013DataModule", "no CSV", lambda root: _removed(root / "fer2013.csv").parent, ("no fer2013.csv",), ()),
    ("FER2013DataModule", "FER+ votes of their header only", lambda root: _header_only(root / "fer2013new.csv"),
     ("header only, no rows of votes",), ("--data.init_args.labels", "ferplus")),
    ("DISFADataModule", "every subject's AU1 file empty",
     lambda root: [_empty(path) for path in sorted(root.rglob("*_au1.txt"))][0].parent.parent, ("no usable DISFA subjects",),
     _SMALL["DISFADataModule"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("datamodule", "broken", "breaking", "words", "extra"), BAD_TREES,
                         ids=[f"{case[0]}: {case[1]}" for case in BAD_TREES])
def test_a_bad_tree_is_one_line_naming_its_file(datamodule, broken, breaking, words, extra, tmp_path, cli):
    root = _generated(datamodule, tmp_path / "tree")
    path = breaking(root)
    # the first case in a real process: nothing a fresh interpreter prints while it reads a tree either
    run = run_cli if (datamodule, broken) == BAD_TREES[0][:2] else cli
    line = refused(preprocess(run, datamodule, root, tmp_path, *extra), *words)
    assert str(path) in line, line


@pytest.mark.slow
def test_an_emotion_keeps_its_label_when_the_facs_file_beside_it_is_empty(tmp_path, cli):
    root = _generated("CKPlusDataModule", tmp_path / "tree")
    before = preprocess(cli, "CKPlusEmotionDataModule", root, tmp_path / "before", "--data.init_args.n_folds", "2")
    assert before.returncode == 0, before.stderr[-2000:]
    emotion = _first(root, "*_emotion.txt")
    facs = _first(root / "FACS", f"{emotion.stem.removesuffix('_emotion')}_facs.txt")
    _empty(facs)
    after = preprocess(cli, "CKPlusEmotionDataModule", root, tmp_path / "after", "--data.init_args.n_folds", "2")
    assert after.returncode == 0, after.stderr[-2000:]
    assert after.stdout.split("; cache at")[0] == before.stdout.split("; cache at")[0]  # the same labelled images
    aus = preprocess(cli, "CKPlusDataModule", root, tmp_path / "aus", "--data.init_args.n_folds", "2")
    assert aus.returncode == 0 and str(facs) in (tmp_path / "aus" / "skipped.csv").read_text()  # the AU task skips and lists it


#: files a dataset can do without: skipped, and listed with their problem in the skip report
SKIPPED_FILES = [
    ("BP4DDataModule", "a row with a trailing comma", lambda root: _trailing_comma(_first(root, "*.csv")),
     "line 2 has 101 fields, the header 100 (a trailing comma?)"),
    ("DISFADataModule", "an empty AU file", lambda root: _empty(_first(root, "*_au1.txt")), "empty file"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("datamodule", "broken", "breaking", "problem"), SKIPPED_FILES,
                         ids=[f"{case[0]}: {case[1]}" for case in SKIPPED_FILES])
def test_a_bad_file_a_dataset_can_do_without_is_skipped_and_listed(datamodule, broken, breaking, problem, tmp_path, cli):
    root = _generated(datamodule, tmp_path / "tree")
    path = breaking(root)
    out = preprocess(cli, datamodule, root, tmp_path, *_SMALL[datamodule])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Warning" not in out.stderr, out.stderr  # nor numpy's "no data"
    with open(tmp_path / "skipped.csv", newline="", encoding="utf-8") as handle:
        assert {"file": str(path), "problem": problem} in list(csv.DictReader(handle))


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
