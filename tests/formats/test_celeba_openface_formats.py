"""CelebA lists and OpenFace CSVs: real layouts, read back to what was written."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facslab.au import AU_INDEX, OPENFACE_C_COLUMNS, OPENFACE_R_COLUMNS
from facslab.badinput import BadInputError
from facslab.formats.celeba import ATTRIBUTES, LANDMARK_COLUMNS, read_celeba
from facslab.formats.openface import (
    FACE_LANDMARK_IMG_COLUMNS, FEATURE_EXTRACTION_COLUMNS, read_face_landmark_img, read_feature_extraction,
    read_openface_csv,
)
from facslab.synth.openface import LabelNoise, noisy_openface_labels, write_openface


def image_names(root):
    return sorted(p.name for p in (root / "img_align_celeba").iterdir())


def test_celeba_files_in_the_release_layout(celeba):
    root, truth, _ = celeba
    names = image_names(root)
    assert names[:2] == ["000001.jpg", "000002.jpg"] and len(names) == len(truth)
    with Image.open(root / "img_align_celeba" / names[0]) as image:
        assert image.format == "JPEG" and image.size == (178, 218)
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[0] == str(len(truth))
    assert lines[1].endswith(" ") and lines[1].split() == list(ATTRIBUTES)
    assert lines[1].split()[20] == "Male" and len(ATTRIBUTES) == 40
    header = (root / "list_landmarks_align_celeba.txt").read_text().splitlines()[1]
    assert header.split() == list(LANDMARK_COLUMNS)
    assert (root / "list_eval_partition.txt").read_text().splitlines()[0] == "000001.jpg 0"


def test_celeba_read_back_equals_what_was_rendered(celeba):
    root, truth, _ = celeba
    table = read_celeba(root).set_index("image")
    for row in truth.itertuples():
        read = table.loc[row.image]
        left_eye, right_eye = row.landmarks68[36:42].mean(0), row.landmarks68[42:48].mean(0)
        assert np.array_equal(read[["lefteye_x", "lefteye_y", "righteye_x", "righteye_y"]].to_numpy(),
                              np.round(np.concatenate([left_eye, right_eye])).astype(int))
        assert read["Male"] == (1 if row.male else -1)
        assert read["Smiling"] == (1 if row.intensities[AU_INDEX["12"]] >= 2 else -1)
        assert read["identity"] == row.identity and read["partition"] in (0, 1, 2)


def test_celeba_reader_ignores_padding(celeba, tmp_path):
    root, _, _ = celeba
    for name in ("list_landmarks_align_celeba.txt", "list_attr_celeba.txt"):
        lines = (root / name).read_text().splitlines()
        (tmp_path / name).write_text("\n".join(lines[:2] + ["\t".join(line.split()) for line in lines[2:]]) + "\n")
    assert read_celeba(tmp_path).equals(read_celeba(root).drop(columns=["partition", "identity"]))


def test_celeba_broken_list_names_file_and_line(celeba, tmp_path):
    root, _, _ = celeba
    lines = (root / "list_landmarks_align_celeba.txt").read_text().splitlines()
    lines[4] = lines[4] + " 17"
    (tmp_path / "list_landmarks_align_celeba.txt").write_text("\n".join(lines))
    (tmp_path / "list_attr_celeba.txt").write_text((root / "list_attr_celeba.txt").read_text())
    with pytest.raises(BadInputError, match="list_landmarks_align_celeba.txt: line 5 has 12 fields"):
        read_celeba(tmp_path)


def test_feature_extraction_columns_in_openface_order(celeba):
    root, _, _ = celeba
    header = (root / "openface" / "img_align_celeba.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert header == list(FEATURE_EXTRACTION_COLUMNS) and len(header) == 714
    assert header[-35:] == list(OPENFACE_R_COLUMNS + OPENFACE_C_COLUMNS)
    assert header.index("x_0") < header.index("y_0") < header.index("p_scale") < header.index("AU01_r")


def test_feature_extraction_read_back_equals_written_noisy_labels(celeba):
    root, _, noisy = celeba
    read = read_feature_extraction(root / "openface" / "img_align_celeba.csv", image_names(root))
    assert list(read["image"]) == list(noisy["image"])
    assert np.array_equal(read["success"], noisy["success"])
    assert np.array_equal(np.stack(read["labels"]), np.stack(noisy["labels"]))


def test_noisy_labels_differ_from_truth_at_the_configured_rates():
    rng = np.random.default_rng(0)
    n = 20000
    intensities = np.zeros((n, 18), np.float32)
    intensities[: n // 2, AU_INDEX["12"]] = 3
    noise = LabelNoise()
    r, c = noisy_openface_labels(intensities, np.zeros(n), noise, rng)
    column = OPENFACE_C_COLUMNS.index("AU12_c")
    miss = 1 - c[: n // 2, column].mean()
    false_alarm = c[n // 2:, column].mean()
    assert abs(miss - noise.miss[12]) < 0.015 and abs(false_alarm - noise.false_alarm[12]) < 0.015
    assert set(np.unique(c)) == {0.0, 1.0} and r.min() >= 0 and r.max() <= 5
    assert np.allclose(r, np.round(r, 2))


@pytest.mark.parametrize("separator, c_format", [(", ", "%.1f"), (",", "%.2f"), (", ", "%.2f")])
def test_older_separators_and_c_formats_read_the_same(celeba, tmp_path, separator, c_format):
    root, truth, noisy = celeba
    path = tmp_path / "of.csv"
    write_openface(truth, path, seed=3, separator=separator, c_format=c_format)
    text = path.read_text()
    assert text.startswith("frame" + separator + "face_id")
    read = read_feature_extraction(path, image_names(root))
    assert np.array_equal(np.stack(read["labels"]), np.stack(noisy["labels"]))


def test_face_landmark_img_per_image_csvs(celeba, tmp_path):
    root, truth, _ = celeba
    noisy = write_openface(truth, tmp_path, tool="FaceLandmarkImg", seed=3, separator=", ")
    first = next(tmp_path.glob("*.csv")).read_text().splitlines()[0]
    assert first.startswith("face, confidence, gaze_0_x") and first.split(", ") == list(FACE_LANDMARK_IMG_COLUMNS)
    read, problems = read_face_landmark_img(tmp_path, image_names(root))
    ok = noisy[noisy["success"]]
    assert list(read["image"]) == list(ok["image"])
    assert np.array_equal(np.stack(read["labels"]), np.stack(ok["labels"]))
    assert len(problems) == (~noisy["success"]).sum()
    assert all("no OpenFace CSV" in p.problem for p in problems)


def test_csv_missing_required_columns_names_them(tmp_path):
    path = tmp_path / "bad.csv"
    columns = [c for c in FEATURE_EXTRACTION_COLUMNS if c not in ("AU28_c", "AU45_c")]
    pd.DataFrame([np.zeros(len(columns))], columns=columns).to_csv(path, index=False)
    with pytest.raises(BadInputError, match=r"bad.csv: missing required columns: AU28_c, AU45_c"):
        read_openface_csv(path)


def test_unreadable_csv_is_a_bad_input(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(BadInputError, match="empty.csv: not a readable CSV"):
        read_openface_csv(path)
