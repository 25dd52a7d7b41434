"""The in-the-wild multi-task data: EmotioNet's AUs and Aff-Wild2's valence/arousal in one
datamodule, each part split exactly as its own datamodule splits it, and the joint model trained
by `facslab sweep` from sweeps/in_the_wild_demo.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules import AffWild2DataModule, AUAffectDataModule, EmotioNetDataModule
from facslab.synth.affwild2 import write_affwild2
from facslab.synth.emotionet import write_emotionet

from conftest import run_cli

CONFIG = Path(__file__).resolve().parents[2] / "sweeps" / "in_the_wild_demo.yaml"


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


@pytest.mark.slow
def test_the_joint_model_trains_from_the_demo_config(copies, tmp_path):
    emotionet, affwild2 = copies
    out = run_cli("sweep", "--config", str(CONFIG), "--config.study", "wild-test", "--config.n_trials", "1",
                  "--config.data.root", str(emotionet), "--config.data.affectnet_root", str(affwild2),
                  "--config.data.image_size", "32", "--config.data.cache_dir", str(tmp_path / "cache"),
                  "--config.search", "{backbone: {choices: [resnet18]}}", "--config.enqueue", "[]",
                  "--config.train.max_epochs", "1", "--config.train.progress", "false",
                  env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "facslab-au-affect-in-the-wild version 1" in out.stdout and "AU PR-AUC" in out.stdout, out.stdout
