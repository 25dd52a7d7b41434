"""Bad datasets as a user meets them, through the command line: one line naming the file and the
problem, exit status 2, no traceback; release quirks (a byte-order mark, empty label files) read or
skipped and listed. The apps' and the chain's commands: test_bad_input_commands.py."""

from __future__ import annotations

import csv
import shutil
import subprocess

import pytest

from facslab.synth.au_video_datasets import write_bp4d
from facslab.synth.emotion_datasets import write_fer2013

from conftest import run_cli
from refusals import facslab, refused

BOM = "\ufeff"


def preprocess(run, datamodule: str, root, tmp_path, *extra: str, verbose: bool = False) -> subprocess.CompletedProcess:
    """``facslab preprocess`` by ``run``: the ``cli`` fixture (in this process) or ``run_cli`` (a process)."""
    return facslab(run, *(["-v"] if verbose else []), "preprocess", "--data", f"datamodules.{datamodule}",
                   "--data.init_args.root", str(root), "--data.init_args.cache_dir", str(tmp_path / "cache"),
                   "--data.init_args.progress", "false", *extra, "--report", str(tmp_path / "skipped.csv"),
                   tmp_path=tmp_path)


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
