"""The team setup with real processes: `facslab services up` (PostgreSQL + MLflow tracking server),
independent `facslab sweep` workers sharing one study, a worker killed with SIGKILL mid-trial, the
MLflow server restarted mid-sweep, and the registry used through the server.

Everything binds to loopback on free ports; every wait is bounded. `.ci/run` installs PostgreSQL
and sets FACSLAB_REQUIRE_SERVICES=1, so there a missing server program fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from facslab import services as svc

from conftest import tiny_sweep_config

pytestmark = [pytest.mark.xdist_group("services"), pytest.mark.slow]
FACSLAB = os.path.join(os.path.dirname(sys.executable), "facslab")


def _postgres_available() -> bool:
    try:
        svc.postgres_bindir()
        return True
    except svc.ServicesError:
        return False


if not _postgres_available() and not os.environ.get("FACSLAB_REQUIRE_SERVICES"):
    pytest.skip("PostgreSQL's server programs are not installed (apt-get install postgresql)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def services():
    # under root the server runs as `postgres`, which cannot enter pytest's private tmp folders
    folder = Path(tempfile.mkdtemp(prefix="facslab-services-"))
    folder.chmod(0o755)
    command = [FACSLAB, "services", "up", "--folder", str(folder / "s"), "--postgres_port", str(_free_port()),
               "--mlflow_port", str(_free_port())]
    up = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    started, _ = svc.Services.load(folder / "s")
    yield started, command
    down = subprocess.run([FACSLAB, "services", "down", "--folder", str(started.folder)], capture_output=True,
                          text=True, timeout=120)
    assert down.returncode == 0 and "postgresql" in down.stdout, down.stdout + down.stderr
    after = subprocess.run([FACSLAB, "services", "status", "--folder", str(started.folder)], capture_output=True,
                           text=True, timeout=60)
    assert after.returncode == 3 and "postgresql: stopped" in after.stdout and "mlflow: stopped" in after.stdout


def _env(services: svc.Services, store: Path) -> dict:
    return {**os.environ, "FACSLAB_OPTUNA_STORAGE": services.optuna_storage,
            "MLFLOW_TRACKING_URI": services.tracking_uri, "FACSLAB_MLRUNS": str(store)}


def _config(tmp_path: Path, ckplus, study: str, n_trials: int, epochs: int = 1, **extra) -> Path:
    root, _ = ckplus
    return tiny_sweep_config(tmp_path / f"{study}.yaml", root, study, n_trials, epochs, "services",
                             "heartbeat_interval: 1", "heartbeat_grace: 5", f"register: {{name: {study}-model}}",
                             *(f"{k}: {v}" for k, v in extra.items()))


def _sweep(config: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([FACSLAB, "sweep", "--config", str(config), "--no_register"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


def _runs(services: svc.Services) -> list:
    client = MlflowClient(services.tracking_uri)
    return client.search_runs([client.get_experiment_by_name("services").experiment_id], max_results=1000)


def test_status_prints_the_uris_workers_export(services):
    started, _ = services
    status = subprocess.run([FACSLAB, "services", "status", "--folder", str(started.folder)], capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "postgresql: running" in status.stdout and "mlflow: running" in status.stdout
    assert f"export MLFLOW_TRACKING_URI='http://127.0.0.1:{started.mlflow_port}'" in status.stdout
    assert f"@127.0.0.1:{started.postgres_port}/optuna'" in status.stdout


def test_a_missing_postgresql_names_the_package_to_install(tmp_path, monkeypatch, capsys):
    from facslab.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(svc, "DEBIAN_POSTGRES", tmp_path / "none")
    assert main(["services", "up", "--folder", str(tmp_path / "s")]) == 2
    assert "apt-get install postgresql" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _failures(services: svc.Services, study: optuna.Study) -> str:
    """The tracebacks of a study's failed trials, from their MLflow runs, for an assertion message."""
    client, lines = MlflowClient(services.tracking_uri), []
    for trial in study.trials:
        if trial.state == TrialState.FAIL and "mlflow_run_id" in trial.user_attrs:
            try:
                error = client.download_artifacts(trial.user_attrs["mlflow_run_id"], "error.txt")
                lines.append(f"trial {trial.number}:\n{Path(error).read_text()[-2000:]}")
            except Exception as missing:  # a killed worker logs no traceback
                lines.append(f"trial {trial.number}: no error.txt ({missing})")
    return "\n".join(lines)


