"""CK+ and CelebA-noisy datamodules: labels, subject-exclusive splits, normalisation, bad input."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import CelebANoisyDataModule, CKPlusDataModule
from datamodules.base import channel_stats
from facslab.au import NUM_AUS, labels_from_facs_codes
from facslab.badinput import BadInputError
from facslab.formats.ckplus import read_ckplus

SIZE = 32


def set_up(cls, root, tmp_path, batch_size, **kwargs):
    options = dict(image_size=SIZE, batch_size=batch_size, cache_dir=str(tmp_path / "cache"), preprocess_workers=0,
                   progress=False)
    dm = cls(str(root), **{**options, **kwargs})
    dm.setup("fit")
    return dm


def ck(root, tmp_path, **kwargs):
    return set_up(CKPlusDataModule, root, tmp_path, 4, **kwargs)


def subjects_of(dm, role):
    s = dm.samples
    return set(s.loc[(s["role"] == role) & s["ok"], "subject"])


def test_ckplus_samples_are_peaks_plus_one_neutral_per_subject(ckplus, tmp_path):
    root, truth = ckplus
    dm = ck(root, tmp_path)
    s = dm.samples
    assert (s["kind"] == "peak").sum() == len(truth)
    neutral = s[s["kind"] == "neutral"]
    assert sorted(neutral["subject"]) == sorted(truth["subject"].unique())
    assert np.stack(neutral["labels"]).sum() == 0
    assert all(img.endswith("_00000001.png") for img in (src.image for src in neutral["source"]))
    for row in truth.itertuples():
        labels = s[(s["subject"] == row.subject) & (s["sequence"] == row.sequence) & (s["kind"] == "peak")]["labels"].iloc[0]
        assert np.array_equal(labels, (row.intensities > 0).astype(np.float32))


def test_ckplus_splits_are_subject_exclusive_and_cover_everyone(ckplus, tmp_path):
    root, truth = ckplus
    all_subjects = set(truth["subject"])
    fold_subjects = []
    for fold in range(3):
        dm = ck(root, tmp_path, fold=fold)
        train, val, test = subjects_of(dm, "train"), subjects_of(dm, "val"), subjects_of(dm, "test")
        assert train and val and test
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == all_subjects
        fold_subjects.append(val)
        assert subjects_of(dm, "test") == subjects_of(ck(root, tmp_path, fold=0), "test")  # same test split
    assert set.union(*fold_subjects) == all_subjects - test
    assert sum(len(f) for f in fold_subjects) == len(all_subjects - test)  # each subject in one fold


def test_ckplus_split_is_deterministic_from_the_seed(ckplus, tmp_path):
    root, _ = ckplus
    a, b = ck(root, tmp_path, seed=1), ck(root, tmp_path, seed=1)
    assert a.split_table().equals(b.split_table())
    c = ck(root, tmp_path, seed=2)
    assert not a.split_table()["role"].equals(c.split_table()["role"])
    saved = a.save_split(tmp_path / "split.csv").read_text().splitlines()
    assert saved[0] == "image,subject,role,ok,fold" and len(saved) == len(a.samples) + 1


def test_ckplus_fold_none_trains_on_the_whole_training_split(ckplus, tmp_path):
    root, _ = ckplus
    dm = ck(root, tmp_path, fold=None)
    assert len(dm.positions("val")) == 0
    with_folds = ck(root, tmp_path, fold=0)
    assert len(dm.positions("train")) == len(with_folds.positions("train")) + len(with_folds.positions("val"))
    with pytest.raises(ValueError, match="fold must be"):
        CKPlusDataModule(str(root), fold=3)


def test_ckplus_batches_are_normalised_with_training_statistics(ckplus, tmp_path):
    root, _ = ckplus
    dm = ck(root, tmp_path, augment=False)
    assert (dm.mean, dm.std) == channel_stats(dm.cached.crops, dm.positions("train"), dm.seed)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert labels.shape == (4, NUM_AUS)
    batch = torch.cat([x for x, _ in dm.train_dataloader()])
    assert batch.mean().abs() < 0.1 and (batch.std() - 1).abs() < 0.1
    assert len(next(iter(dm.val_dataloader()))[0]) > 0 and len(next(iter(dm.test_dataloader()))[0]) > 0


def test_ckplus_augmentation_is_for_training_only(ckplus, tmp_path):
    root, _ = ckplus
    dm = ck(root, tmp_path, augment=True)
    train, val = dm.dataset("train"), dm.dataset("val")
    assert not all(torch.equal(train[0][0], train[0][0]) for _ in range(5))
    assert torch.equal(val[0][0], val[0][0])


def test_ckplus_ungraded_policy_is_applied(ckplus, tmp_path):
    root, _ = ckplus
    table = read_ckplus(root)
    has_ungraded = table["facs"].map(lambda f: 0.0 in f.values())
    assert has_ungraded.any()
    negative = ck(root, tmp_path, ungraded="negative").samples
    peaks = negative[negative["kind"] == "peak"]
    for labels, facs in zip(peaks["labels"], table["facs"]):
        assert np.array_equal(labels, labels_from_facs_codes(facs, ungraded="negative"))
    rejecting = ck(root, tmp_path, ungraded="reject")
    assert (rejecting.samples["kind"] == "peak").sum() == (~has_ungraded).sum()
    assert sum("not graded" in problem for _, problem in rejecting.report.rows) == has_ungraded.sum()


@pytest.fixture
def broken_ckplus(ckplus, tmp_path):
    """A copy of the CK+ fixture with one of every kind of damage."""
    root = tmp_path / "ck"
    shutil.copytree(ckplus[0], root)
    peaks = sorted(p for p in (root / "cohn-kanade-images").rglob("*.png") if not p.name.endswith("_00000001.png"))
    peaks = [p for p in peaks if p == sorted(p.parent.glob("*.png"))[-1]]
    damage = {}
    peaks[0].write_bytes(peaks[0].read_bytes()[:200])  # truncated
    damage[str(peaks[0])] = "truncated"
    peaks[1].write_bytes(b"")  # empty
    damage[str(peaks[1])] = "empty file"
    blank = np.full((490, 640), 120, np.uint8)
    Image.fromarray(blank).save(peaks[2])  # no face, and no landmarks to align from
    lm = root / "Landmarks" / peaks[2].parent.relative_to(root / "cohn-kanade-images") / f"{peaks[2].stem}_landmarks.txt"
    lm.unlink()
    damage[str(peaks[2])] = "no face found"
    facs = root / "FACS" / peaks[3].parent.relative_to(root / "cohn-kanade-images") / f"{peaks[3].stem}_facs.txt"
    facs.write_text("AU12 C\n")
    damage[str(facs)] = "not numeric"
    Image.fromarray(np.zeros((490, 640), np.uint16) + 30000).save(peaks[4])  # 16-bit: readable, kept
    return root, damage


def test_ckplus_bad_input_is_skipped_reported_and_never_mislabelled(broken_ckplus, tmp_path):
    root, damage = broken_ckplus
    dm = ck(root, tmp_path)
    problems = dict(dm.report.rows)
    for path, problem in damage.items():
        assert problem in problems[path], (path, problems.get(path))
    assert len(dm.report) == len(damage)
    skipped_images = {p for p in damage if p.endswith(".png")}
    usable = dm.samples[dm.samples["ok"]]
    assert not skipped_images & {s.image for s in usable["source"]}
    with pytest.raises(BadInputError):
        ck(root, tmp_path, strict=True)


def celeba_dm(root, tmp_path, **kwargs):
    return set_up(CelebANoisyDataModule, root, tmp_path, 8, **kwargs)


def test_celeba_labels_are_the_openface_labels(celeba, tmp_path):
    root, _, noisy = celeba
    dm = celeba_dm(root, tmp_path)
    written = dict(zip(noisy["image"], noisy["labels"]))
    for source, labels in zip(dm.samples["source"], dm.samples["labels"]):
        assert np.array_equal(labels, written[source.image.rsplit("/", 1)[-1]])
    no_face = set(noisy.loc[~noisy["success"], "image"])
    assert {p.rsplit("/", 1)[-1] for p, _ in dm.report.rows} == no_face


def test_celeba_split_is_identity_disjoint_stratified_by_gender_and_shared_by_fractions(celeba, tmp_path):
    root, _, _ = celeba
    dm = celeba_dm(root, tmp_path, val_fraction=0.2)
    assert dm.has_identities
    s = dm.samples[dm.samples["ok"]]
    val = s[s["role"] == "val"]
    assert abs(len(val) / len(s) - 0.2) < 0.1
    assert abs(val["male"].eq(1).mean() - s["male"].eq(1).mean()) < 0.25
    assert not set(val["subject"]) & set(s.loc[s["role"] == "train", "subject"])  # no identity on both sides
    half = celeba_dm(root, tmp_path, val_fraction=0.2, fraction=0.5)
    h = half.samples[half.samples["ok"]]
    assert list(h.index[h["role"] == "val"]) == list(val.index)  # one validation set for every fraction
    assert abs((h["role"] == "train").sum() - (s["role"] == "train").sum() / 2) <= 1


def test_celeba_without_identity_file_is_stratified_by_gender(celeba, tmp_path):
    root, _, _ = celeba
    copy = tmp_path / "celeba"
    shutil.copytree(root, copy)
    (copy / "identity_CelebA.txt").unlink()
    dm = celeba_dm(copy, tmp_path)
    assert not dm.has_identities
    s = dm.samples[dm.samples["ok"]]
    val = s[s["role"] == "val"]
    assert abs(len(val) / len(s) - 0.05) < 0.02
    assert abs(val["male"].eq(1).mean() - s["male"].eq(1).mean()) < 0.15
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, SIZE, SIZE) and labels.shape == (8, NUM_AUS)


def test_celeba_from_face_landmark_img_csvs(celeba, tmp_path):
    from facslab.synth.openface import write_openface

    root, truth, noisy = celeba
    copy = tmp_path / "celeba"
    shutil.copytree(root, copy)
    write_openface(truth, copy / "per_image", tool="FaceLandmarkImg", seed=3)
    dm = celeba_dm(copy, tmp_path, openface_csv=None, openface_dir="per_image")
    assert dm.samples["ok"].sum() == noisy["success"].sum()


def test_celeba_csv_missing_columns_is_a_clear_error(celeba, tmp_path):
    root, _, _ = celeba
    copy = tmp_path / "celeba"
    shutil.copytree(root, copy)
    csv = copy / "openface" / "img_align_celeba.csv"
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "AU12_c"]
    csv.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    with pytest.raises(BadInputError, match="img_align_celeba.csv: missing required columns: AU12_c"):
        celeba_dm(copy, tmp_path)


@pytest.mark.parametrize("change", ["drop a row", "add a row"])
def test_openface_rows_that_do_not_match_the_images_are_an_error(celeba, tmp_path, change):
    root, _, _ = celeba
    copy = tmp_path / "celeba"
    shutil.copytree(root, copy)
    csv = copy / "openface" / "img_align_celeba.csv"
    lines = csv.read_text().splitlines()
    lines = lines[:5] + lines[6:] if change == "drop a row" else lines + [lines[-1]]
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match=r"img_align_celeba.csv: \d+ rows for 160 images"):
        celeba_dm(copy, tmp_path)


def test_too_few_subjects_for_the_folds_names_the_counts(ckplus, tmp_path):
    with pytest.raises(ValueError, match=r"\d+ subject\(s\) outside the test split cannot make 20 subject-exclusive folds"):
        ck(ckplus[0], tmp_path, n_folds=20)


def test_a_layout_can_be_a_plain_dict(ckplus, tmp_path):
    root = tmp_path / "renamed"
    shutil.copytree(ckplus[0], root)
    (root / "FACS").rename(root / "facs_codes")
    dm = ck(root, tmp_path, layout={"facs": "facs_codes"})
    assert dm.layout.facs == "facs_codes" and dm.layout.images == "cohn-kanade-images"
    assert dm.samples["ok"].sum() > 0


def test_channel_statistics_in_float32_chunks_match_a_float64_pass(ckplus, tmp_path):
    root, _ = ckplus
    dm = ck(root, tmp_path, augment=False)
    positions = dm.positions("train")
    reference = np.asarray(dm.cached.crops[positions], dtype=np.float64) / 255.0
    for chunk in (3, 128):  # several chunks with a ragged last one, and one chunk
        mean, std = channel_stats(dm.cached.crops, positions, dm.seed, chunk=chunk)
        assert np.allclose(mean, reference.mean(axis=(0, 1, 2)), atol=1e-6)
        assert np.allclose(std, reference.std(axis=(0, 1, 2)) + 1e-6, atol=1e-6)
