"""Sweeps tracked in MLflow, the model registry and the report, on a tiny generated CK+.

One small study (2 trials x 3 folds x 1 epoch at 32 px) is shared by the tests of a worker.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from datamodules import CKPlusDataModule
from facslab.config import RegisterConfig, SweepConfig, TrainConfig
from facslab.report import ReportConfig, make_report
from facslab.tracking import setup_tracking


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlruns")
    old = os.environ.get("FACSLAB_MLRUNS")
    os.environ["FACSLAB_MLRUNS"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("FACSLAB_MLRUNS")
    else:
        os.environ["FACSLAB_MLRUNS"] = old


def make_config(ckplus, store, study, n_trials=2, **kwargs) -> SweepConfig:
    root, _ = ckplus
    return SweepConfig(
        study=study, n_trials=n_trials, experiment="tests",
        data=dict(root=str(root), image_size=32, batch_size=16, cache_dir=str(store / "cache"), seed=0,
                  preprocess_workers=0, progress=False),
        model=dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=32, lr=1e-3),
        train=TrainConfig(max_epochs=1, patience=1, progress=False, init_from=None),
        search={"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "threshold_policy": {"choices": ["fixed", "f1"]}},
        pruner="none", register=RegisterConfig(name=f"{study}-model"), **kwargs)


@pytest.fixture(scope="module")
def swept(ckplus, store):
    from facslab.sweep import run_sweep

    config = make_config(ckplus, store, "shared")
    return config, run_sweep(config)


def trial_run(study, number):
    return MlflowClient().get_run(study.trials[number].user_attrs["mlflow_run_id"])


def test_every_trial_is_a_nested_mlflow_run_with_its_record(swept):
    config, study = swept
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    parent = study.user_attrs["mlflow_parent_run_id"]
    for number in range(2):
        run = trial_run(study, number)
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.info.run_name.startswith(f"trial {number:03d} resnet18")
        assert run.data.tags["git_commit"] and run.data.params["model.lr"] == str(study.trials[number].params["lr"])
        assert run.data.metrics["val_pr_auc"] == pytest.approx(study.trials[number].value)
        artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
        assert {"config.yaml", "data", "metrics", "plots", "thresholds.json"} <= artifacts
        history = MlflowClient().get_metric_history(run.info.run_id, "fold_val_pr_auc")
        assert sorted(m.step for m in history) == [0, 1, 2]
        assert MlflowClient().get_metric_history(run.info.run_id, "fold0-val_loss")
    parent_artifacts = {a.path for a in MlflowClient().list_artifacts(parent, "optuna")}
    assert "optuna/optimization_history.png" in parent_artifacts


def test_no_subject_in_two_folds_and_none_from_the_test_split(swept):
    config, study = swept
    path = mlflow.artifacts.download_artifacts(run_id=trial_run(study, 0).info.run_id, artifact_path="data/split.csv")
    split = pd.read_csv(path)
    per_subject = split.groupby("subject")["fold"].nunique()
    assert (per_subject == 1).all()
    test_subjects = set(split.loc[split["role"] == "test", "subject"])
    assert test_subjects and (split.loc[split["subject"].isin(test_subjects), "fold"] == -1).all()
    assert set(split.loc[split["fold"] >= 0, "fold"]) == {0, 1, 2}


def test_thresholds_come_from_out_of_fold_predictions_not_the_test_split(ckplus, store, monkeypatch):
    import facslab.sweep as sweep

    def no_test(self):
        raise AssertionError("the sweep touched the test split")

    seen = {}
    real = sweep.choose_thresholds

    def spy(probs, labels, policy, **kwargs):
        seen["rows"] = len(probs)
        return real(probs, labels, policy, **kwargs)

    monkeypatch.setattr(CKPlusDataModule, "test_dataloader", no_test)
    monkeypatch.setattr(sweep, "choose_thresholds", spy)
    config = make_config(ckplus, store, "thresholds", n_trials=1)
    study = sweep.run_sweep(config)
    assert study.trials[0].state == TrialState.COMPLETE
    dm = CKPlusDataModule(**{**config.data, "fold": 0})
    dm.setup()
    not_test = dm.samples["ok"] & (dm.samples["role"] != "test")
    assert seen["rows"] == not_test.sum()  # every training-split sample once, out of fold


def test_a_raising_trial_is_recorded_as_failed_and_the_study_goes_on(ckplus, store, monkeypatch):
    import facslab.sweep as sweep

    real = sweep.Objective._cross_validate

    def flaky(self, trial, model_args, train):
        if trial.number == 1:
            raise RuntimeError("boom in trial 1")
        return real(self, trial, model_args, train)

    monkeypatch.setattr(sweep.Objective, "_cross_validate", flaky)
    study = sweep.run_sweep(make_config(ckplus, store, "flaky", n_trials=3))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = trial_run(study, 1)
    assert failed.info.status == "FAILED"
    error = mlflow.artifacts.load_text(f"runs:/{failed.info.run_id}/error.txt")
    assert "boom in trial 1" in error


def test_a_stopped_sweep_resumes_and_keeps_its_finished_trials(ckplus, store):
    from facslab.sweep import load_study, run_sweep

    config = make_config(ckplus, store, "resume", n_trials=1)
    first = run_sweep(config)
    kept = (first.trials[0].params, first.trials[0].value)
    # a trial left RUNNING by a killed process
    setup_tracking(None, config.experiment)
    load_study(config).ask()
    resumed = run_sweep(replace(config, n_trials=3))
    states = [t.state for t in resumed.trials]
    assert states[0] == TrialState.COMPLETE and (resumed.trials[0].params, resumed.trials[0].value) == kept
    assert states[1] == TrialState.FAIL  # the interrupted one
    assert states.count(TrialState.COMPLETE) == 2 and len(states) == 3
    assert resumed.user_attrs["mlflow_parent_run_id"] == first.user_attrs["mlflow_parent_run_id"]


def test_alias_moves_only_on_improvement_and_the_model_loads_in_a_fresh_process(swept, store, astronaut, tmp_path):
    from facslab.predictor import AUPredictor
    from facslab.registry import log_predictor, register_best
    from lightning_modules.au_detector import AUDetector

    config, study = swept
    name, alias = config.register.name, config.register.alias
    first = register_best(config, study)
    assert first.promoted and first.champion_before is None
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, alias).version) == first.version
    same = register_best(config, study)  # equal, not better: the alias stays
    assert not same.promoted and same.champion_before == pytest.approx(first.test_pr_auc)
    assert str(client.get_model_version_by_alias(name, alias).version) == first.version
    # a worse champion (a constant model) is replaced by the next registration
    constant = AUDetector("resnet18", unfrozen_blocks=0, hidden_size=8, image_size=32)
    for p in constant.head.parameters():
        p.data.zero_()
    with mlflow.start_run(run_name="constant"):
        info = log_predictor(AUPredictor(constant), name)
    client.set_registered_model_alias(name, alias, info.registered_model_version)
    better = register_best(config, study)
    assert better.promoted and better.champion_before < better.test_pr_auc
    assert str(client.get_model_version_by_alias(name, alias).version) == better.version

    image = tmp_path / "astronaut.png"
    from PIL import Image

    Image.fromarray(astronaut).save(image)
    script = f"""
