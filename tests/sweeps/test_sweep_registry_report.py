"""Sweeps tracked in MLflow, the model registry and the report, on a tiny generated CK+.

One small study (2 trials x 3 folds x 1 epoch at 32 px) is shared by the tests of a worker.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from datamodules import CKPlusDataModule
from facslab.config import ClassSpec, RegisterConfig, SweepConfig, TrainConfig
from facslab.report import ReportConfig, make_report
from facslab.mlflow_store import setup_tracking


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
    options = dict(
        datamodule=ClassSpec("datamodules.CKPlusDataModule", dict(root=str(root), image_size=32, batch_size=16,
                                                                  cache_dir=str(store / "cache"), seed=0,
                                                                  preprocess_workers=0, progress=False)),
        model=ClassSpec("lightning_modules.au_detector.AUDetector",
                        dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=32, lr=1e-3)),
        train=TrainConfig(max_epochs=1, patience=1, progress=False, init_from=None),
        search={"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "hidden_size": {"choices": [16, 32]}},
        pruner="none", register=RegisterConfig(name=f"{study}-model"))
    return SweepConfig(study=study, n_trials=n_trials, experiment="tests", **{**options, **kwargs})


@pytest.fixture(scope="module")
def swept(ckplus, store):
    from facslab.sweep import run_sweep

    config = make_config(ckplus, store, "shared")
    return config, run_sweep(config)


def trial_run(study, number):
    return MlflowClient().get_run(study.trials[number].user_attrs["mlflow_run_id"])


@pytest.mark.slow
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
        assert {"config.yaml", "data", "metrics", "plots", "validation_choices.json"} <= artifacts
        history = MlflowClient().get_metric_history(run.info.run_id, "fold_val_pr_auc")
        assert sorted(m.step for m in history) == [0, 1, 2]
        assert MlflowClient().get_metric_history(run.info.run_id, "fold0-val_loss")
        assert run.data.tags["init_from"] == "random" and run.data.params["train.init_from"] == "None"
        assert run.data.tags["accelerator"].startswith("cpu x1 32")  # auto picks the CPU on a machine without GPU
        inputs = run.inputs.dataset_inputs
        assert inputs and inputs[0].dataset.name == "CKPlus (generated)"
        assert inputs[0].dataset.digest == run.data.tags["split_id"] and inputs[0].dataset.source_type == "local"
        assert json.loads(inputs[0].dataset.source)["uri"] == str(Path(config.data["root"]).resolve())
    experiment = mlflow.get_experiment_by_name(config.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent_artifacts = {a.path for a in MlflowClient().list_artifacts(parent, "optuna")}
    assert "optuna/optimization_history.png" in parent_artifacts


@pytest.mark.slow
def test_no_subject_in_two_folds_and_none_from_the_test_split(swept):
    config, study = swept
    path = mlflow.artifacts.download_artifacts(run_id=trial_run(study, 0).info.run_id, artifact_path="data/split.csv")
    split = pd.read_csv(path)
    per_subject = split.groupby("subject")["fold"].nunique()
    assert (per_subject == 1).all()
    test_subjects = set(split.loc[split["role"] == "test", "subject"])
    assert test_subjects and (split.loc[split["subject"].isin(test_subjects), "fold"] == -1).all()
    assert set(split.loc[split["fold"] >= 0, "fold"]) == {0, 1, 2}


@pytest.mark.slow
def test_thresholds_come_from_out_of_fold_predictions_not_the_test_split(ckplus, store, monkeypatch):
    import facslab.held_out as held_out
    import facslab.sweep as sweep
    import facslab.tasks as tasks

    from datamodules.base import FaceDataModule

    def no_test(*args, **kwargs):
        raise AssertionError("the sweep touched the test split")

    real_dataset = FaceDataModule.dataset

    def dataset(self, role):  # every loader of crops or features goes through here
        if role == "test":
            no_test()
        return real_dataset(self, role)

    seen = {}
    real = tasks.choose_thresholds

    def spy(probs, labels, policy, **kwargs):
        seen["rows"] = len(probs)
        return real(probs, labels, policy, **kwargs)

    # the doors through which the test split is really read: the test inputs (outputs, overlays) and the datasets
    monkeypatch.setattr(held_out, "held_out_inputs", no_test)
    monkeypatch.setattr(FaceDataModule, "dataset", dataset)
    monkeypatch.setattr(tasks, "choose_thresholds", spy)
    config = make_config(ckplus, store, "thresholds", n_trials=1)
    study = sweep.run_sweep(config)
    assert study.trials[0].state == TrialState.COMPLETE
    dm = CKPlusDataModule(**{**config.data, "fold": 0})
    dm.setup()
    not_test = dm.samples["ok"] & (dm.samples["role"] != "test")
    assert seen["rows"] == not_test.sum()  # every training-split sample once, out of fold


def test_a_study_resumed_under_other_settings_is_an_error_that_names_them(ckplus, store):
    from dataclasses import replace

    from facslab.config import ConfigError
    from facslab.sweep import run_sweep

    config = make_config(ckplus, store, "settings-pinned", n_trials=1)
    first = run_sweep(config)
    assert len(first.trials) == 1
    # where and how visibly trials run is not part of the settings: the finished study is found
    moved = make_config(ckplus, store, "settings-pinned", n_trials=1,
                        datamodule=replace(config.datamodule, init_args={**config.data, "root": str(ckplus[0]) + "/",
                                                                         "progress": True}),
                        train=replace(config.train, progress=True))
    assert len(run_sweep(moved).trials) == 1
    changed = make_config(ckplus, store, "settings-pinned", n_trials=2,
                          model=replace(config.model, init_args={**config.model_args, "dropout": 0.5}),
                          datamodule=replace(config.datamodule, init_args={**config.data, "mix_halves": 0.5}))
    with pytest.raises(ConfigError, match=r"study settings-pinned was run with other settings \(data.mix_halves: "
                                          r"0.0 -> 0.5; model.dropout: 0.2 -> 0.5\)"):
        run_sweep(changed)
    assert len(run_sweep(config).trials) == 1  # nothing was added by the refused run


@pytest.mark.slow
def test_a_raising_trial_is_recorded_as_failed_and_the_study_goes_on(ckplus, store, monkeypatch):
    import facslab.sweep as sweep

    real = sweep.Objective._cross_validate

    def flaky(self, trial, *args):
        if trial.number == 1:
            raise RuntimeError("boom in trial 1")
        return real(self, trial, *args)

    monkeypatch.setattr(sweep.Objective, "_cross_validate", flaky)
    study = sweep.run_sweep(make_config(ckplus, store, "flaky", n_trials=3))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = trial_run(study, 1)
    assert failed.info.status == "FAILED"
    error = mlflow.artifacts.load_text(f"runs:/{failed.info.run_id}/error.txt")
    assert "boom in trial 1" in error


@pytest.mark.slow
def test_a_stopped_sweep_resumes_without_repeating_parameters_or_leaving_running_runs(ckplus, store):
    from facslab.sweep import load_study, run_sweep

    config = make_config(ckplus, store, "resume", n_trials=2)
    first = run_sweep(config)
    kept = [(t.params, t.value) for t in first.trials]
    # a trial left RUNNING by a killed process, with its MLflow run still RUNNING
    setup_tracking(None, config.experiment)
    orphan = load_study(config).ask()
    lost = {"lr": orphan.suggest_float("lr", 1e-4, 1e-2, log=True),
            "hidden_size": orphan.suggest_categorical("hidden_size", [16, 32])}  # as the search samples them
    with mlflow.start_run(run_name="killed") as run:
        orphan.set_user_attr("mlflow_run_id", run.info.run_id)
    MlflowClient().update_run(run.info.run_id, status="RUNNING")
    resumed = run_sweep(replace(config, n_trials=5))
    states = [t.state for t in resumed.trials]
    assert [(t.params, t.value) for t in resumed.trials[:2]] == kept
    # the interrupted trial is failed and run again (its retry counts, not it): 5 complete in 6
    assert states[2] == TrialState.FAIL and states.count(TrialState.COMPLETE) == 5 and len(states) == 6
    assert resumed.trials[3].system_attrs["failed_trial"] == 2
    assert resumed.trials[3].params == lost  # the retry runs the lost trial's parameters
    finished = [tuple(sorted(t.params.items())) for t in resumed.trials if t.state == TrialState.COMPLETE]
    assert len(set(finished)) == len(finished)  # the restarted sampler did not propose trial 0 and 1 again
    assert MlflowClient().get_run(run.info.run_id).info.status == "FAILED"
    assert resumed.user_attrs["mlflow_parent_run_id"] == first.user_attrs["mlflow_parent_run_id"]


@pytest.mark.slow
def test_a_hopeless_configuration_is_pruned_on_its_first_fold(ckplus, store):
    from facslab.sweep import run_sweep

    config = make_config(ckplus, store, "pruning", n_trials=4, pruner="median", pruner_warmup=1, pruner_startup_trials=3,
                         search={"lr": {"low": 1e-12, "high": 3e-3, "log": True}},
                         train=TrainConfig(max_epochs=6, patience=6, progress=False, init_from=None))
    from facslab.sweep import load_study

    setup_tracking(None, config.experiment)
    study = load_study(config)
    for lr in (3e-3, 2e-3, 1e-3):
        study.enqueue_trial({"lr": lr})
    study.enqueue_trial({"lr": 1e-12})  # learns nothing: below the median from its first epochs
    study = run_sweep(config)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    pruned = study.trials[3]
    assert max(pruned.intermediate_values) < 5  # stopped during fold 0, before its last epoch
    run = trial_run(study, 3)
    assert run.info.status == "KILLED" and run.data.tags["optuna_state"] == "PRUNED"


@pytest.mark.slow
def test_the_summary_counts_complete_trials_the_median_rule_would_have_pruned(ckplus, store):
    """A hopeless trial run first is the pruner's start-up trial and completes; the summary says,
    from the recorded fold-0 curves, that the rule would have stopped it, and logs the count."""
    import numpy as np

    from facslab.sweep import load_study, run_sweep
    from facslab.sweep.summary import describe_best

    warmup = 1
    config = make_config(ckplus, store, "would-prune", n_trials=2, pruner="median", pruner_warmup=warmup,
                         pruner_startup_trials=1, search={"lr": {"low": 1e-12, "high": 3e-3, "log": True}},
                         train=TrainConfig(max_epochs=3, patience=3, progress=False, init_from=None))
    setup_tracking(None, config.experiment)
    study = load_study(config)
    study.enqueue_trial({"lr": 1e-12})  # learns nothing, but nothing has finished to compare it against
    study.enqueue_trial({"lr": 3e-3})
    study = run_sweep(config)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    # the rule by hand: below the other complete trial's fold-0 value at an epoch past the warm-up
    curves = [t.intermediate_values for t in study.trials]
    expected = {n: min(s for s in curves[n] if s >= warmup and curves[n][s] < curves[1 - n][s])
                for n in (0, 1) if any(s >= warmup and curves[n][s] < curves[1 - n][s] for s in curves[n])}
    assert 0 in expected  # the test can fail: the hopeless trial is below the good one
    line = describe_best(study, config)
    phrase = ", ".join(f"trial {n} at epoch {s}" + (", the best" if n == study.best_trial.number else "")
                       for n, s in sorted(expected.items()))
    assert f"{len(expected)} of 2 complete would have been pruned by the median rule ({phrase})" in line, line
    parent = MlflowClient().get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.metrics["trials_would_have_pruned"] == len(expected)
    assert np.isfinite(study.best_value)


@pytest.mark.slow
def test_promotion_compares_cross_validated_scores_on_the_same_split_and_tests_once(swept, store, astronaut,
                                                                                  tmp_path, monkeypatch):
    import facslab.held_out as held_out
    import facslab.tasks as tasks
    from facslab.registry import register_best

    looks, reads = [], []
    real, real_read = tasks.held_out_outputs, held_out.held_out_inputs
    monkeypatch.setattr(tasks, "held_out_outputs", lambda *a: looks.append(1) or real(*a))
    # every read of the test faces, the evaluation's and the pictures' (overlays, part attention)
    monkeypatch.setattr(held_out, "held_out_inputs", lambda *a: reads.append(1) or real_read(*a))
    config, study = swept
    name, alias = config.register.name, config.register.alias
    client = MlflowClient()
    first = register_best(config, study)
    assert first.promoted and first.champion_cv is None and first.cv_score == pytest.approx(study.best_value)
    assert str(client.get_model_version_by_alias(name, alias).version) == first.version
    run_id = client.get_model_version(name, first.version).run_id
    assert "plots/test_saliency.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    first_reads = len(reads)
    assert first_reads >= 1
    again = register_best(config, study)  # a chain run again: the same version, no second training or test look
    assert again.version == first.version and again.promoted and len(looks) == 1 and len(reads) == first_reads
    assert again.test_score == pytest.approx(first.test_score, abs=1e-4) and again.test_secondary == first.test_secondary
    assert again.table["pr_auc"].to_numpy() == pytest.approx(first.table["pr_auc"].to_numpy(), nan_ok=True)
    complete = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    runner_up = complete[-2]
    worse = register_best(config, study, runner_up)  # not better: the alias stays
    assert not worse.promoted and worse.champion_cv == pytest.approx(first.cv_score)
    assert str(client.get_model_version_by_alias(name, alias).version) == first.version
    assert len(looks) == 2  # one test look per registered version, none for the champion
    tags = client.get_model_version(name, first.version).tags
    assert tags["trained_on"] == "generated" and "CKPlus (generated)" in tags["datasets"]
    assert float(tags["cv_pr_auc"]) == pytest.approx(study.best_value, abs=1e-4)
    lo, hi = first.test_ci
    assert lo <= first.test_score <= hi
    # a champion cross-validated on another split is not comparable: reported, not replaced
    client.delete_model_version(name, worse.version)  # so that the runner-up is registered anew
    client.set_model_version_tag(name, first.version, "split_id", "another-split")
    other = register_best(config, study, runner_up)
    assert not other.promoted and "split mismatch" in other.reason
    assert client.get_model_version(name, other.version).tags["label_id"] == tags["label_id"]
    # the same split with other labels (e.g. min_intensity: 3) is not comparable either
    client.delete_model_version(name, other.version)
    client.set_model_version_tag(name, first.version, "split_id", tags["split_id"])
    client.set_model_version_tag(name, first.version, "label_id", "other-labels")
    other = register_best(config, study, runner_up)
    assert not other.promoted and "label mismatch" in other.reason
    # a champion without evidence (a registration that stopped before its tags) does not block
    client.delete_model_version(name, other.version)
    client.delete_model_version_tag(name, first.version, "label_id")
    other = register_best(config, study, runner_up)
    assert other.promoted and "no cross-validation evidence" in other.reason and "not comparable" in other.reason
    client.set_registered_model_alias(name, alias, first.version)
    client.set_model_version_tag(name, first.version, "label_id", tags["label_id"])
    # a worse champion on the same split is replaced
    client.delete_model_version(name, other.version)
    client.set_model_version_tag(name, first.version, "cv_pr_auc", "0.0100")
    better = register_best(config, study, runner_up)
    assert better.promoted and better.champion_cv == pytest.approx(0.01)
    assert str(client.get_model_version_by_alias(name, alias).version) == better.version

    image = tmp_path / "astronaut.png"
    from PIL import Image

    Image.fromarray(astronaut).save(image)
    script = f"""
