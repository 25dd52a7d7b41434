"""Aff-Wild2 valence/arousal: the ABAW layout read (-5 frames and missing crops counted), the split
by video, and the valence/arousal task trained on it by `facslab sweep` with no code of its own."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules import AffWild2DataModule
from facslab.badinput import BadInputError
from facslab.formats.affwild2 import ANNOTATIONS, read_affwild2, read_va_file
from facslab.synth.affwild2 import write_affwild2


@pytest.fixture(scope="module")
def affwild2(tmp_path_factory):
    root = tmp_path_factory.mktemp("affwild2")
    truth = write_affwild2(root, n_train=5, n_validation=3, frames=16, seed=4, progress=False)
    return root, truth


def test_the_reader_keeps_annotated_frames_with_crops_and_counts_the_rest(affwild2, tmp_path):
    root, truth = affwild2
    table = read_affwild2(root)
    usable = truth[truth["annotated"] & truth["has_crop"]]
    assert len(table) == len(usable) and set(table["set"]) == {"train", "validation"}
    assert sum(table.attrs["not_annotated"].values()) == int((~truth["annotated"]).sum()) == 3
    merged = table.merge(usable, on=["video", "frame"])
    assert np.allclose(merged["valence_x"], merged["valence_y"], atol=1e-3)
    steps = np.abs(np.diff(truth[truth["video"] == truth["video"].iloc[0]]["valence"]))
    assert steps.max() < 0.5  # smooth over time
    assert any(v.endswith("_left") for v in table["video"]) and any(v.endswith("_right") for v in table["video"])
    bad = tmp_path / "bad.txt"
    bad.write_text("valence,arousal\n0.1,0.2\n1.5,0.2\n")
    with pytest.raises(BadInputError, match=r"line 3: '1.5,0.2' is outside \[-1, 1\]"):
        read_va_file(bad)
    assert (root / ANNOTATIONS / "Train_Set").is_dir()


def test_the_split_is_by_video_and_the_official_validation_set_is_the_test_split(affwild2, tmp_path):
    root, _ = affwild2
    dm = AffWild2DataModule(str(root), image_size=32, cache_dir=str(tmp_path / "cache"), progress=False)
    dm.setup("fit")
    assert any("without a crop" in p for p in dm.report.to_frame()["problem"])
    samples = dm.samples[dm.samples["ok"]]
    assert set(samples.loc[samples["set"] == "validation", "role"]) == {"test"}
    assert samples.groupby("video")["role"].nunique().max() == 1  # a video is in one split
    clip = samples["video"].str.replace(r"_(left|right)$", "", regex=True)
    assert samples.groupby(clip)["role"].nunique().max() == 1  # and so is a clip's second person
    assert set(samples["role"]) == {"train", "val", "test"} and dm.labels_array().shape[1] == 2
    final = AffWild2DataModule(str(root), fold=None, image_size=32, cache_dir=str(tmp_path / "cache"), progress=False)
    final.setup("fit")
    assert final.split_id() == dm.split_id() and "val" not in set(final.samples["role"])


@pytest.mark.slow
def test_the_valence_arousal_task_trains_on_affwild2_through_the_sweep(affwild2, tmp_path, cli):
    root, _ = affwild2
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""study: affwild2
task: valence_arousal
n_trials: 1
pruner: none
experiment: affwild2
datamodule: {{class_path: AffWild2DataModule, init_args: {{root: {root}, image_size: 32, batch_size: 16, frame_step: 2, cache_dir: {tmp_path / 'cache'}, progress: false}}}}
model: {{class_path: ValenceArousalRegressor, init_args: {{backbone: resnet18, unfrozen_blocks: 1}}}}
train: {{max_epochs: 1, patience: 1, init_from: null, progress: false}}
register: {{name: affwild2-va}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "affwild2-va version 1" in out.stdout and "CCC" in out.stdout, out.stdout
