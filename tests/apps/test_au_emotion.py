"""AU -> emotion on CK+'s emotion labels and BP4D's induced emotions: the shipped FACS rule table,
the learned co-occurrence table (threshold swept on training folds), logistic regression and the
personalised table, through `facslab au-emotion`."""

import os

import mlflow
import numpy as np
import pandas as pd
import pytest

from facslab.au import AU_INDEX
from facslab.badinput import BadInputError
from facslab.au_emotion import RuleTable, au_frequencies, personalised
from facslab.au_emotion.evaluate import first_halves, personal_accuracy


def test_rule_table_matches_prototypes_and_names_bad_rows(tmp_path):
    table = RuleTable.from_csv()
    vector = np.zeros(18)
    for label in ("1", "2", "5", "26/27"):
        vector[AU_INDEX[label]] = 1
    assert table.label(vector)[0] == "surprise"
    vector = np.zeros(18)
    vector[[AU_INDEX["6"], AU_INDEX["12"]]] = 1
    assert table.label(vector) == ("happy", 1.0)
    bad = tmp_path / "rules.csv"
    bad.write_text("emotion,aus\nhappy,6+12\nodd,4+16\n")
    with pytest.raises(BadInputError, match="rules.csv: line 3: AU 16 is not one of the model's AUs"):
        RuleTable.from_csv(bad)


def test_learned_table_follows_cooccurrence_and_its_threshold():
    rng = np.random.default_rng(0)
    aus = np.zeros((200, 18))
    emotions = np.repeat([0, 1], 100)
    aus[:100, AU_INDEX["12"]] = 1
    aus[:100, AU_INDEX["7"]] = rng.random(100) < 0.6  # AU7 in 60 % of happy faces
    aus[100:, AU_INDEX["4"]] = 1
    aus[100:, AU_INDEX["7"]] = rng.random(100) < 0.7
    low = RuleTable.learned(aus, emotions, ("happy", "anger"), threshold=0.5)
    high = RuleTable.learned(aus, emotions, ("happy", "anger"), threshold=0.9)
    assert AU_INDEX["7"] in low.sets["happy"] and AU_INDEX["7"] not in high.sets["happy"]
    assert (high.predict(aus) == emotions).mean() == 1.0


def test_uncoded_aus_count_neither_way():
    table = RuleTable.from_csv(classes=("surprise", "happy"))
    row = np.full(18, np.nan)
    row[[AU_INDEX["1"], AU_INDEX["2"], AU_INDEX["12"]]] = [1, 1, 0]  # 5 and 26/27 not coded (BP4D codes neither)
    assert table.scores(row[None])[0, 0] == 1.0  # 1+2 of the coded part of 1+2+5+26/27
    assert table.scores(np.nan_to_num(row)[None])[0, 0] == 0.5  # coded absent, they count against
    aus = np.array([[1, np.nan], [1, 0], [0, np.nan], [np.nan, np.nan]])
    frequency, counts = au_frequencies(aus, np.array([0, 0, 0, 1]), 2)
    assert frequency[0].tolist() == [2 / 3, 0.0] and counts[0].tolist() == [3, 1] and np.isnan(frequency[1]).all()


def test_a_personalised_table_learns_a_participants_own_display():
    classes = ("happy", "anger")
    shared_aus = np.zeros((40, 18))
    shared_aus[:20, AU_INDEX["12"]] = 1
    shared_aus[20:, AU_INDEX["4"]] = 1
    shared = au_frequencies(shared_aus, np.repeat([0, 1], 20), 2)[0]
    own = np.zeros((8, 18))  # this participant's anger is a dimpler (14), not a frown
    own[:4, AU_INDEX["12"]] = 1
    own[4:, AU_INDEX["14"]] = 1
    own_emotions = np.repeat([0, 1], 4)
    later = own[[0, 4]]
    shared_table = personalised(shared, own, own_emotions, classes, 0.5, float("inf"))
    assert shared_table.sets == RuleTable.learned(shared_aus, np.repeat([0, 1], 20), classes, 0.5).sets
    assert shared_table.predict(later).tolist() != [0, 1]
    assert personalised(shared, own, own_emotions, classes, 0.5, 0.0).predict(later).tolist() == [0, 1]
    only_happy = personalised(shared, own[:4], own_emotions[:4], classes, 0.5, 0.0)
    assert only_happy.sets["anger"] == shared_table.sets["anger"]  # no frame of theirs: the shared set stands
    mixed = personalised(shared, own, own_emotions, classes, 0.5, 4.0)  # 4 own frames against a prior of 4
    assert mixed.sets["anger"] == {AU_INDEX["4"], AU_INDEX["14"]} and mixed.sets["happy"] == {AU_INDEX["12"]}


