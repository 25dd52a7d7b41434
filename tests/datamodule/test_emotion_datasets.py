"""AffectNet (both releases), RAF-DB and CK+'s emotion labels: readers on generated files in the
real layouts with their quirks, the datamodules' splits, the valence/arousal task, and the ensemble
table built from registered models."""

import os
import re

import mlflow
import numpy as np
import pandas as pd
import pytest

from datamodules import AffectNetDataModule, CKPlusEmotionDataModule, RAFDBDataModule
from facslab.badinput import SkipReport
from facslab.formats import affectnet, rafdb
from facslab.synth.emotion_datasets import write_affectnet, write_rafdb


@pytest.fixture(scope="module")
def affectnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet")
    write_affectnet(root, n_train=260, n_test_per_code=4, seed=2, progress=False)
    return root


def test_affectnet_csv_release_reader(affectnet_root):
    header = (affectnet_root / affectnet.LISTS / "training.csv").read_text().splitlines()[0]
    assert header == ",".join(affectnet.COLUMNS)
    report = SkipReport()
    train = affectnet.read_affectnet(affectnet_root, "train", report)
    test = affectnet.read_affectnet(affectnet_root, "test", report)
    assert len(report) == 0 and len(train) == 260 and len(test) == 44
    assert sorted(test["expression"].value_counts()) == [4] * 11  # 500 per code in the release
    with_face = train[train["landmarks"].notna()]
    assert all(len(points) == 136 for points in with_face["landmarks"])
    # -2 (not annotated) is NaN, and only on codes 8-10
    missing = train[train["valence"].isna()]
    assert len(missing) and set(missing["expression"]) <= {8, 9, 10}
    assert train.loc[train["expression"] < 8, ["valence", "arousal"]].notna().all().all()
    assert train["name"].str.match(r"\d+/[0-9a-f]{56}\.jpg").all()


def test_affectnet_bad_rows_and_files_are_reported_not_fatal(affectnet_root, tmp_path):
    copy = tmp_path / "copy"
    (copy / affectnet.LISTS).mkdir(parents=True)
    lines = (affectnet_root / affectnet.LISTS / "training.csv").read_text().splitlines()
    broken = lines[:1] + [lines[1].replace(";", ";x", 1), lines[2].rsplit(",", 3)[0] + ",12,0.1,0.2"] + lines[3:]
    (copy / affectnet.LISTS / "training.csv").write_text("\n".join(broken) + "\n")
    report = SkipReport()
    table = affectnet.read_affectnet(copy, "train", report)
    assert len(table) == len(lines) - 3 and len(report) == 2
    problems = report.to_frame()
    assert problems["file"].str.endswith(("training.csv:2", "training.csv:3")).all()
    assert problems["problem"].str.contains("expression 12 outside").any()
    dm = AffectNetDataModule(str(affectnet_root), image_size=32, cache_dir=str(tmp_path / "cache" / "aligned"),
                             progress=False, preprocess_workers=0)
    dm.setup("fit")
    skipped = dm.report.to_frame()["problem"].tolist()
    assert any("0 bytes" in p for p in skipped)  # the empty file; the PNG behind .jpg still reads
    assert len(dm.positions("train")) > 100