import json, numpy as np
from PIL import Image
from facslab.model_uri import load_predictor
from facslab.mlflow_store import setup_tracking
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
    assert result["thresholds"] == pytest.approx(runner_up.user_attrs["task_attrs"]["thresholds"])  # the champion now


def test_the_label_id_changes_with_the_label_settings_and_the_split_id_does_not(ckplus, store):
    """Three CK+ modules on one copy: default labels, min_intensity 3, ungraded codes negative.
    The registry compares the label id beside the split id, so easier labels cannot win."""
    config = make_config(ckplus, store, "labels")
    modules = [CKPlusDataModule(**{**config.data, **settings}) for settings in
               ({}, {"min_intensity": 3}, {"ungraded": "negative"})]
    for dm in modules:
        dm.setup()
    assert len({dm.split_id() for dm in modules}) == 1
    assert len({dm.label_id() for dm in modules}) == 3
    again = CKPlusDataModule(**{**config.data, "fold": None})
    again.setup()
    assert again.label_id() == modules[0].label_id() and again.split_id() == modules[0].split_id()


def test_table1_is_produced_from_the_runs(swept, store, tmp_path):
    from facslab.registry import register_best

    config, study = swept
    registration = register_best(replace(config, register=RegisterConfig(name="report-model")), study)
    folder = make_report(ReportConfig(output=str(tmp_path / "report"), experiment=config.experiment,
                                      model_name="report-model", study=config.study))
    table = pd.read_csv(folder / "table1.csv")
    # the fold std is kept as exactly as the mean: rounded twice, the report's 0.009 was the sweep's 0.010
    version = MlflowClient().get_model_version("report-model", registration.version)
    assert float(version.tags["cv_pr_auc_std"]) == study.best_trial.user_attrs["cv_std"] == registration.cv_std
    assert f"± {registration.cv_std:.3f}" in (folder / "table1.md").read_text()
    assert len(table) == 19 and table["au"].iloc[-1] == "mean"
    assert table["pr_auc"].iloc[-1] == pytest.approx(registration.test_score)
    mean = table.iloc[-1]
    assert mean["pr_auc_lo"] <= mean["pr_auc"] <= mean["pr_auc_hi"] and mean["f1_lo"] <= mean["f1"] <= mean["f1_hi"]
    markdown = (folder / "table1.md").read_text()
    assert "| **mean** |" in markdown and "AU23/24" in markdown and "bootstrap" in markdown
    assert (folder / "fig7_training_curves.png").exists() and (folder / "fig6_val_loss_per_backbone.png").exists()
    runs = mlflow.search_runs(experiment_names=[config.experiment], filter_string="tags.stage = 'report'",
                              output_format="list")
    assert runs and any(a.path == "report" for a in MlflowClient().list_artifacts(runs[0].info.run_id))


