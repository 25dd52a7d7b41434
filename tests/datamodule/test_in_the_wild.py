"""The in-the-wild multi-task data: EmotioNet's AUs and Aff-Wild2's valence/arousal in one
datamodule, each part split exactly as its own datamodule splits it, and the joint model trained
by `facslab sweep` from sweeps/in_the_wild_demo.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from datamodules import AffWild2DataModule, AUAffectDataModule, EmotioNetDataModule
from facslab.synth.affwild2 import write_affwild2
from facslab.synth.emotionet import write_emotionet

from conftest import run_cli

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("wild")
    write_emotionet(root / "emotionet", n_images=80, seed=3, progress=False)
    write_affwild2(root / "affwild2", n_train=5, n_validation=2, frames=12, seed=3, progress=False)
    return root / "emotionet", root / "affwild2"


def test_each_part_keeps_its_own_split_and_the_other_half_is_unknown(copies, tmp_path):
    emotionet, affwild2 = copies
    common = dict(image_size=32, cache_dir=str(tmp_path / "cache"), progress=False, preprocess_workers=0)
    dm = AUAffectDataModule(str(emotionet), str(affwild2), au_data="EmotioNetDataModule",
                            affect_data="AffWild2DataModule", affect_options={"frame_step": 2}, **common)
    dm.setup("fit")
    labels, datasets = dm.labels_array(), dm.samples["dataset"].to_numpy()
    assert labels.shape[1] == 20 and set(datasets) == {"EmotioNet", "AffWild2"}
    assert np.isnan(labels[datasets == "AffWild2", :18]).all() and not np.isnan(labels[datasets == "AffWild2", 18:]).any()
    assert np.isnan(labels[datasets == "EmotioNet", 18:]).all()
    alone = EmotioNetDataModule(str(emotionet), **common)
    alone.setup("fit")
    joint = dm.samples[datasets == "EmotioNet"]
    assert list(joint["role"]) == list(alone.samples["role"]) and list(joint["ok"]) == list(alone.samples["ok"])
    va = AffWild2DataModule(str(affwild2), frame_step=2, **common)
    va.setup("fit")
    assert list(dm.samples[datasets == "AffWild2"]["role"]) == list(va.samples["role"])
    for role in ("train", "val", "test"):
        assert set(datasets[dm.positions(role)]) == {"EmotioNet", "AffWild2"}


def _sweep(cli, config: str, study: str, data: dict, store: Path, *more: str):
    args = ["sweep", "--config", str(SWEEPS / config), "--config.study", study, "--config.n_trials", "1",
            "--config.search", "{backbone: {choices: [resnet18]}}", "--config.enqueue", "[]",
            "--config.train.max_epochs", "1", "--config.train.progress", "false", *more]
    for key, value in data.items():
        args += [f"--config.datamodule.{key}", str(value)]
    out = cli(*args, env={"FACSLAB_MLRUNS": str(store)})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_the_joint_model_is_compared_with_single_task_models_on_the_same_test_rows(copies, tmp_path, cli):
    """The demo's three configs (joint, EmotioNet AUs alone, Aff-Wild2 valence/arousal alone), one
    ResNet-18 trial each, then the report's comparison of the three registered models."""
    emotionet, affwild2 = copies
    store, common = tmp_path / "store", {"image_size": 32, "cache_dir": tmp_path / "cache"}
    out = _sweep(cli, "in_the_wild_demo.yaml", "wild-test", {"root": emotionet, "affectnet_root": affwild2, **common}, store)
    assert "facslab-au-affect-in-the-wild version 1" in out.stdout and "AU PR-AUC" in out.stdout, out.stdout
    _sweep(cli, "emotionet_au_demo.yaml", "emotionet-test", {"root": emotionet, **common}, store)
    _sweep(cli, "affwild2_va_demo.yaml", "affwild2-test", {"root": affwild2, **common}, store)
    models = ["facslab-au-affect-in-the-wild/1", "facslab-au-emotionet/1", "facslab-va-affwild2/1"]
    report = cli("report", "--config.output", str(tmp_path / "report"), "--config.compare", json.dumps(models),
                 env={"FACSLAB_MLRUNS": str(store)})
    assert report.returncode == 0, report.stderr[-3000:]

    # every cell is the figure the model logged at its own test look
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    au = pd.read_csv(tmp_path / "report" / "comparison_au.csv", keep_default_na=False, na_values=[""])
    affect = pd.read_csv(tmp_path / "report" / "comparison_affect.csv")
    logged = {}
    for uri in models:
        name, version = uri.split("/")
        run_id = client.get_model_version(name, version).run_id
        for path in ("metrics/test_per_au.csv", "metrics/test_affect.csv"):
            if path in {a.path for a in client.list_artifacts(run_id, "metrics")}:
                logged[uri, path] = pd.read_csv(client.download_artifacts(run_id, path, str(tmp_path / uri)),
                                                keep_default_na=False, na_values=[""])
    assert {k[0] for k in logged if k[1].endswith("per_au.csv")} == {models[0], models[1]}
    assert {k[0] for k in logged if k[1].endswith("affect.csv")} == {models[0], models[2]}
    for (uri, path), table in logged.items():
        column = next(c for c in (au if "per_au" in path else affect) if c.startswith(uri + " ") and
                      c.endswith(" pr_auc" if "per_au" in path else " ccc"))
        mine = (au if "per_au" in path else affect)[column].to_numpy(float)
        theirs = table["pr_auc" if "per_au" in path else "ccc"].to_numpy(float)
        np.testing.assert_array_equal(mine, theirs)
        assert np.isfinite(mine[-1]), (uri, path, mine)  # the mean row
    markdown = (tmp_path / "report" / "comparison.md").read_text()
    assert "| **mean** |" in markdown and "| valence |" in markdown and markdown.count(" F1 | PR-AUC") == 2
    assert (tmp_path / "report" / "comparison_pr_auc.png").stat().st_size > 5000

    # a model tested on other rows (another seed draws another EmotioNet test split) is refused, in one line
    _sweep(cli, "emotionet_au_demo.yaml", "emotionet-other-split", {"root": emotionet, **common, "seed": 5}, store)
    # a user's mistake: one line on stderr, as a real process writes it
    other = run_cli("report", "--config.output", str(tmp_path / "other"), "--config.compare",
                    json.dumps([models[0], "facslab-au-emotionet/2"]), env={"FACSLAB_MLRUNS": str(store)})
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr[-2000:]
    assert len(other.stderr.strip().splitlines()) == 1 and "other AU rows" in other.stderr, other.stderr
    # a version and its alias are one model, not two columns
    twice = cli("report", "--config.output", str(tmp_path / "twice"), "--config.compare",
                json.dumps([models[0], "facslab-au-affect-in-the-wild@champion"]), env={"FACSLAB_MLRUNS": str(store)})
    assert twice.returncode == 2 and "given twice" in twice.stderr, twice.stderr[-2000:]