def test_affectnet_datamodule_splits_classes_and_valence_arousal(affectnet_root, tmp_path):
    common = dict(root=str(affectnet_root), image_size=32, cache_dir=str(tmp_path / "aligned"), progress=False,
                  preprocess_workers=0)
    dm = AffectNetDataModule(**common)
    dm.setup("fit")
    names = dm.samples["image_name"]
    test_names = set(affectnet.read_affectnet(affectnet_root, "test")["name"])
    assert set(names[dm.positions("test")]) <= test_names  # the released validation set is the test set
    assert not set(names[dm.positions("train")]) & test_names and not set(names[dm.positions("val")]) & test_names
    assert dm.labels_array().max() < 8  # None, Uncertain and No-Face are not emotions
    seven = AffectNetDataModule(**common, drop_classes=["contempt"], balance_train=True)
    seven.setup("fit")
    counts = seven.class_counts("train")
    assert len(seven.classes) == 7 and len(set(counts)) == 1  # class-balanced by down-sampling
    va = AffectNetDataModule(**common, target="valence_arousal")
    va.setup("fit")
    labels = va.labels_array()
    assert labels.shape[1] == 2 and labels.dtype == np.float32 and np.abs(labels).max() <= 1
    final = AffectNetDataModule(**common, fold=None)
    final.setup("fit")
    assert len(final.positions("val")) == 0
    assert len(final.positions("train")) == len(dm.positions("train")) + len(dm.positions("val"))
    va_final = AffectNetDataModule(**common, target="valence_arousal", fold=None)
    va_final.setup("fit")
    assert len(va_final.positions("val")) == 0 and va_final.split_id() == va.split_id()


def test_valence_arousal_keeps_the_epoch_of_best_ccc_not_lowest_loss(affectnet_root, tmp_path):
    """Trained with MSE through ``fit`` (Trainer.fit), the regressor keeps and early-stops on the
    validation CCC it is scored by: the lowest-MSE epoch can be a model shrunk to the mean."""
    from facslab.tasks import get_task
    from facslab.training import TrainerConfig, fit, predict
    from facslab.metrics import concordance
    from lightning_modules.valence_arousal import ValenceArousalRegressor

    import lightning as L
    import torch

    L.seed_everything(0)
    dm = AffectNetDataModule(str(affectnet_root), target="valence_arousal", image_size=32, batch_size=32,
                             cache_dir=str(tmp_path / "aligned"), progress=False, preprocess_workers=0)
    dm.setup("fit")
    model = ValenceArousalRegressor(loss="mse", lr=3e-3, image_size=32, mean=list(dm.mean), std=list(dm.std))
    result = fit(model, dm, TrainerConfig(max_epochs=6, patience=2, progress=False))
    ccc = [epoch["val_ccc"] for epoch in result.history]
    loss = [epoch["val_loss"] for epoch in result.history]
    assert result.best_epoch == int(np.argmax(ccc))
    assert result.epochs_run == min(6, result.best_epoch + 3)  # early stopping waits 2 epochs for a better CCC
    assert result.best_val_loss == pytest.approx(loss[result.best_epoch], rel=1e-5)
    outputs, labels = predict(result.model, dm.val_dataloader())  # the restored weights score the kept CCC
    assert float(concordance(torch.from_numpy(outputs), torch.from_numpy(labels)).mean()) == pytest.approx(max(ccc), abs=1e-4)
    assert float(get_task("valence_arousal").fold_score(outputs, labels)) == pytest.approx(max(ccc), abs=1e-3)
    print("val CCC per epoch", np.round(ccc, 3), "val MSE", np.round(loss, 3))


def test_affectnet_2021_release(tmp_path):
    write_affectnet(tmp_path / "an", n_train=40, n_test_per_code=1, seed=4, release="2021", progress=False)
    assert (tmp_path / "an" / "train_set" / "annotations" / "0_exp.npy").is_file()
    table = affectnet.read_affectnet(tmp_path / "an", "train")
    assert len(table) == 40 and table["box"].isna().all() and table["expression"].between(0, 10).all()
    (tmp_path / "an" / "train_set" / "annotations" / "5_aro.npy").unlink()
    report = SkipReport()
    assert len(affectnet.read_affectnet(tmp_path / "an", "train", report)) == 39
    assert "5.jpg" in report.to_frame()["file"].iloc[0]


