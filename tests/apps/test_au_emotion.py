"""AU -> emotion on CK+'s emotion labels: the shipped FACS rule table, the learned co-occurrence
table (threshold swept on training folds) and logistic regression, through `facslab au-emotion`."""

import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from facslab.au import AU_INDEX
from facslab.au_emotion import RuleTable


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
    with pytest.raises(ValueError, match="rules.csv:3: AU 16 is not one of the model's AUs"):
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


@pytest.mark.slow
def test_au_emotion_command_reports_three_methods_on_true_and_predicted_aus(ckplus, model_dir, tmp_path):
    root, _ = ckplus
    out = tmp_path / "out"
    env = {**os.environ, "FACSLAB_MLRUNS": str(tmp_path / "store")}
    data = (f"{{root: {root}, image_size: 32, cache_dir: {tmp_path / 'cache'}, n_folds: 2, test_fraction: 0.3, "
            "progress: false, preprocess_workers: 0}")
    done = subprocess.run([sys.executable, "-m", "facslab.cli", "au-emotion", "--config.data", data,
                           "--config.au_model", str(model_dir), "--config.output", str(out),
                           "--config.threshold_steps", "5"], capture_output=True, text=True, timeout=600, env=env)
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