import json, numpy as np
from PIL import Image
from facslab.registry import load_predictor
from facslab.tracking import setup_tracking
setup_tracking(None, "tests")
predictor = load_predictor("models:/{name}@{alias}")
faces = predictor.predict_image(np.asarray(Image.open({str(image)!r}).convert("RGB")))
crop = np.zeros((1, predictor.alignment.size, predictor.alignment.size, 3), np.uint8)
print(json.dumps({{"faces": len(faces), "probs": faces[0].probabilities.tolist(),
                  "aligned": predictor.predict_aligned(crop).shape[1],
                  "thresholds": predictor.thresholds.tolist()}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "FACSLAB_MLRUNS": str(store)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["faces"] == 1 and result["aligned"] == 18 and len(result["probs"]) == 18
    assert all(0 <= p <= 1 for p in result["probs"])
    assert result["thresholds"] == pytest.approx(study.best_trial.user_attrs["thresholds"])


def test_table1_is_produced_from_the_runs(swept, store, tmp_path):
    from facslab.registry import register_best

    config, study = swept
    registration = register_best(replace(config, register=RegisterConfig(name="report-model")), study)
    folder = make_report(ReportConfig(output=str(tmp_path / "report"), experiment=config.experiment,
                                      model_name="report-model", study=config.study))
    table = pd.read_csv(folder / "table1.csv")
    assert len(table) == 19 and table["au"].iloc[-1] == "mean"
    assert table["pr_auc"].iloc[-1] == pytest.approx(registration.test_pr_auc)
    markdown = (folder / "table1.md").read_text()
    assert "| **mean** |" in markdown and "AU23/24" in markdown
    assert (folder / "fig7_training_curves.png").exists() and (folder / "fig6_val_loss_per_backbone.png").exists()
    runs = mlflow.search_runs(experiment_names=[config.experiment], filter_string="tags.stage = 'report'",
                              output_format="list")
    assert runs and any(a.path == "report" for a in MlflowClient().list_artifacts(runs[0].info.run_id))


def test_local_worker_processes_share_one_study(ckplus, store):
    from facslab.sweep import run_sweep

    study = run_sweep(make_config(ckplus, store, "parallel", n_trials=4), workers=2)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 4
    assert len({t.params["lr"] for t in study.trials}) == 4  # workers propose different parameters
    parents = {trial_run(study, t.number).data.tags["mlflow.parentRunId"] for t in study.trials}
    assert parents == {study.user_attrs["mlflow_parent_run_id"]}