def test_rafdb_reader_and_datamodule(tmp_path):
    write_rafdb(tmp_path / "raf", n_images=120, seed=3, progress=False)
    assert (tmp_path / "raf" / "basic" / "EmoLabel" / "list_patition_label.txt").is_file()  # the release's spelling
    report = SkipReport()
    table = rafdb.read_rafdb(tmp_path / "raf", report)
    assert len(table) == 120 and len(report) == 2
    assert set(table["role"]) == {"train", "test"} and table["label"].between(0, 6).all()
    assert report.to_frame()["file"].str.contains("list_patition_label.txt:").all()
    dm = RAFDBDataModule(str(tmp_path / "raf"), cache_dir=str(tmp_path / "aligned"), progress=False)
    dm.setup("fit")
    assert dm.cached.crops.shape[1:] == (100, 100, 3)
    assert any(p == "file not found" for p in dm.report.to_frame()["problem"])  # the listed image that is missing
    test_names = dm.samples.loc[dm.positions("test"), "image_name"]
    assert test_names.str.startswith("test_").all()
    assert dm.samples.loc[dm.positions("val"), "image_name"].str.startswith("train_").all()
    write_rafdb(tmp_path / "fixed", n_images=20, seed=3, fixed_spelling=True, progress=False)
    assert len(rafdb.read_rafdb(tmp_path / "fixed")) == 20


def test_ckplus_emotion_labels_with_subject_exclusive_folds(ckplus, tmp_path):
    root, truth = ckplus
    common = dict(root=str(root), image_size=32, cache_dir=str(tmp_path / "aligned"), progress=False,
                  preprocess_workers=0, n_folds=2)
    dm = CKPlusEmotionDataModule(**common, include_neutral=True)
    dm.setup("fit")
    samples = dm.samples[dm.samples["ok"]]
    subjects = {role: set(samples.loc[samples["role"] == role, "subject"]) for role in ("train", "val", "test")}
    assert not subjects["test"] & (subjects["train"] | subjects["val"]) and not subjects["train"] & subjects["val"]
    emotion_files = list((root / "Emotion").rglob("*_emotion.txt"))
    assert (samples["kind"] == "peak").sum() == len(emotion_files)  # only the labelled sequences
    assert dm.classes[0] == "neutral" and (samples["name"] == "neutral").sum() == len(emotion_files)
    peak = CKPlusEmotionDataModule(**common)
    peak.setup("fit")
    assert "neutral" not in peak.classes


