"""BP4D / BP4D+ and DISFA in their real layouts, unknown codes masked everywhere, and AU
intensity (CK+ grades, DISFA) through the same sweep and apps."""

import csv

import numpy as np
import pandas as pd
import pytest

from datamodules import BP4DDataModule, BP4DEmotionDataModule, CKPlusDataModule, DISFADataModule
from facslab.au import AU_INDEX, intensities_from_facs_codes
from facslab.badinput import BadInputError, SkipReport
from facslab.evaluation import icc_3_1, per_au_metrics
from facslab.formats import bp4d
from facslab.synth.au_video_datasets import envelope, write_bp4d, write_disfa


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_bp4d(root / "bp4d", n_subjects=6, tasks=("T1", "T6"), frames=10, seed=1, progress=False)
    write_bp4d(root / "bp4d+", n_subjects=4, tasks=("T1", "T6"), frames=8, seed=2, release="bp4d+",
               progress=False)
    write_disfa(root / "disfa", n_subjects=6, frames=12, seed=3, progress=False)
    return root


def test_bp4d_and_bp4d_plus_are_told_apart_and_9_is_unknown(videos):
    first = (videos / "bp4d" / "AUCoding" / "AU_OCC" / "F001_T1.csv").read_text().splitlines()
    assert first[0] == ",".join(str(k) for k in range(100))
    assert int(first[1].split(",")[0]) == 2  # frames cover only the coded segment
    plus = (videos / "bp4d+" / "AUCoding" / "AU_OCC" / "F001_T1.csv").read_text().splitlines()[0].split(",")
    assert plus[0] == "Frame" and 20 < len(plus) < 100
    table = bp4d.read_bp4d(videos / "bp4d")
    assert set(table["release"]) == {"bp4d"} and set(bp4d.read_bp4d(videos / "bp4d+")["release"]) == {"bp4d+"}
    release, raw = bp4d.read_occurrence_csv(videos / "bp4d" / "AUCoding" / "AU_OCC" / "F001_T1.csv")
    labels = bp4d.occurrence_to_model_aus(raw)
    for code in (1, 2, 4, 6, 12):  # 9 becomes NaN, 0 and 1 stay
        column = raw[code].to_numpy()
        model = labels[:, AU_INDEX[str(code)]]
        assert np.array_equal(np.isnan(model), np.isnan(column)) and np.array_equal(model[~np.isnan(model)],
                                                                                    column[~np.isnan(column)])
    merged = pd.DataFrame({23: [1, 0, 0, np.nan, np.nan], 24: [np.nan, 0, 1, 0, np.nan]})
    out = bp4d.occurrence_to_model_aus(merged)[:, AU_INDEX["23/24"]]
    assert out[:3].tolist() == [1, 0, 1] and np.isnan(out[3]) and np.isnan(out[4])  # unknown partner: unknown


def test_every_coded_frame_has_the_emotion_its_task_induced(tmp_path):
    import shutil

    from facslab.errors import ConfigError

    args = dict(image_size=32, cache_dir=str(tmp_path / "cache"), progress=False, preprocess_workers=0, n_folds=2)
    plus = write_bp4d(tmp_path / "bp4d+", n_subjects=4, frames=4, seed=6, release="bp4d+", progress=False)
    dm = BP4DEmotionDataModule(str(plus), **args)
    dm.setup()
    names = np.asarray(dm.classes)[dm.labels_array()]
    assert (names == [bp4d.BP4D_PLUS_TASK_EMOTIONS[t] for t in dm.samples["task"]]).all()
    assert set(dm.samples["task"]) == {f"T{k}" for k in range(1, 11)} and "skepticism" in set(names)
    root = write_bp4d(tmp_path / "bp4d", n_subjects=5, frames=4, seed=6, progress=False)
    labels = root / "AUCoding" / "AU_OCC"
    shutil.copy(labels / "F001_T1.csv", labels / "F001_T9.csv")  # BP4D has no T9
    dm = BP4DEmotionDataModule(str(root), drop_classes=["skepticism"], **args)
    dm.setup()
    assert "T9" not in set(dm.samples["task"]) and "F001_T9.csv" in " ".join(dm.report.to_frame()["file"])
    names = np.asarray(dm.classes)[dm.labels_array()]
    assert (names == [bp4d.BP4D_TASK_EMOTIONS[t] for t in dm.samples["task"]]).all()
    frames = BP4DDataModule(str(root), **args)
    frames.setup()
    held = lambda m: set(m.samples.loc[m.samples["role"] == "test", "subject"])  # noqa: E731
    assert held(dm) == held(frames) and held(dm)  # an AU model's test participants are the emotions' too
    aus = dm.true_aus()
    assert np.isnan(aus[:, AU_INDEX["25"]]).all() and np.isfinite(aus[:, AU_INDEX["12"]]).mean() > 0.9
    with pytest.raises(ConfigError, match="min_intensity must be 1"):
        dm.true_aus(2)