def test_concurrent_workers_log_the_same_dataset_without_failing(services, tmp_path):
    """The server checks for a dataset row, then inserts it: two runs logging a new dataset at the
    same instant collide on the unique key. facslab's logging helper must absorb that."""
    started, _ = services
    script = tmp_path / "log_same_dataset.py"
    script.write_text(f"""
import sys, time, warnings
import mlflow, pandas as pd
from facslab.mlflow_store import log_dataset_input, setup_tracking
warnings.simplefilter("ignore")
setup_tracking("{started.tracking_uri}", "dataset-race")
start = float(sys.argv[1])
for i in range(12):
    while time.time() < start + i * 0.5:  # both processes log at the same instants
        time.sleep(0.001)
    with mlflow.start_run():
        dataset = mlflow.data.from_pandas(pd.DataFrame({{"subject": ["S001"]}}), source="/data", digest=f"d{{i}}",
                                          name="split")
        log_dataset_input(dataset, context="sweep-trial")
print("ok")
""")
    start = str(time.time() + 8)  # after both interpreters have imported MLflow
    racers = [subprocess.Popen([sys.executable, str(script), start], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0 and out.splitlines()[-1] == "ok", err[-3000:]
    runs = MlflowClient(started.tracking_uri).search_runs(
        [MlflowClient(started.tracking_uri).get_experiment_by_name("dataset-race").experiment_id], max_results=100)
    assert len(runs) == 24 and all(len(r.inputs.dataset_inputs) == 1 for r in runs)


class _UnansweringProxy:
    """A TCP relay to the tracking server that leaves the ``nth`` request naming ``endpoint``
    unanswered: passes it on, waits for the server's answer and resets the client's connection
    instead (``carried_out``, as when a server stops for a restart), or resets it at once."""

    def __init__(self, upstream: tuple[str, int], endpoint: bytes, nth: int = 1, carried_out: bool = True):
        self.upstream, self.endpoint, self.nth, self.carried_out = upstream, endpoint, nth, carried_out
        self.seen = self.resets = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:  # closed, or the server gone: the client's request fails and says so
                return
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket):
        # one thread per connection: a socket another thread is reading does not reset when closed
        swallow = False
        while True:
            readable, _, _ = select.select([client, server], [], [])
            try:
                data = readable[0].recv(65536)
                if not data:
                    break
                if readable[0] is client:
                    if self.endpoint in data.split(b"\r\n", 1)[0]:
                        self.seen += 1
                        swallow = self.seen == self.nth
                        if swallow and not self.carried_out:
                            break
                    server.sendall(data)
                elif swallow:  # carried out: the client hears nothing but a reset
                    break
                else:
                    client.sendall(data)
            except OSError:
                break
        if swallow:
            self.resets += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        server.close()


def _through_relay(started: svc.Services, tmp_path: Path, experiment: str, body: str, endpoint: bytes,
                   **relay) -> list[str]:
    """``body`` (Python, MLflow pointed at ``experiment`` through an ``_UnansweringProxy``) run as its
    own process; the words of what it printed. The relay must have left one request unanswered."""
    proxy = _UnansweringProxy((started.host, started.mlflow_port), endpoint, **relay)
    script = tmp_path / "through_relay.py"
    script.write_text(f"""
import warnings
import mlflow, pandas as pd
from facslab.mlflow_store import log_dataset_input, setup_tracking, start_child_run
warnings.simplefilter("ignore")
setup_tracking("http://127.0.0.1:{proxy.port}", "{experiment}")
""" + body)
    with proxy:
        logged = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert proxy.resets == 1, f"the relay saw {proxy.seen} {endpoint.decode()} requests, not the {proxy.nth} it waits for"
    assert logged.returncode == 0, logged.stderr[-3000:]
    return logged.stdout.split()


def test_a_dataset_input_the_server_carried_out_but_never_answered_is_sent_again(services, tmp_path):
    """MLflow does not resend a LogInputs request that got no answer (it is not idempotent in
    general); facslab's helper does, because the server links a run to a dataset once. Without it a
    sweep's trial failed whenever the tracking server restarted while the trial logged its split."""
    started, _ = services
    printed = _through_relay(started, tmp_path, "unanswered", """
with mlflow.start_run() as run:
    dataset = mlflow.data.from_pandas(pd.DataFrame({"subject": ["S001"]}), source="/data", digest="d0", name="split")
    log_dataset_input(dataset, context="sweep-trial")
print(run.info.run_id)
""", b"/runs/log-inputs")
    run = MlflowClient(started.tracking_uri).get_run(printed[-1])
    assert [(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs] == [("split", "d0")]


@pytest.mark.parametrize("carried_out", [True, False], ids=["carried-out", "dropped"])
def test_a_trial_run_the_server_never_answered_is_made_once(services, tmp_path, carried_out):
    """A sweep's trial creates its run under the sweep's; when that request gets no answer, the
    trial's run is the one the server made, or a new one if it made none, never a second."""
    started, _ = services
    parent_id, child_id = _through_relay(started, tmp_path, "unanswered-runs", """
with mlflow.start_run() as parent:  # the first CreateRun; the relay leaves the second unanswered
    child = start_child_run("trial 007 resnet18", parent.info.run_id)
    mlflow.end_run()
print(parent.info.run_id, child.info.run_id)
""", b"/runs/create", nth=2, carried_out=carried_out)[-2:]
    client = MlflowClient(started.tracking_uri)
    children = client.search_runs([client.get_run(parent_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert [(r.info.run_id, r.info.run_name, r.info.status) for r in children] == [
        (child_id, "trial 007 resnet18", "FINISHED")]


def test_workers_started_together_on_the_database_propose_different_parameters(services, ckplus, tmp_path):
    """Separately started workers all call themselves worker 0; loading an empty study at the same
    instant, they must still draw different sequences (a shared seed made one trial repeat
    another's parameters, and a retry of the first was then pruned as a duplicate)."""
    started, _ = services
    config = _config(tmp_path, ckplus, "together-seeds", n_trials=2)
    optuna.create_study(study_name="together-seeds", storage=started.optuna_storage, direction="maximize")
    script = tmp_path / "first_proposal.py"
    script.write_text(f"""
import sys, time
from facslab.config import SweepConfig
from facslab.demo_chain import load_config
from facslab.sweep import load_study
config = load_config(SweepConfig, "{config}")
study = load_study(config)  # both load the empty study before either asks
while time.time() < float(sys.argv[1]):
    time.sleep(0.001)
print("lr", study.ask().suggest_float("lr", 1e-4, 1e-2, log=True))
""")
    start = str(time.time() + 10)
    env = _env(started, tmp_path / "store")
    procs = [subprocess.Popen([sys.executable, str(script), start], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    proposals = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        proposals.append(next(line for line in out.splitlines() if line.startswith("lr ")))
    assert proposals[0] != proposals[1], proposals


def test_two_independent_workers_complete_one_study(services, ckplus, tmp_path):
    started, _ = services
    config = _config(tmp_path, ckplus, "together", n_trials=4)
    env = _env(started, tmp_path / "store")
    workers = [_sweep(config, env) for _ in range(2)]
    outputs = [_finish(worker) for worker in workers]
    study = optuna.load_study(study_name="together", storage=started.optuna_storage)
    # which worker ran what, when: the last assertion depends on both starting before the study is done
    trials = "\n".join(f"trial {t.number} {t.state.name} {t.user_attrs.get('worker')} lr {t.params.get('lr')} "
                       f"{t.datetime_start} -> {t.datetime_complete}" for t in study.trials)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4, trials + "\n" + _failures(started, study)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3], trials
    assert len({t.params["lr"] for t in study.trials}) == 4, trials
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2, (  # both workers ran trials
        f"{trials}\nworkers {[w.pid for w in workers]}:\n" + "\n".join(out[-1500:] for out in outputs))
    runs = _runs(started)
    trial_runs = [r for r in runs if r.data.tags.get("study") == "together" and "trial" in r.data.tags]
    assert len(trial_runs) == 4 and all(r.info.status == "FINISHED" for r in trial_runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {study.user_attrs["mlflow_parent_run_id"]}


def test_a_worker_killed_mid_trial_is_failed_by_heartbeat_retried_and_its_run_closed(services, ckplus, tmp_path):
    started, _ = services
    config = _config(tmp_path, ckplus, "killed", n_trials=4, epochs=3)
    env = _env(started, tmp_path / "store")
    workers = [_sweep(config, env) for _ in range(2)]
    pids = {w.pid for w in workers}
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        try:
            running = optuna.load_study(study_name="killed", storage=started.optuna_storage).get_trials(
                states=(TrialState.RUNNING,))
        except KeyError:
            continue
        busy = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running if "worker" in t.user_attrs]
        victim = next((pid for pid in busy if pid in pids), None)
    assert victim is not None, "no worker was mid-trial"
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    survivor = next(w for w in workers if w.pid != victim)
    out = _finish(survivor)
    next(w for w in workers if w.pid == victim).wait(timeout=30)
    study = optuna.load_study(study_name="killed", storage=started.optuna_storage)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["worker"].endswith(f":{victim}")
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == failed[0].params
    assert states.count(TrialState.COMPLETE) == 4  # n_trials finished trials: the retry stands for the dead one
    # failed within the grace period (5 s) plus one heartbeat and the survivor's trial in progress
    print(f"killed trial {failed[0].number}: started {failed[0].datetime_start}, worker killed at "
          f"{time.strftime('%H:%M:%S', time.gmtime(killed_at))}, FAILED at {failed[0].datetime_complete}; retry "
          f"trial {retry[0].number} {retry[0].datetime_start} -> {retry[0].datetime_complete}")
    assert "lost its worker" in out
    runs = {r.info.run_id: r for r in _runs(started)}
    dead_run = runs[failed[0].user_attrs["mlflow_run_id"]]
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["interrupted"] == "true"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


def test_the_mlflow_server_restarted_mid_sweep_loses_nothing(services, ckplus, tmp_path):
    started, up_command = services
    config = _config(tmp_path, ckplus, "restarted", n_trials=3, epochs=2)
    worker = _sweep(config, _env(started, tmp_path / "store"))
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="restarted", storage=started.optuna_storage)
        except KeyError:
            continue
        if study.get_trials(states=(TrialState.RUNNING,)):
            break
    _, state = svc.Services.load(started.folder)
    assert svc.stop_mlflow(state["mlflow_pid"])
    assert not svc.mlflow_healthy(started)
    time.sleep(3)
    again = subprocess.run(up_command, capture_output=True, text=True, timeout=300)  # restarts only what is down
    assert again.returncode == 0, again.stderr[-3000:]
    out = _finish(worker)
    study = optuna.load_study(study_name="restarted", storage=started.optuna_storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3, out[-30000:] + "\n" + _failures(started, study)
    trial_runs = [r for r in _runs(started) if r.data.tags.get("study") == "restarted" and "trial" in r.data.tags]
    assert len(trial_runs) == 3 and all(r.info.status == "FINISHED" for r in trial_runs)
    assert all("val_pr_auc" in r.data.metrics for r in trial_runs)


def test_registry_alias_and_champion_loading_work_through_the_server(services, ckplus, tmp_path, astronaut, cli):
    import cv2

    started, _ = services
    config = _config(tmp_path, ckplus, "registered", n_trials=1)
    env = _env(started, tmp_path / "store")
    swept = cli("sweep", "--config", str(config), env=env)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    # the registry URI too: another test in this process may have pointed MLflow's global one elsewhere
    client = MlflowClient(started.tracking_uri, registry_uri=started.tracking_uri)
    champion = client.get_model_version_by_alias("registered-model", "champion")
    assert champion.tags["trained_on"] == "generated"
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    emoji = cli("emoji", str(image), "--json", "--model", "models:/registered-model@champion", "--tracking_uri",
                started.tracking_uri, env=env)
    assert emoji.returncode == 0, emoji.stderr[-3000:]
    faces = json.loads(emoji.stdout)
    assert len(faces) == 1 and len(faces[0]["probabilities"]) == 18
    assert "generated faces" in emoji.stderr  # the provenance note travels with the registered model