@pytest.mark.slow
def test_valence_arousal_sweep_and_the_ensemble_table(affectnet_root, tmp_path, cli):
    """A valence/arousal sweep and a per-backbone emotion sweep through `facslab sweep`, then the
    ensemble table through `facslab report`, from the registered models' stored test outputs."""
    store = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    data = (f"{{root: {affectnet_root}, image_size: 32, batch_size: 32, cache_dir: {tmp_path / 'cache'}, "
            "progress: false, preprocess_workers: 0")
    va = tmp_path / "va.yaml"
    va.write_text(f"""study: va-test
task: valence_arousal
n_trials: 1
pruner: none
datamodule: {{class_path: AffectNetDataModule, init_args: {data}, target: valence_arousal}}}}
model: {{class_path: ValenceArousalRegressor, init_args: {{backbone: resnet18, unfrozen_blocks: 1}}}}
train: {{max_epochs: 2, progress: false, init_from: null}}
search: {{loss: {{choices: [ccc, mse]}}}}
""")
    out = cli("sweep", "--config", str(va), env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "registered facslab-valence-arousal version 1: validation CCC" in out.stdout and "SAGR" in out.stdout
    # the final model's split is its trial's (the carved validation rows train it): promotion compares like ids
    os.environ["FACSLAB_MLRUNS"] = store["FACSLAB_MLRUNS"]
    try:
        from facslab.mlflow_store import setup_tracking

        setup_tracking(None, "facslab")
        runs = mlflow.search_runs(filter_string="tags.study = 'va-test'", output_format="list", search_all_experiments=True)
    finally:
        os.environ.pop("FACSLAB_MLRUNS")
    ids = {r.data.tags["stage"]: r.data.tags["split_id"] for r in runs if "split_id" in r.data.tags}
    assert set(ids) == {"sweep-trial", "final"} and ids["sweep-trial"] == ids["final"], ids
    backbones = tmp_path / "backbones.yaml"
    backbones.write_text(f"""study: backbones-test
task: emotion
n_trials: 2
pruner: none
datamodule: {{class_path: AffectNetDataModule, init_args: {data}}}}}
model: {{class_path: EmotionClassifier, init_args: {{unfrozen_blocks: 1}}}}
train: {{max_epochs: 2, progress: false, init_from: null}}
search: {{backbone: {{choices: [resnet18, shufflenet_v2_x1_0]}}}}
enqueue: [{{backbone: resnet18}}, {{backbone: shufflenet_v2_x1_0}}]
register: {{name: ens, per_backbone: true}}
""")
    out = cli("sweep", "--config", str(backbones), env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "registered ens version 1" in out.stdout and "registered ens version 2" in out.stdout
    report = tmp_path / "report"
    out = cli("report", "--config.output", str(report), "--config.ensemble", "[ens/1, ens/2]", env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    table = pd.read_csv(report / "ensemble.csv")
    assert list(table["model"])[-2:] == ["average", "weighted vote"]
    assert {"(resnet18)", "(shufflenet_v2_x1_0)"} <= {m[m.index("("):] for m in table["model"][:2]}
    assert table[["top1_mean", "top2_mean", "top1_var"]].notna().all().all()
    assert (table["top2_mean"] >= table["top1_mean"]).all()
    assert "weighted vote" in (report / "report.md").read_text()
    out = cli("report", "--config.output", str(report), "--config.ensemble", "[ens/1, facslab-valence-arousal/1]",
              env=store)
    assert out.returncode != 0 and "cv_accuracy" in out.stderr  # not an emotion model: a clear error


@pytest.mark.slow
def test_au_and_valence_arousal_multitask_from_two_datasets(ckplus, affectnet_root, tmp_path, cli):
    """CK+ gives AUs, AffectNet valence/arousal; each half is NaN where a dataset does not
    annotate it, and `facslab sweep` trains and registers the multi-task model on the mix."""
    from datamodules import AUAffectDataModule

    root, _ = ckplus
    common = dict(image_size=32, cache_dir=str(tmp_path / "cache"), progress=False, preprocess_workers=0)
    dm = AUAffectDataModule(str(root), str(affectnet_root), n_folds=2, **common)
    dm.setup()
    labels, datasets = dm.labels_array(), dm.samples["dataset"].to_numpy()
    assert labels.shape[1] == 20
    assert np.isnan(labels[datasets == "CKPlus", 18:]).all() and not np.isnan(labels[datasets == "CKPlus", :18]).any()
    assert np.isnan(labels[datasets == "AffectNet", :18]).all() and not np.isnan(labels[datasets == "AffectNet", 18:]).any()
    for role in ("train", "val", "test"):
        assert set(datasets[dm.positions(role)]) == {"CKPlus", "AffectNet"}
    config = tmp_path / "multitask.yaml"
    config.write_text(f"""study: multitask
task: au_affect
n_trials: 1
pruner: none
datamodule: {{class_path: AUAffectDataModule, init_args: {{root: {root}, affectnet_root: {affectnet_root}, n_folds: 2, image_size: 32, batch_size: 16,
       cache_dir: {tmp_path / 'cache'}, progress: false, preprocess_workers: 0}}}}
model: {{class_path: AUAffectModel, init_args: {{backbone: resnet18, unfrozen_blocks: 1, hidden_size: 32}}}}
train: {{max_epochs: 2, progress: false, init_from: null}}
search: {{affect_weight: {{choices: [0.5]}}}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "registered facslab-au-affect version 1" in out.stdout and "AU PR-AUC" in out.stdout and "CCC" in out.stdout
    # the combined score has an interval of its own quantity (it printed "95% CI nan-nan")
    found = re.search(r"\(PR-AUC \+ CCC\) / 2 (-?[\d.]+) \(95% CI (-?[\d.]+)-(-?[\d.]+)\)", out.stdout)
    assert found, out.stdout
    score, lo, hi = map(float, found.groups())
    assert lo <= score <= hi and lo < hi, found.group(0)
