"""CK+ layout: generated files read back to exactly what was rendered."""

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facslab.au import labels_from_facs_codes
from facslab.badinput import BadInputError, SkipReport
from facslab.formats.ckplus import CKPlusLayout, read_ckplus, read_emotion, read_facs, read_landmarks
from facslab.synth.ckplus import write_ckplus

NUMBER = r"[ -]\d\.\d{7}e[+-]\d{2}"  # one %16.7e field, without its padding


def test_layout_and_file_names(ckplus):
    root, truth = ckplus
    for row in truth.itertuples():
        frames = sorted((root / "cohn-kanade-images" / row.subject / row.sequence).glob("*.png"))
        assert [f.name for f in frames] == [f"{row.subject}_{row.sequence}_{k:08d}.png" for k in range(1, row.n_frames + 1)]
        for frame in frames:
            assert (root / "Landmarks" / row.subject / row.sequence / f"{frame.stem}_landmarks.txt").exists()
        facs = list((root / "FACS" / row.subject / row.sequence).iterdir())
        assert [f.name for f in facs] == [f"{frames[-1].stem}_facs.txt"]  # peak frame only
        assert re.fullmatch(r"S\d{3}", row.subject) and re.fullmatch(r"\d{3}", row.sequence)


def test_every_number_is_written_16_7e(ckplus):
    root, truth = ckplus
    row = truth.iloc[0]
    landmarks = next((root / "Landmarks" / row.subject / row.sequence).iterdir()).read_text().splitlines()
    assert len(landmarks) == 68
    assert all(len(line) == 32 and re.fullmatch(rf" *{NUMBER} *{NUMBER}", line) for line in landmarks)
    facs = next((root / "FACS" / row.subject / row.sequence).iterdir()).read_text().splitlines()
    assert all(len(line) == 32 for line in facs)


def test_frames_are_640x490_and_mostly_greyscale(ckplus):
    root, truth = ckplus
    modes = []
    for path in truth["peak_image"]:
        with Image.open(path) as image:
            assert image.size == (640, 490)
            modes.append(image.mode)
    assert modes.count("L") > len(modes) / 2 and set(modes) <= {"L", "RGB"}


def test_read_back_equals_what_was_rendered(ckplus):
    root, truth = ckplus
    table = read_ckplus(root).set_index(["subject", "sequence"])
    assert len(table) == len(truth)
    for row in truth.itertuples():
        read = table.loc[(row.subject, row.sequence)]
        assert read["facs"] == {k: float(v) for k, v in row.facs.items()}
        # every rendered AU is coded (graded or 0 = present), nothing else among the 18
        assert np.array_equal(labels_from_facs_codes(read["facs"], ungraded="positive"),
                              (row.intensities > 0).astype(np.float32))
        assert np.allclose(read_landmarks(read["peak_landmarks"]), row.peak_landmarks, rtol=1e-6, atol=1e-4)
        if pd.isna(row.emotion):
            assert pd.isna(read["emotion"])
        else:
            assert read["emotion"] == row.emotion


def test_graded_intensities_match_the_rendered_ones(ckplus):
    _, truth = ckplus
    graded = ungraded = 0
    for row in truth.itertuples():
        for code, intensity in row.facs.items():
            if code in (11, 13, 16, 18, 21, 31, 38, 39, 54, 62, 64):
                continue
            index = labels_from_facs_codes({code: 5}).argmax()
            if intensity == 0:
                ungraded += 1
            else:
                graded += 1
                assert intensity == row.intensities[index]
    assert graded > 0 and ungraded > 0  # both kinds occur, as in the real data


def test_emotion_only_for_some_sequences(ckplus):
    _, truth = ckplus
    has = truth["emotion"].notna()
    assert 0 < has.sum() < len(truth)


def test_renamed_folders_through_the_layout(tmp_path):
    layout = CKPlusLayout(images="imgs", landmarks="lm", facs="facs_codes", emotion="emo")
    truth = write_ckplus(tmp_path, n_subjects=2, sequences_per_subject=1, frames=(2, 2), layout=layout, progress=False)
    assert (tmp_path / "imgs").is_dir() and not (tmp_path / "cohn-kanade-images").exists()
    assert len(read_ckplus(tmp_path, layout)) == len(truth)
    with pytest.raises(BadInputError, match="image folder not found"):
        read_ckplus(tmp_path)


def test_readers_do_not_rely_on_padding(tmp_path):
    path = tmp_path / "x_facs.txt"
    path.write_text("12 3\n\t25   0.0000000e+00  \n")
    assert read_facs(path) == {12: 3.0, 25: 0.0}
    path.write_text("5.0\n")
    assert read_emotion(path) == 5


@pytest.mark.parametrize("content, problem", [("", "empty label file"), ("12 three\n", "not numeric"),
                                              ("12\n", "expected 2"), ("12.5 3\n", "invalid FACS entry"),
                                              ("12 7\n", "invalid FACS entry")])
def test_garbage_facs_files_name_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "S001_001_00000004_facs.txt"
    path.write_text(content)
    with pytest.raises(BadInputError, match=problem) as error:
        read_facs(path)
    assert str(path) in str(error.value)


def test_missing_or_broken_facs_skips_the_sequence_with_a_report(tmp_path):
    write_ckplus(tmp_path, n_subjects=3, sequences_per_subject=1, frames=(2, 2), progress=False)
    facs = sorted((tmp_path / "FACS").rglob("*_facs.txt"))
    facs[0].unlink()
    facs[1].write_text("garbage\n")
    report = SkipReport()
    table = read_ckplus(tmp_path, report=report)
    assert len(table) == 1
    problems = dict(report.rows)
    assert problems[str(facs[0])] == "file not found"
    assert "not numeric" in problems[str(facs[1])] or "expected 2" in problems[str(facs[1])]
    with pytest.raises(BadInputError, match=re.escape(str(facs[0]))):
        read_ckplus(tmp_path, report=SkipReport(strict=True))