def test_personal_tables_adjust_on_first_halves_and_never_on_the_frames_they_score():
    samples = pd.DataFrame({"video": ["a"] * 5 + ["b"] * 2 + ["c"], "frame": [4, 0, 3, 1, 2, 7, 5, 9]})
    assert first_halves(samples).tolist() == [False, True, False, True, True, False, True, True]
    shared = np.zeros((2, 18))
    shared[0, AU_INDEX["12"]] = shared[1, AU_INDEX["4"]] = 1
    aus = np.zeros((6, 18))
    aus[:, AU_INDEX["14"]] = 1  # one participant, every frame a dimpler
    emotions = np.array([0, 0, 0, 1, 1, 1])
    adapt = np.array([True, True, False, True, True, False])
    right = personal_accuracy(shared, aus, emotions, np.zeros(6), adapt, ("happy", "anger"), 0.5, 0.0)
    assert np.isnan(right[adapt]).all()
    relabelled = personal_accuracy(shared, aus, np.where(adapt, emotions, 1 - emotions), np.zeros(6), adapt,
                                   ("happy", "anger"), 0.5, 0.0)
    assert (relabelled[~adapt] == 1 - right[~adapt]).all()  # the scored frames' labels changed the score only


def test_au_emotion_mistakes_are_one_line_before_any_work(emotion_model_dir, tmp_path, capsys, monkeypatch):
    from facslab.cli import main

    monkeypatch.setenv("FACSLAB_MLRUNS", str(tmp_path / "store"))

    old = tmp_path / "old.yaml"
    old.write_text(f"data: {{root: {tmp_path}}}\nau_model: null\n")
    data = f"{{class_path: BP4DEmotionDataModule, init_args: {{root: {tmp_path / 'none'}}}}}"
    for args, words in (
            (["--config.datamodule", "{class_path: CKPlusDataModule, init_args: {root: x}}"], "emotion labels and AU codes"),
            (["--config.datamodule", data, "--config.min_intensity", "2"], "codes AU occurrence, not intensity"),
            (["--config.datamodule", data, "--config.au_model", str(emotion_model_dir)], "of the emotion task"),
            (["--config.datamodule", data, "--config.au_model", str(emotion_model_dir).replace("emotion_model", "gone")],
             "model not found"),
            (["--config.data", "{root: x}"], "au-emotion names its datamodule"),  # the shape before class paths
            (["--config", str(old)], "instead of data: {...}")):
        assert main(["au-emotion", "--config.output", str(tmp_path / "out"), *args]) == 2
        said = capsys.readouterr().err.strip().splitlines()
        assert len(said) == 1 and words in said[0], said
    assert not (tmp_path / "store").exists()  # no store, no experiment opened for a mistake


