"""``facslab pretrain``: an interrupted pretraining continues its run after the last finished
epoch, and a finished one is found again only under the same settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

EPOCHS = 6


def _config(root, tmp_path, epochs: int = EPOCHS):
    path = tmp_path / "pretrain.yaml"
    path.write_text(f"""data: {{root: {root}, image_size: 32, batch_size: 16, cache_dir: {tmp_path / 'cache'}, seed: 0}}
model: {{backbone: resnet18, unfrozen_blocks: -1, hidden_size: 16, lr: 1.0e-3}}
train: {{max_epochs: {epochs}, patience: {epochs}, progress: false, init_from: null}}
""")
    return path


def _pretrain_command(config) -> list[str]:
    return [sys.executable, "-m", "facslab.cli", "pretrain", "--config", str(config)]


def _env(store) -> dict:
    # the store by FACSLAB_MLRUNS alone: MLflow writes the URI it is given into the environment
    return {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "FACSLAB_MLRUNS": str(store)}


def _client(store) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def _runs(store):
    client = _client(store)
    return client.search_runs([client.get_experiment_by_name("facslab").experiment_id], "tags.stage = 'pretrain'")


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess")
def test_a_killed_pretraining_continues_its_run_after_the_last_finished_epoch(celeba, tmp_path, cli, monkeypatch):
    root, _, _ = celeba
    store = tmp_path / "mlruns"
    env = _env(store)
    config = _config(root, tmp_path)
    first = subprocess.Popen(_pretrain_command(config), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    checkpoint = None
    deadline = time.monotonic() + 240
    while checkpoint is None and time.monotonic() < deadline and first.poll() is None:
        found = list((store / "checkpoints").glob("*/last.ckpt")) if (store / "checkpoints").is_dir() else []
        checkpoint = found[0] if found else None
        time.sleep(0.05)
    assert checkpoint is not None, f"no epoch checkpoint was written:\n{first.communicate()[0]}"
    first.send_signal(signal.SIGKILL)  # as a machine's time limit or an OOM killer would
    first.wait()
    (killed,) = _runs(store)
    assert killed.info.status == "RUNNING"  # killed, so nothing ended the run
    done_before = len(_client(store).get_metric_history(killed.info.run_id, "val_loss"))
    assert 1 <= done_before < EPOCHS, "the kill came after the last epoch: nothing is left to resume"

    second = subprocess.run(_pretrain_command(config), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert f"pretraining run {killed.info.run_id} was interrupted: continuing it" in second.stderr
    (run,) = _runs(store)  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["resumed"] == "true"
    assert run.data.metrics["epochs_run"] == EPOCHS
    epochs = [m.step for m in _client(store).get_metric_history(run.info.run_id, "val_loss")]
    assert len(epochs) == EPOCHS and epochs == sorted(set(epochs)), "an epoch was trained twice or skipped"
    curves = _client(store).download_artifacts(run.info.run_id, "plots/training_curves.png", str(tmp_path))
    assert os.path.getsize(curves) > 0
    assert not checkpoint.parent.exists(), "a finished run's checkpoint is left behind"
    # the resumed epochs drew the batches, augmentations and dropout the uninterrupted run draws
    whole_store = tmp_path / "uninterrupted"  # the reference: no signal, so no process of its own
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # as _env: the store by FACSLAB_MLRUNS alone
    whole = cli(*_pretrain_command(config)[3:], env={"FACSLAB_MLRUNS": str(whole_store)})
    assert whole.returncode == 0, whole.stderr
    (uninterrupted,) = _runs(whole_store)
    for metric in ("train_loss", "val_loss"):
        resumed = [m.value for m in _client(store).get_metric_history(run.info.run_id, metric)]
        straight = [m.value for m in _client(whole_store).get_metric_history(uninterrupted.info.run_id, metric)]
        assert resumed == straight, f"{metric} after resuming at epoch {done_before}: {resumed} vs {straight}"


@pytest.mark.slow
def test_a_pretraining_is_found_again_only_under_the_same_settings(celeba, tmp_path, cli, monkeypatch):
    from facslab.config import PretrainConfig
    from facslab.demo_chain import load_config
    from facslab.run_records import find_pretraining, same_settings
    from facslab.mlflow_store import setup_tracking

    root, _, _ = celeba
    store = tmp_path / "mlruns"
    config_file = _config(root, tmp_path, epochs=1)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the store by FACSLAB_MLRUNS alone
    done = cli("pretrain", "--config", str(config_file), env={"FACSLAB_MLRUNS": str(store)})
    assert done.returncode == 0, done.stderr
    (run,) = _runs(store)
    config = load_config(PretrainConfig, config_file)
    setup_tracking(f"sqlite:///{store / 'mlflow.db'}")
    assert find_pretraining("resnet18", 32, "facslab", 1.0, config=config.resolved()).info.run_id == run.info.run_id
    # a key left out means its default (unfrozen_blocks 1, not the run's -1): another setting
    omitted = load_config(PretrainConfig, config_file)
    omitted.model.pop("unfrozen_blocks")
    assert find_pretraining("resnet18", 32, "facslab", 1.0, config=omitted.resolved()) is None
    # and a setting only the config has is another setting too
    assert not same_settings(run, {**config.resolved(), "extra": {"key": 1}})
    moved = load_config(PretrainConfig, config_file, {"data.cache_dir": str(tmp_path / "elsewhere"),
                                                      "train.progress": True})
    assert find_pretraining("resnet18", 32, "facslab", 1.0, config=moved.resolved()).info.run_id == run.info.run_id
    longer = load_config(PretrainConfig, config_file, {"train.max_epochs": 2})
    assert find_pretraining("resnet18", 32, "facslab", 1.0, config=longer.resolved()) is None
    assert find_pretraining("resnet18", 32, "facslab", 1.0).info.run_id == run.info.run_id  # without settings


@pytest.mark.slow
def test_fig4_compares_one_loss_per_backbone_and_image_size(celeba, tmp_path, cli, monkeypatch):
    """Three real pretrainings (32 px on all and on half of the data, 48 px on all) and the report:
    Fig. 4's points are the runs' unweighted validation BCE, and the 48 px run is its own line, not
    pooled with the 32 px run of its fraction."""
    import pandas as pd

    root, _, _ = celeba
    store = tmp_path / "mlruns"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the store by FACSLAB_MLRUNS alone
    for size, fraction in ((32, 1.0), (32, 0.5), (48, 1.0)):
        folder = tmp_path / f"{size}-{fraction}"
        folder.mkdir()
        config = _config(root, folder, epochs=1)
        config.write_text(config.read_text().replace("image_size: 32,", f"image_size: {size}, fraction: {fraction},"))
        done = cli("pretrain", "--config", str(config), env={"FACSLAB_MLRUNS": str(store)})
        assert done.returncode == 0, done.stderr[-2000:]
    runs = {(r.data.tags["image_size"], float(r.data.tags["fraction"])): r for r in _runs(store)}
    assert len(runs) == 3
    for run in runs.values():  # with pos_weight the training loss is another quantity
        assert run.data.metrics["best_val_bce"] != pytest.approx(run.data.metrics["best_val_loss"], rel=1e-3)
    out = tmp_path / "report"
    report = cli("report", "--config.output", str(out), env={"FACSLAB_MLRUNS": str(store)})
    assert report.returncode == 0, report.stderr[-2000:]
    figure = pd.read_csv(out / "fig4.csv")
    assert sorted(zip(figure["image_size"], figure["fraction"])) == [(32, 0.5), (32, 1.0), (48, 1.0)]
    for row in figure.itertuples():
        assert row.best_val_bce == pytest.approx(runs[(str(row.image_size), row.fraction)].data.metrics["best_val_bce"])
    assert (out / "fig4_val_loss_vs_fraction.png").is_file()


@pytest.mark.parametrize("command, config", [("pretrain", "configs/pretrain/demo.yaml"), ("sweep", "sweeps/demo.yaml")])
def test_a_training_lightning_would_spread_over_processes_is_refused_before_the_store_is_touched(command, config, tmp_path):
    """``train.devices: 2`` (on the CPU, as two GPUs would under ``auto``): Lightning's DDP would
    run the command again in a second process, with its own MLflow run and sweep trial. One line,
    exit 2, and no run, study or trial made."""
    from pathlib import Path

    store = tmp_path / "mlruns"
    repository = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "facslab.cli", command, "--config", str(repository / config),
                           "--config.train.accelerator", "cpu", "--config.train.devices", "2"],
                          env=_env(store), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    line, = done.stderr.strip().splitlines()
    assert line.startswith(f"facslab {command}: error: train.devices 2 makes Lightning train in 2 processes"), line
    assert "set train.devices: 1" in line and "one worker per GPU" in line, line
    assert not store.exists() or not any(store.rglob("*")), sorted(store.rglob("*"))