def test_a_broken_occurrence_file_is_reported_and_the_rest_read(videos, tmp_path):
    import shutil

    copy = tmp_path / "bp4d"
    shutil.copytree(videos / "bp4d" / "AUCoding", copy / "AUCoding")
    path = copy / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-1] + "7"
    path.write_text("\n".join(lines) + "\n")
    report = SkipReport()
    table = bp4d.read_bp4d(copy, report=report)
    assert len(report) == 1 and "line 4" in report.to_frame()["problem"][0] and "F001_T1.csv" in report.to_frame()["file"][0]
    assert "F001" in set(table["subject"]) and len(table) > 0  # F001's other task is still read
    with pytest.raises(BadInputError, match="no AU_OCC"):
        bp4d.read_bp4d(tmp_path / "nothing")


def test_disfa_reader_and_protocols(videos, tmp_path):
    table = bp4d.read_disfa(videos / "disfa")
    assert len(table) == 6 * 12 and table["frame"].min() == 1
    values = np.stack(table["intensity"])
    assert values.shape[1] == 12 and values.min() >= 0 and values.max() <= 5
    lines = (videos / "disfa" / "ActionUnit_Labels" / "SN001" / "SN001_au12.txt").read_text().splitlines()
    assert lines[0].count(",") == 1 and lines[0].startswith("1,")
    occurrence = bp4d.disfa_to_model_aus(values[0], 2.0)
    assert np.isfinite(occurrence).sum() == 8  # the detection protocol's 8 AUs; the rest is not coded
    assert np.isfinite(bp4d.disfa_to_model_aus(values[0], None, bp4d.DISFA_AUS)).sum() == 12
    (videos / "disfa" / "ActionUnit_Labels" / "SN003" / "SN003_au9.txt").rename(tmp_path / "moved.txt")
    try:
        report = SkipReport()
        assert set(bp4d.read_disfa(videos / "disfa", report=report)["subject"]) == {f"SN00{k}" for k in (1, 2, 4, 5, 6)}
        assert "SN003_au9.txt" in report.to_frame()["file"][0]
    finally:
        (tmp_path / "moved.txt").rename(videos / "disfa" / "ActionUnit_Labels" / "SN003" / "SN003_au9.txt")


def test_generated_videos_rise_to_an_apex_and_fall(videos):
    shape = envelope(12, np.random.default_rng(0))
    assert shape[0] == 0 and shape.max() == 1 and shape[-1] == 0
    table = bp4d.read_disfa(videos / "disfa")
    one = np.stack(table[table["subject"] == "SN002"]["intensity"]).sum(1)
    assert one.max() > one[0] and one.max() > one[5]  # the first of the two expressions peaks in the middle


def test_unknown_labels_change_no_metric():
    """A NaN label (BP4D's 9) is never a negative: the metrics equal those without those rows."""
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 18)) < 0.4).astype(np.float32)
    probs = np.clip(labels * 0.6 + rng.random((60, 18)) * 0.5, 0, 1)
    masked = labels.copy()
    masked[:20, 3] = np.nan
    with_nan = per_au_metrics(probs, masked, np.full(18, 0.5))
    without = per_au_metrics(probs[20:], labels[20:], np.full(18, 0.5))
    for column in ("precision", "recall", "f1", "pr_auc"):
        assert with_nan[column][3] == pytest.approx(without[column][3])
    assert with_nan["support"][3] == without["support"][3]