@pytest.mark.slow
def test_au_emotion_command_reports_three_methods_on_true_and_predicted_aus(ckplus, model_dir, tmp_path, cli):
    root, _ = ckplus
    out = tmp_path / "out"
    env = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    data = (f"{{class_path: CKPlusEmotionDataModule, init_args: {{root: {root}, image_size: 32, cache_dir: "
            f"{tmp_path / 'cache'}, n_folds: 2, test_fraction: 0.3, progress: false, preprocess_workers: 0}}}}")
    done = cli("au-emotion", "--config.datamodule", data, "--config.au_model", str(model_dir), "--config.output",
               str(out), "--config.threshold_steps", "5", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out / "au_emotion.csv")
    assert len(table) == 6 and set(table["aus"]) == {"ground-truth AUs", "predicted AUs"}
    assert table["method"].str.startswith(("FACS rule table", "learned table", "logistic regression")).all()
    assert table["accuracy"].between(0, 1).all() and (table["accuracy_lo"] <= table["accuracy"]).all()
    rules_on_truth = table[(table["aus"] == "ground-truth AUs") & (table["method"] == "FACS rule table")]
    assert rules_on_truth["accuracy"].iloc[0] >= 0.5  # the generated faces pose the prototypes
    assert (out / "au_emotion_confusion.png").stat().st_size > 1000 and (out / "au_frequencies.png").exists()
    frequencies = pd.read_csv(out / "au_frequencies.csv", index_col=0).dropna()
    assert len(frequencies) >= 3 and (frequencies.max(axis=1) > 0.8).all()  # each emotion shows its prototype AUs
    os.environ["FACSLAB_MLRUNS"] = str(tmp_path / "store")
    try:
        from facslab.mlflow_store import setup_tracking

        setup_tracking(None, "facslab")
        trials = mlflow.search_runs(filter_string="tags.stage = 'au-emotion-trial'", search_all_experiments=True)
        assert len(trials) == 5  # the threshold sweep, one nested run per grid point
        parent = mlflow.search_runs(filter_string="tags.stage = 'au-emotion'", search_all_experiments=True)
        assert len(parent) == 1 and (trials["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]).all()
    finally:
        os.environ.pop("FACSLAB_MLRUNS")


@pytest.mark.slow
def test_bp4d_induced_emotions_from_true_aus_and_a_temporal_model_with_personal_tables(model_dir, tmp_path, cli):
    import torch

    from facslab.predictor import TemporalAUPredictor
    from facslab.synth.au_video_datasets import write_bp4d
    from lightning_modules.temporal import TemporalAUDetector

    root = write_bp4d(tmp_path / "bp4d", n_subjects=8, frames=8, seed=5, progress=False)
    torch.manual_seed(0)
    temporal = TemporalAUPredictor(TemporalAUDetector("mobilenet3d", window=4, width=8, image_size=32)).save(
        tmp_path / "temporal")
    store = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    data = (f"{{class_path: BP4DEmotionSequenceDataModule, init_args: {{root: {root}, image_size: 32, cache_dir: "
            f"{tmp_path / 'cache'}, n_folds: 2, test_fraction: 0.25, drop_classes: [skepticism], progress: false, "
            "preprocess_workers: 0}}")
    out = tmp_path / "out"
    done = cli("au-emotion", "--config.datamodule", data, "--config.au_model", str(temporal),
               "--config.output", str(out), "--config.threshold_steps", "3", env=store)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out / "au_emotion.csv")
    assert len(table) == 10 and set(table["aus"]) == {"ground-truth AUs", "predicted AUs"}
    personal = table[table["method"].str.startswith("personalised table")]
    shared = table[table["method"] == "shared table, later frames"]
    assert len(personal) == 2 and len(shared) == 2 and (personal["n"].to_numpy() == shared["n"].to_numpy()).all()
    full = table[table["method"] == "FACS rule table"]
    assert (shared["n"].to_numpy() < full["n"].to_numpy()).all() and (table["subjects"] == 2).all()
    assert ((table["accuracy_lo"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_hi"])).all()
    truth = table[table["aus"] == "ground-truth AUs"].set_index("method")["accuracy"]
    assert truth.filter(like="learned table").iloc[0] > 1 / 8  # the frames' own AUs carry their task's emotion
    gains = [line for line in (out / "au_emotion.md").read_text().splitlines() if line.startswith("Personalised minus")]
    assert len(gains) == 2 and all("paired bootstrap over participants" in line for line in gains)
    frequencies = pd.read_csv(out / "au_frequencies.csv", index_col=0)
    assert "AU25" not in frequencies.columns and "AU12" in frequencies.columns  # BP4D's protocol AUs only
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store'}/mlflow.db"
    runs = MlflowClient(uri).search_runs(
        [e.experiment_id for e in MlflowClient(uri).search_experiments()], "tags.stage = 'au-emotion-trial'")
    assert sorted({r.data.tags["searched"] for r in runs}) == ["strength", "threshold"] and len(runs) == 3 + 8
    # a frame model cannot read the stacks, and a rule table must name every class: one line, exit 2
    rules = tmp_path / "rules.csv"
    rules.write_text("emotion,aus\nhappy,6+12\n")
    missing = cli("au-emotion", "--config.datamodule", data, "--config.au_model", "null", "--config.rules", str(rules),
                  "--config.output", str(tmp_path / "wrong"), env=store)
    assert missing.returncode == 2 and "has no row for sadness, surprise" in missing.stderr
    wrong = cli("au-emotion", "--config.datamodule", data, "--config.au_model", str(model_dir),
                "--config.output", str(tmp_path / "wrong"), "--config.threshold_steps", "3", env=store)
    assert wrong.returncode == 2 and "reads one frame" in wrong.stderr and "Traceback" not in wrong.stderr