@pytest.mark.slow
def test_local_worker_processes_share_one_study(ckplus, store):
    from facslab.sweep import run_sweep

    study = run_sweep(make_config(ckplus, store, "parallel", n_trials=4), workers=2)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 4
    assert len({t.params["lr"] for t in study.trials}) == 4  # workers propose different parameters
    runs = mlflow.search_runs(experiment_names=["tests"], filter_string="attributes.status = 'RUNNING'", output_format="list")
    assert not runs
    parents = {trial_run(study, t.number).data.tags["mlflow.parentRunId"] for t in study.trials}
    assert parents == {study.user_attrs["mlflow_parent_run_id"]}


@pytest.mark.slow
def test_local_workers_import_with_the_collector_off_and_work_with_it_on(ckplus, store, tmp_path, monkeypatch):
    """run_sweep's local worker processes (spawned) import torch, Lightning and MLflow, for their
    function and its arguments, without one full garbage collection, and work with the collector
    on and those imports frozen out of its way. The work is a stand-in that reports (conftest)."""
    import json

    from conftest import collector_report
    from facslab.sweep import run_sweep, workers

    monkeypatch.setattr(workers, "_worker", collector_report)
    monkeypatch.setenv("FACSLAB_COLLECTOR_REPORT", str(tmp_path))
    run_sweep(make_config(ckplus, store, "collector", n_trials=2), workers=2)
    reports = [json.loads((tmp_path / f"{k}.json").read_text()) for k in range(2)]
    assert sorted(r["budget"] for r in reports) == [1, 1]
    for report in reports:
        assert report["torch"] and report["enabled"] and report["full"] == 0 and report["frozen"] > 100_000, report

