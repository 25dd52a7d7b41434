"""Bad input as a user meets it, through the command line: one line naming the file and the problem,
exit status 2, no traceback; release quirks (a byte-order mark, empty label files) read or skipped
and listed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from facslab.synth.au_video_datasets import write_bp4d
from facslab.synth.emotion_datasets import write_fer2013

BOM = "\ufeff"


def preprocess(datamodule: str, root, tmp_path, *extra: str, verbose: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facslab.cli", *(["-v"] if verbose else []), "preprocess", "--data", f"datamodules.{datamodule}",
         "--data.init_args.root", str(root), "--data.init_args.cache_dir", str(tmp_path / "cache"),
         "--data.init_args.progress", "false", *extra, "--report", str(tmp_path / "skipped.csv")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "FACSLAB_MLRUNS": str(tmp_path / "store")})


def refused(out: subprocess.CompletedProcess, *words: str) -> str:
    """The one line a user's mistake gets."""
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("facslab preprocess: error: ") and all(w in line for w in words), line
    return line


@pytest.fixture(scope="module")
def fer_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fer2013")
    write_fer2013(root, 60, seed=4, ferplus=True, progress=False)
    return root


@pytest.fixture(scope="module")
def bp4d_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("bp4d")
    write_bp4d(root, n_subjects=4, frames=6, seed=2, progress=False)
    return root


def test_a_tree_without_its_label_folder_is_one_line_naming_it(bp4d_tree, tmp_path):
    broken = tmp_path / "bp4d"
    shutil.copytree(bp4d_tree, broken)
    shutil.rmtree(broken / "AUCoding" / "AU_OCC")
    refused(preprocess("BP4DDataModule", broken, tmp_path), "AU_OCC", "no AU_OCC CSV files")
    verbose = preprocess("BP4DDataModule", broken, tmp_path, verbose=True)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr  # -v adds the traceback


def test_an_empty_label_file_is_skipped_and_listed(bp4d_tree, tmp_path):
    tree = tmp_path / "bp4d"
    shutil.copytree(bp4d_tree, tree)
    empty = sorted((tree / "AUCoding" / "AU_OCC").glob("*.csv"))[0]
    empty.write_bytes(b"")
    out = preprocess("BP4DDataModule", tree, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    skipped = (tmp_path / "skipped.csv").read_text()
    assert f"{empty},empty file" in skipped


def test_a_byte_order_mark_is_read_as_if_absent(fer_tree, tmp_path):
    plain = preprocess("FER2013DataModule", fer_tree, tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr[-2000:]
    marked = tmp_path / "marked"
    shutil.copytree(fer_tree, marked)
    for name in ("fer2013.csv", "fer2013new.csv"):
        path = marked / name
        path.write_text(BOM + path.read_text(), encoding="utf-8")
    out = preprocess("FER2013DataModule", marked, tmp_path / "bom")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("; cache at")[0] == plain.stdout.split("; cache at")[0]  # the same images and classes
    ferplus = preprocess("FER2013DataModule", marked, tmp_path / "bom+", "--data.init_args.labels", "ferplus")
    assert ferplus.returncode == 0, ferplus.stderr[-2000:]


def test_ferplus_votes_of_another_length_or_usage_are_refused_naming_both_files(fer_tree, tmp_path):
    short = tmp_path / "short"
    shutil.copytree(fer_tree, short)
    lines = (short / "fer2013.csv").read_text().splitlines(keepends=True)
    (short / "fer2013.csv").write_text("".join(lines[:33]))  # 32 data rows against 60 rows of votes
    refused(preprocess("FER2013DataModule", short, tmp_path / "a", "--data.init_args.labels", "ferplus"),
            "fer2013new.csv", "60 rows of votes", "32 data rows", str(short / "fer2013.csv"))
    swapped = tmp_path / "swapped"
    shutil.copytree(fer_tree, swapped)
    votes = (swapped / "fer2013new.csv").read_text().splitlines(keepends=True)
    first = votes[1].split(",", 1)
    other = "PrivateTest" if first[0] != "PrivateTest" else "Training"
    votes[1] = f"{other},{first[1]}"
    (swapped / "fer2013new.csv").write_text("".join(votes))
    refused(preprocess("FER2013DataModule", swapped, tmp_path / "b", "--data.init_args.labels", "ferplus"),
            "fer2013new.csv", "disagree", "data row 1")


def test_an_empty_votes_file_is_one_line(fer_tree, tmp_path):
    tree = tmp_path / "fer"
    shutil.copytree(fer_tree, tree)
    (tree / "fer2013new.csv").write_bytes(b"")
    refused(preprocess("FER2013DataModule", tree, tmp_path, "--data.init_args.labels", "ferplus"),
            "fer2013new.csv: empty file")


def _generated(name: str, root):
    """A small generated copy of one dataset in its real layout."""
    from facslab.demo import generate_celeba
    from facslab.formats.ckplus import write_ckplus
    from facslab.synth import emotion_datasets as emotion
    from facslab.synth.au_video_datasets import write_disfa

    made = {
        "FER2013DataModule": lambda: write_fer2013(root, 60, seed=4, ferplus=True, progress=False),
        "RAFDBDataModule": lambda: emotion.write_rafdb(root, 40, seed=3, progress=False),
        "AffectNetDataModule": lambda: emotion.write_affectnet(root, 40, 2, seed=3, progress=False),
        "BP4DDataModule": lambda: write_bp4d(root, n_subjects=5, frames=4, seed=2, progress=False),
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


@pytest.mark.parametrize("datamodule", ["FER2013DataModule", "RAFDBDataModule", "AffectNetDataModule", "BP4DDataModule",
                                        "DISFADataModule", "CKPlusDataModule", "CelebANoisyDataModule"])
def test_a_spreadsheet_saved_copy_reads_label_for_label_as_the_original(datamodule, tmp_path):
    plain = _generated(datamodule, tmp_path / "plain")
    saved = tmp_path / "saved"
    shutil.copytree(plain, saved)
    assert _spreadsheet_save(saved)
    runs = {}
    for name, root in (("plain", plain), ("saved", saved)):
        out = preprocess(datamodule, root, tmp_path / name, *_SMALL.get(datamodule, ()),
                         "--split", str(tmp_path / name / "split.csv"))
        assert out.returncode == 0, out.stderr[-2000:]
        split = (tmp_path / name / "split.csv").read_text().replace(str(root), "<root>")
        skipped = (tmp_path / name / "skipped.csv").read_text().replace(str(root), "<root>")
        runs[name] = (out.stdout.split("; cache at")[0], split, skipped)
    assert runs["saved"] == runs["plain"]
