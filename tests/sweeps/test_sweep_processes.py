"""Sweeps as real processes on a tiny generated CK+: a worker killed with SIGKILL, a sweep stopped
mid-trial (SIGKILL, Ctrl-C) and resumed, and a second sweep started beside a live trial."""

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from conftest import tiny_sweep_config


@pytest.mark.slow
def test_kill_9_of_one_of_two_workers_then_resume_finishes_without_repeats_or_orphans(ckplus, tmp_path, cli):
    """Real processes: `facslab sweep --workers 2`, SIGKILL to one worker mid-trial, then a resume."""
    import signal
    import time

    import optuna

    root, _ = ckplus
    store = tmp_path / "store"
    command = _sweep_command(tmp_path, root, study="killed", n_trials=4, epochs=3)
    env = {**os.environ, "FACSLAB_MLRUNS": str(store)}
    parent = subprocess.Popen(command + ["--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    journal_file = store / "optuna" / "killed.journal"
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline and parent.poll() is None:
        time.sleep(1)
        if not journal_file.exists():
            continue
        journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal_file)))
        try:
            running = optuna.load_study(study_name="killed", storage=journal).get_trials(states=(TrialState.RUNNING,))
        except (KeyError, FileNotFoundError, OSError):
            continue
        busy = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running if "worker" in t.user_attrs]
        workers = {int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == parent.pid}
        victim = next((pid for pid in busy if pid in workers), None)  # a worker process in mid-trial
    assert victim is not None, "no worker was mid-trial"
    os.kill(victim, signal.SIGKILL)
    out, _ = parent.communicate(timeout=600)
    assert "died" in out.decode(), out.decode()[-2000:]
    resumed = cli(*command[1:], env={"FACSLAB_MLRUNS": str(store)})  # the resume itself needs no process
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = optuna.load_study(study_name="killed", storage=journal)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) >= 1 and states.count(TrialState.RUNNING) == 0
    assert states.count(TrialState.COMPLETE) == 4  # the killed trial ran again: its retry counts, not it
    complete = [t.params["lr"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(set(complete)) == len(complete)
    assert all(t.params["lr"] in complete for t in study.trials if t.state == TrialState.FAIL)
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")  # the workers' store, not this process's
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.data.tags.get("interrupted") == "true"]
    assert killed and all(r.info.status == "FAILED" for r in killed)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGKILL", "SIGINT"])
def test_a_sweep_stopped_mid_trial_reuses_the_finished_folds_and_scores_as_if_never_stopped(ckplus, tmp_path, stop, cli):
    """Real processes: `facslab sweep` killed (SIGKILL) or interrupted (Ctrl-C's SIGINT) once its
    trial has finished fold 0, then the same command again. The trial runs again with its
    parameters, fold 0 is not trained again, and the study ends with the value an uninterrupted
    sweep gets."""
    import signal
    import time

    import optuna

    root, _ = ckplus
    command = _sweep_command(tmp_path, root, study="folds", n_trials=1, epochs=4)

    def env(store):
        return {**os.environ, "FACSLAB_MLRUNS": str(store)}

    def study_of(store):
        journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(store / "optuna" / "folds.journal")))
        return optuna.load_study(study_name="folds", storage=journal)

    killed_store = tmp_path / "killed"
    # as from a terminal: a shell's background job (`make test &`) would pass SIGINT on ignored
    process = subprocess.Popen(command, env=env(killed_store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not list(killed_store.rglob("folds/fold0.npz")):
        time.sleep(0.2)
    assert process.poll() is None, "the sweep ended before it could be killed mid-trial"
    assert not list(killed_store.rglob("folds/fold2.npz")), "the trial finished before it could be killed"
    process.send_signal(getattr(signal, stop))
    assert process.wait(timeout=120) != 0
    # resumed from a moved copy of the data with its own cache folder: where the data is kept is not
    # what a fold's result depends on, so fold 0 is still reused
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(root, moved / "CK+")
    resumed = subprocess.run(_sweep_command(moved, moved / "CK+", study="folds", n_trials=1, epochs=4),
                             env=env(killed_store), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "fold 0: reused from the interrupted run" in resumed.stderr, resumed.stderr[-2000:]

    uninterrupted_store = tmp_path / "uninterrupted"  # the reference: no signal, so no process of its own
    out = cli(*command[1:], env={"FACSLAB_MLRUNS": str(uninterrupted_store)})
    assert out.returncode == 0, out.stderr[-2000:]
    killed, reference = study_of(killed_store), study_of(uninterrupted_store)
    assert [t.state for t in killed.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = killed.trials[1]
    assert retry.params == killed.trials[0].params == reference.trials[0].params
    assert killed.trials[0].user_attrs["interrupted"] is True and retry.user_attrs["interrupted"] is False
    assert retry.value == pytest.approx(reference.trials[0].value, abs=1e-6)
    client = MlflowClient(f"sqlite:///{killed_store / 'mlflow.db'}")
    run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert run.data.tags["retry_of_run"] == killed.trials[0].user_attrs["mlflow_run_id"]
    reused = [int(f) for f in run.data.tags["reused_folds"].split(",")]
    assert 0 in reused and 2 not in reused
    assert not client.get_metric_history(run.info.run_id, "fold0-val_loss")  # fold 0 was not trained again
    assert client.get_metric_history(run.info.run_id, "fold2-val_loss")
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "fold_val_pr_auc")) == [0, 1, 2]


@pytest.mark.slow
def test_a_second_sweep_on_the_journal_leaves_the_live_trial_of_another_alone(ckplus, tmp_path):
    """Real processes: sweep B runs its trial while another process coordinates the study (here the
    test holds the coordinator's lock); that one leaves and sweep C, started on the same journal,
    coordinates. C must not fail B's live trial and train its parameters a second time."""
    import fcntl
    import time

    import optuna

    root, _ = ckplus
    store = tmp_path / "store"
    env = {**os.environ, "FACSLAB_MLRUNS": str(store)}
    command = _sweep_command(tmp_path, root, study="live", n_trials=1, epochs=60)
    journal = store / "optuna" / "live.journal"

    def trials():
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        try:
            return optuna.load_study(study_name="live", storage=storage).trials
        except KeyError:  # the journal exists a moment before the study's first record is in it
            return []

    (store / "optuna").mkdir(parents=True)
    with open(store / "optuna" / "live.lock", "w") as coordinator:
        fcntl.flock(coordinator, fcntl.LOCK_EX)
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not (journal.exists() and
                                                                        [t.state for t in trials()] == [TrialState.RUNNING]):
            time.sleep(0.5)
        time.sleep(5)  # past Optuna's making of the trial: its process holds the trial's lock
        assert first.poll() is None, "the first sweep ended before the second started"
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.wait(timeout=900) == 0
    assert second.returncode == 0, second.stderr[-2000:]
    assert "marked failed" not in second.stderr, second.stderr[-2000:]
    assert "trial(s) [0] run in another live process: left running" in second.stderr, second.stderr[-2000:]
    assert "still run in another process" in second.stdout, second.stdout
    assert [t.state for t in trials()] == [TrialState.COMPLETE]  # trained once, by its own process


def _sweep_command(tmp_path, root, study: str, n_trials: int, epochs: int) -> list[str]:
    """`facslab sweep` of a tiny study (one learning rate searched, no pruning), for real processes."""
    config = tiny_sweep_config(tmp_path / "sweep.yaml", root, study, n_trials, epochs, "tests")
    return [os.path.join(os.path.dirname(sys.executable), "facslab"), "sweep", "--config", str(config), "--no_register"]


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