def test_fig7_compares_au_trials_that_have_a_pr_auc(tmp_path, monkeypatch):
    from facslab.au import AU_LABELS

    monkeypatch.setenv("FACSLAB_MLRUNS", str(tmp_path / "store"))
    setup_tracking(None, "fig7")

    def trial(task: str, value: float | None) -> None:
        with mlflow.start_run():
            mlflow.set_tags({"stage": "sweep-trial", "study": "fig7", "task": task, "unfrozen_blocks": "2"})
            for epoch in range(3):
                mlflow.log_metrics({"fold0-train_loss": 1.0 - epoch / 10, "fold0-val_loss": 1.1 - epoch / 20}, step=epoch)
            if value is not None:
                mlflow.log_metrics({"val_pr_auc": value, **{f"oof_pr_auc_AU{a.replace('/', '_')}": value for a in AU_LABELS}})

    trial("au", 0.7)
    trial("au", 0.8)
    trial("au_intensity", None)  # scored by ICC: no PR-AUC; the newest run, so the first one searched
    folder = make_report(ReportConfig(output=str(tmp_path / "report"), experiment="fig7", study="fig7"))
    per_au = pd.read_csv(folder / "fig7_per_au_pr_auc.csv", index_col=0)
    assert list(per_au.columns) == ["2 unfrozen"] and (per_au["2 unfrozen"] == 0.8).all()
