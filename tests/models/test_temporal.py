"""The temporal AU model: frame stacks from BP4D and CK+ sequences, the two architectures through
the sweep and registry, and a sliding window per tracked face in `facslab live`."""

import csv

import numpy as np
import pytest
import torch

from datamodules import BP4DSequenceDataModule, CKPlusSequenceDataModule
from facslab.synth.au_video_datasets import write_bp4d


@pytest.fixture(scope="module")
def bp4d_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bp4d")
    write_bp4d(root, n_subjects=6, tasks=("T1", "T6"), frames=10, seed=4, progress=False)
    return root


def test_stacks_are_the_frames_before_each_target_in_its_own_video(bp4d_root, ckplus, tmp_path):
    dm = BP4DSequenceDataModule(str(bp4d_root), window=4, n_folds=2, image_size=32, cache_dir=str(tmp_path / "c"),
                                progress=False, preprocess_workers=0)
    dm.setup()
    samples = dm.samples
    for position in dm.positions("train")[:20]:
        window = dm.windows[position]
        assert window[-1] == position or not samples.at[position, "ok"]
        assert len(set(samples.loc[window, "video"])) == 1  # never across videos
        frames = samples.loc[window, "frame"].to_numpy()
        assert (np.diff(frames) >= 0).all() and frames[-1] <= samples.at[position, "frame"]
        assert samples.loc[window, "ok"].all()  # a frame without a face is replaced
    stacks, labels = next(iter(dm.train_dataloader()))
    assert stacks.shape[1:] == (4, 3, 32, 32) and labels.shape[1] == 18
    root, _ = ckplus
    ck = CKPlusSequenceDataModule(str(root), window=4, image_size=32, cache_dir=str(tmp_path / "c"), progress=False,
                                  preprocess_workers=0)
    ck.setup()
    targets = ck.samples[ck.samples["role"] != "context"]
    assert set(targets["kind"]) == {"peak", "frame"} and (targets["frame"] == 0).sum() > 0  # peaks and neutral frames
    peak = targets[targets["kind"] == "peak"].index[0]
    assert ck.samples.at[ck.windows[peak][0], "frame"] < ck.samples.at[peak, "frame"]  # the onset leads to the peak
    assert np.isnan(ck.labels_array()[ck.samples["role"] == "context"]).all()


def test_the_temporal_model_trains_on_ckplus_sequences_through_trainer_fit(ckplus, tmp_path):
    from facslab.config import TrainConfig
    from facslab.tasks import get_task
    from facslab.training import fit, predict

    root, _ = ckplus
    dm = CKPlusSequenceDataModule(str(root), window=4, image_size=32, cache_dir=str(tmp_path / "c"), progress=False,
                                  preprocess_workers=0, batch_size=8)
    dm.setup()
    torch.manual_seed(0)
    model = get_task("au_temporal").build_model({"architecture": "mobilenet3d", "width": 8}, dm, TrainConfig(), None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, dm, TrainConfig(max_epochs=2, progress=False, init_from=None))
    assert np.isfinite(result.best_val_loss) and result.history and "val_pr_auc" in result.history[-1]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("backbone."))
    probs, labels = predict(result.model, dm.val_dataloader())
    assert probs.shape == labels.shape and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.slow
def test_both_architectures_sweep_register_and_slide_over_a_live_video(bp4d_root, model_dir, tmp_path, cli):
    store = {"FACSLAB_MLRUNS": str(tmp_path / "store")}
    config = tmp_path / "temporal.yaml"
    config.write_text(f"""study: temporal
task: au_temporal
n_trials: 2
pruner: none
datamodule: {{class_path: BP4DSequenceDataModule, init_args: {{root: {bp4d_root}, window: 4, n_folds: 2, image_size: 32, batch_size: 16, cache_dir: {tmp_path / 'c'},
       progress: false, preprocess_workers: 0}}}}
model: {{class_path: TemporalAUDetector, init_args: {{width: 8, gru_size: 32, hidden_size: 32, unfrozen_blocks: 1}}}}
train: {{max_epochs: 2, progress: false, init_from: null}}
search: {{architecture: {{choices: [mobilenet3d, frames_gru]}}}}
enqueue: [{{architecture: mobilenet3d}}, {{architecture: frames_gru}}]
""")
    out = cli("sweep", "--config", str(config), env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 complete" in out.stdout and "registered facslab-au-temporal version 1" in out.stdout
    import skimage.data

    from facslab.predictor import TemporalAUPredictor
    from facslab.synth.video import photo_frames, write_mp4

    # an untrained network answers differently as the window fills with the drifting face
    torch.manual_seed(1)
    from lightning_modules.temporal import TemporalAUDetector

    network = TemporalAUDetector("mobilenet3d", window=4, width=8, image_size=32)
    with torch.no_grad():  # large random weights: outputs that depend visibly on the frames
        for parameter in network.parameters():
            parameter.normal_(0, 0.5)
    folder = TemporalAUPredictor(network).save(tmp_path / "temporal_model")
    video = write_mp4(tmp_path / "astronaut.mp4", photo_frames(skimage.data.astronaut(), 8, (320, 320)))
    live = cli("live", "--source", str(video), "--model", str(model_dir), "--temporal_model", str(folder),
               "--csv", str(tmp_path / "live.csv"), "--quiet")
    assert live.returncode == 0, live.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "live.csv")))
    values = [[float(r[c]) for c in r if c.endswith("_tp")] for r in rows]
    assert len(values) == 8 and len(values[0]) == 18
    assert not np.allclose(values[0], values[3])  # the window moved on from the first frame repeated
    registered = cli("live", "--source", str(video), "--model", str(model_dir), "--temporal_model",
                     "models:/facslab-au-temporal@champion", "--max_frames", "3", "--quiet", env=store)
    assert registered.returncode == 0, registered.stderr[-3000:]
    # BP4D's induced emotions from the registered model's AUs: on its own held-out participants,
    # and refused on a split where it may have trained on the test frames
    others = "[sadness, surprise, embarrassment, fear, anger, disgust, skepticism]"  # the copy has T1 and T6
    for fraction, expected in (("0.2", 0), ("0.5", 2)):
        data = (f"{{class_path: BP4DEmotionSequenceDataModule, init_args: {{root: {bp4d_root}, n_folds: 2, "
                f"test_fraction: {fraction}, cache_dir: {tmp_path / 'c'}, drop_classes: {others}, progress: false, "
                "preprocess_workers: 0}}")
        mapped = cli("au-emotion", "--config.datamodule", data, "--config.au_model",
                     "models:/facslab-au-temporal@champion", "--config.threshold_steps", "3",
                     "--config.output", str(tmp_path / f"emotions{fraction}"), env=store)
        assert mapped.returncode == expected, mapped.stderr[-3000:]
    assert "test frames here were not in its test split" in mapped.stderr
    assert "predicted AUs" in (tmp_path / "emotions0.2" / "au_emotion.md").read_text()
