"""``facslab evaluate``: an emotion model scored on another dataset's test split, its classes met by
name, the rest left out and counted, logged as its own run that registers nothing."""

import mlflow
import pandas as pd
import pytest
import yaml

from facslab.cli import main


CK_SHARED_WITH_FER = {"anger", "disgust", "fear", "happy", "sadness", "surprise"}


def _config(path, ckplus_root, tmp_path, **extra):
    path.write_text(yaml.safe_dump({"class_path": "datamodules.CKPlusEmotionDataModule",
                                    "init_args": {"root": str(ckplus_root), "cache_dir": str(tmp_path / "cache"),
                                                  "test_fraction": 0.5, "progress": False, **extra}}))
    return path


@pytest.mark.slow
def test_the_fer_port_is_scored_on_ckplus_with_contempt_left_out_as_its_own_run(ckplus, emotion_model_dir, tmp_path, cli):
    from datamodules import CKPlusEmotionDataModule

    store = tmp_path / "mlruns"
    config = _config(tmp_path / "ckplus_emotion.yaml", ckplus[0], tmp_path)
    done = cli("evaluate", "--model", str(emotion_model_dir), "--data", str(config),
               env={"FACSLAB_MLRUNS": str(store)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "angry->anger" in done.stdout and "sad->sadness" in done.stdout and "left out of the data: contempt" in done.stdout

    # what the command scored, against the datamodule read on its own
    dm = CKPlusEmotionDataModule(str(ckplus[0]), cache_dir=str(tmp_path / "cache"), test_fraction=0.5, progress=False,
                                 image_size=64)
    dm.setup("fit")
    test = dm.samples.loc[dm.positions("test")]
    assert (test["name"] == "contempt").any(), "the generated test split has no contempt: nothing to leave out"

    # a client of its own (registry too): an earlier test's mlflow.set_*_uri stays in this process
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("facslab").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["kind"] == "cross-dataset evaluation"
    run = runs[0]
    rows = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=uri,
                                                           artifact_path="predictions/test_rows.csv"))
    kept = test[test["name"] != "contempt"]
    assert len(rows) == len(kept) and run.data.metrics["test_rows_left_out"] == (test["name"] == "contempt").sum()
    assert sorted(rows["subject"]) == sorted(kept["subject"]) and set(rows["true"]) <= CK_SHARED_WITH_FER
    assert sorted(rows["true"]) == sorted(kept["name"])  # each row keeps its own class under the mapping
    accuracy = run.data.metrics["test_accuracy"]
    assert accuracy == pytest.approx(float((rows["true"] == rows["predicted"]).mean()))
    assert run.data.metrics["test_accuracy_ci_lo"] <= accuracy <= run.data.metrics["test_accuracy_ci_hi"]
    assert set(rows["predicted"]) <= CK_SHARED_WITH_FER  # neutral, the model's own class, is never answered
    assert client.search_registered_models() == []  # an evaluation registers and moves nothing


def test_a_model_or_data_that_cannot_be_scored_together_is_one_line(ckplus, emotion_model_dir, model_dir, tmp_path,
                                                                   capsys):
    store = ["--tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    cases = [(["--model", str(emotion_model_dir), "--data", str(_config(tmp_path / "size.yaml", ckplus[0], tmp_path,
                                                                       image_size=48))], "input size 64"),
             (["--model", str(emotion_model_dir), "--data", str(_config(tmp_path / "key.yaml", ckplus[0], tmp_path,
                                                                       test_fractoin=0.2))], "test_fractoin"),
             (["--model", str(model_dir), "--data", str(_config(tmp_path / "au.yaml", ckplus[0], tmp_path))],
              "emotion (class) models"),
             (["--model", str(emotion_model_dir), "--data", str(tmp_path / "missing.yaml")], "no such data config"),
             (["--model", "models:/no-such-model@champion", "--data", str(_config(tmp_path / "ck.yaml", ckplus[0],
                                                                                    tmp_path))], "no-such-model")]
    for args, said in cases:
        assert main(["evaluate", *args, *store]) == 2, args
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
        assert len(err) == 1 and said in err[0], (args, err)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("facslab")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []  # refused before any run