@pytest.mark.slow
def test_au_detection_on_bp4d_trains_with_unknowns_masked(videos, tmp_path, cli):
    """Through `facslab sweep`: BP4D frames with 9s train the AU task; the per-AU table has no
    value for the AUs BP4D does not code."""
    config = tmp_path / "bp4d.yaml"
    config.write_text(f"""study: bp4d
n_trials: 1
pruner: none
datamodule: {{class_path: BP4DDataModule, init_args: {{root: {videos / 'bp4d'}, n_folds: 2, image_size: 32, batch_size: 16, cache_dir: {tmp_path / 'cache'},
       progress: false, preprocess_workers: 0}}}}
model: {{class_path: AUDetector, init_args: {{backbone: resnet18, unfrozen_blocks: 1, hidden_size: 32}}}}
train: {{max_epochs: 2, progress: false, init_from: null}}
search: {{lr: {{choices: [1.0e-3]}}}}
register: {{name: bp4d-au}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "registered bp4d-au version 1: cross-validated PR-AUC" in out.stdout
    dm = BP4DDataModule(str(videos / "bp4d"), n_folds=2, image_size=32, cache_dir=str(tmp_path / "cache"),
                        progress=False, preprocess_workers=0)
    dm.setup()
    labels = dm.labels_array()
    assert np.isnan(labels[:, AU_INDEX["25"]]).all() and np.isfinite(labels[:, AU_INDEX["12"]]).mean() > 0.9


def test_icc_3_1():
    truth = np.array([0, 1, 2, 3, 4, 5, 2, 1], float)
    assert icc_3_1(truth, truth) == pytest.approx(1.0)
    assert icc_3_1(truth + 1.0, truth) == pytest.approx(1.0)  # consistency: a constant offset is not penalised
    assert icc_3_1(5 - truth, truth) == pytest.approx(-1.0)  # the opposite ranking
    with_unknown = truth.copy()
    with_unknown[0] = np.nan
    assert icc_3_1(truth, with_unknown) == pytest.approx(1.0)


def test_ckplus_intensity_target_leaves_ungraded_aus_unknown(ckplus, tmp_path):
    values = intensities_from_facs_codes({12: 4, 6: 0, 25: 2, 11: 3})
    assert values[AU_INDEX["12"]] == 4 and np.isnan(values[AU_INDEX["6"]]) and values[AU_INDEX["1"]] == 0
    root, _ = ckplus
    dm = CKPlusDataModule(str(root), target="intensity", image_size=32, cache_dir=str(tmp_path / "cache"),
                          progress=False, preprocess_workers=0)
    dm.setup()
    labels = dm.labels_array()
    assert np.nanmax(labels) <= 5 and np.nanmax(labels) >= 2 and np.isnan(labels).any()


@pytest.mark.slow
def test_au_intensity_sweep_on_disfa_and_the_live_csv_intensity_columns(videos, model_dir, tmp_path, cli):
    store = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    config = tmp_path / "disfa.yaml"
    config.write_text(f"""study: disfa-intensity
task: au_intensity
n_trials: 1
pruner: none
datamodule: {{class_path: DISFADataModule, init_args: {{root: {videos / 'disfa'}, target: intensity, n_folds: 2, image_size: 32, batch_size: 16,
       cache_dir: {tmp_path / 'cache'}, progress: false, preprocess_workers: 0}}}}
model: {{class_path: AUIntensityRegressor, init_args: {{backbone: resnet18, unfrozen_blocks: 1}}}}
train: {{max_epochs: 2, progress: false, init_from: null}}
search: {{loss: {{choices: [mse]}}}}
""")
    out = cli("sweep", "--config", str(config), env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "registered facslab-au-intensity version 1: cross-validated ICC(3,1)" in out.stdout and "MAE" in out.stdout
    import skimage.data

    from facslab.synth.video import photo_frames, write_mp4

    video = write_mp4(tmp_path / "astronaut.mp4", photo_frames(skimage.data.astronaut(), 5, (320, 320)))
    live = cli("live", "--source", str(video), "--model", str(model_dir), "--intensity_model",
               "models:/facslab-au-intensity@champion", "--csv", str(tmp_path / "live.csv"), "--quiet", env=store)
    assert live.returncode == 0, live.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "live.csv")))
    assert rows and {"AU01_r", "AU12_r", "AU45_r"} <= set(rows[0]) and 0 <= float(rows[0]["AU12_r"]) <= 5


@pytest.mark.parametrize("task", ["au_intensity", "au", "emotion", "au_affect"])
def test_every_task_keeps_and_early_stops_on_its_own_objective(task):
    """By default the kept epoch is the one with the best objective (ICC for intensity, PR-AUC
    for AUs, accuracy for emotions, the combined score for AU+affect), not the lowest loss: MSE
    prefers a model shrunk towards the mean, which ICC and CCC score low."""
    from facslab.tasks import get_task

    module = get_task(task).module_class
    assert module.selected_by() == (module.objective, "max")


def test_intensity_keeps_the_epoch_of_best_icc_through_fit(videos, tmp_path):
    import lightning as L
    import torch

    from datamodules import DISFADataModule
    from facslab.training import TrainerConfig, fit, predict
    from lightning_modules.au_intensity import AUIntensityRegressor

    L.seed_everything(0)
    dm = DISFADataModule(str(videos / "disfa"), target="intensity", image_size=32, batch_size=16, n_folds=2,
                         cache_dir=str(tmp_path / "cache"), progress=False, preprocess_workers=0)
    dm.setup("fit")
    model = AUIntensityRegressor(loss="mse", lr=1e-3, unfrozen_blocks=-1, image_size=32, mean=list(dm.mean),
                                 std=list(dm.std))
    result = fit(model, dm, TrainerConfig(max_epochs=6, patience=6, progress=False))
    icc = [epoch["val_icc"] for epoch in result.history]
    loss = [epoch["val_loss"] for epoch in result.history]
    assert result.best_epoch == int(np.argmax(icc)), icc
    assert int(np.argmin(loss)) != result.best_epoch, loss  # this run tells the two rules apart
    outputs, labels = predict(result.model, dm.val_dataloader())  # the restored weights score the kept ICC
    assert float(model.validation_metrics(torch.from_numpy(outputs), torch.from_numpy(labels))["val_icc"]) == \
        pytest.approx(max(icc), abs=1e-4)
