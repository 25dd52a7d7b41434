"""The ``facslab`` command: demo (generate + cache), generate, preprocess, eyes."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

from facslab.cli import main

from conftest import run_cli


def test_demo_generates_both_datasets_and_reuses_the_cache(tmp_path, capsys):
    args = ["demo", "--prepare_only", "--out", str(tmp_path), "--ckplus_subjects", "4", "--sequences", "5",
            "--celeba_images", "40", "--image_size", "32"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "generated CK+" in first and "generated CelebA" in first
    assert "CKPlusDataModule" in first and "cache built" in first
    assert (tmp_path / "CK+" / "cohn-kanade-images").is_dir()
    assert len(list((tmp_path / "CK+" / "FACS").rglob("*_facs.txt"))) == 5  # the total, over 4 subjects
    assert (tmp_path / "CK+" / "GENERATED_BY_FACSLAB.txt").is_file()
    assert (tmp_path / "CelebA" / "openface" / "img_align_celeba.csv").is_file()
    assert (tmp_path / "CKPlusDataModule_split.csv").is_file()
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "generated" not in second and "cache reused" in second and "cache built" not in second


def test_generate_one_dataset(tmp_path, capsys):
    assert main(["generate", "ckplus", str(tmp_path / "ck"), "--subjects", "2", "--sequences", "1"]) == 0
    assert len(list((tmp_path / "ck" / "FACS").rglob("*_facs.txt"))) == 2


def test_preprocess_from_a_yaml_config(ckplus, tmp_path, capsys):
    root, _ = ckplus
    config = tmp_path / "ck.yaml"
    config.write_text(f"""class_path: datamodules.CKPlusDataModule
init_args:
  root: {root}
  image_size: 32
  cache_dir: {tmp_path / 'cache'}
  preprocess_workers: 0
  progress: false
""")
    assert main(["preprocess", "--data", str(config), "--split", str(tmp_path / "split.csv")]) == 0
    assert "CKPlusDataModule" in capsys.readouterr().out
    assert (tmp_path / "split.csv").read_text().startswith("image,subject,role")


def test_eyes_on_a_real_photo_and_on_an_image_without_a_face(astronaut, tmp_path, capsys):
    face = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(face)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100, 3), 200, np.uint8)).save(blank)
    status = main(["eyes", str(face), str(blank)])
    captured = capsys.readouterr()
    assert status == 1  # one image had no face, the other was still processed
    assert "left eye EAR 0.3" in captured.out and captured.out.count("(open)") >= 2
    assert "blank.png: no face found" in captured.err


def test_help_gives_a_one_line_summary_of_every_subcommand_without_importing_torch_or_mlflow():
    """A real process: ``facslab --help`` lists every command from the groups' ``COMMANDS`` without
    building their parsers (the chain's import torch and Lightning: 7.7 s, now a fraction of one)."""
    import importlib
    import os
    import subprocess
    import sys

    script = ("import sys\nfrom facslab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              "print('loaded:', sorted(m for m in ('torch', 'lightning', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})
    out = done.stdout
    assert out.strip().endswith("loaded: []"), out[-500:]
    for command, words in (("demo", "whole chain"), ("sweep", "Optuna sweep"), ("register", "test it once"),
                           ("pretrain", "Pretrain"), ("emoji", "emoji"), ("serve", "web page")):
        line = next(line for line in out.splitlines() if line.strip().startswith(command))
        assert words in line, line
    from facslab.cli import groups

    listed = {line.split()[0] for line in out.split("Available subcommands:")[1].splitlines()
              if line.startswith("    ")}
    declared = {name for group in groups() for name in importlib.import_module(f"facslab.cli.{group}").COMMANDS}
    assert declared <= listed, declared - listed
    misspelt = subprocess.run([sys.executable, "-m", "facslab.cli", "swep"], capture_output=True, text=True,
                              timeout=120)
    assert misspelt.returncode == 2 and len(misspelt.stderr.strip().splitlines()) == 1, misspelt.stderr
    assert "invalid choice: 'swep'" in misspelt.stderr and "'sweep'" in misspelt.stderr, misspelt.stderr


def test_a_command_starts_with_the_collector_off_and_does_its_work_with_it_on():
    """A real process, ``facslab sweep`` through the console entry: building its parser imports
    torch, Lightning and MLflow without one full garbage collection (the collector is off), and the
    command's work (here a stand-in for the sweep) runs with the collector on again, what the
    start-up made frozen out of its way."""
    import json
    import os
    import subprocess
    import sys

    script = ("import gc, json, sys\nimport facslab.cli.chain as chain\nseen = {}\n"
              "def work(args, parser=None):\n"
              "    seen.update(enabled=gc.isenabled(), full=gc.get_stats()[2]['collections'],\n"
              "                frozen=gc.get_freeze_count(), torch='torch' in sys.modules)\n"
              "    return 0\n"
              "chain._sweep = work\nsys.argv = ['facslab', 'sweep', '--config', sys.argv[1]]\n"
              "from facslab.cli import console\nbefore = gc.get_stats()[2]['collections']\n"
              "seen['code'] = console()\nseen['full'] -= before\nprint(json.dumps(seen))")
    config = os.path.join(os.path.dirname(__file__), "..", "..", "sweeps", "demo.yaml")
    done = subprocess.run([sys.executable, "-c", script, config], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0 and seen["torch"] and seen["enabled"], seen
    assert seen["full"] == 0 and seen["frozen"] > 100_000, seen


@pytest.mark.slow
def test_a_misspelt_sweep_key_fails_before_any_trial_naming_the_key(ckplus, tmp_path, cli):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""study: typo
n_trials: 2
datamodule: {{class_path: CKPlusDataModule, init_args: {{root: {ckplus[0]}, image_size: 32, batch_sise: 8}}}}
model: {{class_path: AUDetector, init_args: {{backbone: resnet18}}}}
train: {{init_from: null}}
""")
    # a real process: nothing a fresh interpreter prints while it builds the config's classes either
    out = run_cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "batch_sise" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "store" / "optuna").exists()
    config.write_text(config.read_text().replace("batch_sise", "batch_size")
                      + "search: {threshold_policy: {choices: [fixed, f1]}}\n")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 2 and "threshold_policy does not change the objective" in out.stderr


@pytest.mark.slow
def test_auto_init_without_a_pretraining_run_says_what_to_run(ckplus, tmp_path, cli):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""study: no-pretraining
n_trials: 1
datamodule: {{class_path: CKPlusDataModule, init_args: {{root: {ckplus[0]}, image_size: 32, cache_dir: {tmp_path / 'cache'}}}}}
search: {{backbone: {{choices: [resnet18, alexnet]}}}}
train: {{init_from: auto}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 2
    assert "no finished pretraining run of resnet18 at 32 px on 100% of the pretraining data" in out.stderr
    assert "facslab pretrain --config configs/pretrain/demo.yaml --config.model.backbone resnet18" in out.stderr


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_is_an_error_not_a_quiet_success(ckplus, tmp_path, cli):
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""study: all-failed
n_trials: 1
pruner: none
datamodule: {{class_path: CKPlusDataModule, init_args: {{root: {ckplus[0]}, image_size: 32, cache_dir: {tmp_path / 'cache'}, progress: false}}}}
model: {{class_path: AUDetector, init_args: {{backbone: resnet18, dropout: 2.0}}}}
train: {{init_from: null, max_epochs: 1, progress: false}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 1, out.stderr[-2000:]
    assert "no trial of study all-failed completed (1 fail)" in out.stderr and "error.txt" in out.stderr


@pytest.mark.slow
def test_an_interrupted_trial_out_of_retries_is_said_not_run_again(ckplus, tmp_path, cli):
    import optuna

    from facslab.sweep import LOCAL_RETRIES

    store = tmp_path / "store"
    journal = store / "optuna" / "out-of-retries.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="out-of-retries", storage=storage, direction="maximize")
    # trial 0 and its retries, each interrupted; the last one is RUNNING, as a killed process leaves it
    for number in range(LOCAL_RETRIES + 1):
        trial = study.ask()
        if number:
            storage.set_trial_system_attr(trial._trial_id, "failed_trial", 0)
            storage.set_trial_system_attr(trial._trial_id, "retry_history", list(range(number)))
        if number < LOCAL_RETRIES:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""study: out-of-retries
n_trials: 1
pruner: none
datamodule: {{class_path: CKPlusDataModule, init_args: {{root: {ckplus[0]}, image_size: 32, cache_dir: {tmp_path / 'cache'}, progress: false}}}}
model: {{class_path: AUDetector, init_args: {{backbone: resnet18}}}}
train: {{init_from: null, max_epochs: 1, progress: false}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(store)})
    assert (f"1 interrupted trial(s) marked failed, 0 enqueued again (finished folds are reused), 1 with its "
            f"{LOCAL_RETRIES} retries used up (not run again)") in out.stderr, out.stderr[-2000:]
    states = [t.state for t in optuna.load_study(study_name="out-of-retries", storage=storage).trials]
    assert states == [optuna.trial.TrialState.FAIL] * (LOCAL_RETRIES + 1)  # nothing waits to run it again


def test_every_group_declares_the_commands_it_adds_and_a_command_builds_its_group_alone():
    """The CLI builds only the parsers of the command it runs, finding its group by ``COMMANDS``:
    each group's declaration must be exactly what its ``add_commands`` adds."""
    import importlib

    from facslab.cli import build_parser, groups

    for group in groups():
        module = importlib.import_module(f"facslab.cli.{group}")
        _, commands = build_parser(next(iter(module.COMMANDS)))
        assert set(commands) == set(module.COMMANDS), group
    assert build_parser(None)[1] == {} and build_parser("swep")[1] == {}  # a list of commands, none built


def test_emoji_on_a_saved_onnx_model_imports_neither_torch_nor_lightning(model_dir, astronaut, tmp_path):
    """A real process: ``facslab emoji`` on a model folder with its ONNX export answers from the
    export's own outputs, with the probabilities PyTorch gives (--runtime torch), without loading
    torch or Lightning (seconds of start-up)."""
    import json
    import os
    import subprocess
    import sys

    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    script = ("import json, sys\nfrom facslab.cli import main\n"
              "code = main(sys.argv[1:])\n"
              "torch = sys.modules.get('torch')\n"
              "print(json.dumps({'code': code, 'loaded': sorted(m for m in ('torch', 'lightning') if m in sys.modules),"
              " 'threads': torch and torch.get_num_threads()}))")
    answers = {}
    for runtime in ("auto", "torch"):  # torch loads after --threads was applied: it takes the count too
        done = subprocess.run([sys.executable, "-c", script, "emoji", str(image), "--model", str(model_dir), "--json",
                               "--runtime", runtime, "--threads", "1"], capture_output=True, text=True, timeout=300,
                              env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
        assert done.returncode == 0, done.stderr[-2000:]
        *faces, status = done.stdout.strip().splitlines()
        answers[runtime] = (json.loads("\n".join(faces)), json.loads(status))
    assert answers["auto"][1] == {"code": 0, "loaded": [], "threads": None}
    assert answers["torch"][1] == {"code": 0, "loaded": ["lightning", "torch"], "threads": 1}
    auto, torch_run = answers["auto"][0][0]["probabilities"], answers["torch"][0][0]["probabilities"]
    assert auto.keys() == torch_run.keys() and all(abs(auto[k] - torch_run[k]) <= 1e-4 for k in auto)


def test_an_export_of_logits_only_is_said_once_and_answers_as_the_new_export(model_dir, astronaut, tmp_path, cli):
    """A model folder saved before facslab 23e337f has an ONNX export of the logits only: the apps
    then load PyTorch to compute the outputs, and ``emoji`` says so in one note (not a silent
    slowdown), with the probabilities the folder's new export gives."""
    import json
    import shutil

    import onnx

    from facslab.model_folder import ONNX_FILE

    old = tmp_path / "old_model"
    shutil.copytree(model_dir, old)
    graph = onnx.load(old / ONNX_FILE)
    kept = [output for output in graph.graph.output if output.name == "logits"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, old / ONNX_FILE)
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    answers, notes = {}, {}
    for name, folder in (("old", old), ("new", model_dir)):
        done = cli("emoji", str(image), "--model", str(folder), "--emotion_model", "none", "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        answers[name] = json.loads(done.stdout)[0]["probabilities"]
        notes[name] = [line for line in done.stderr.splitlines() if "ONNX export gives logits only" in line]
    assert notes["new"] == [] and len(notes["old"]) == 1, notes
    assert notes["old"][0].startswith(f"note: {old}: ") and "PyTorch is loaded to compute its AUs" in notes["old"][0]
    assert answers["old"].keys() == answers["new"].keys()
    assert all(abs(answers["old"][k] - answers["new"][k]) <= 1e-4 for k in answers["new"])


def _register_outside_facslab_commands(env: dict, name: str, *folders) -> None:
    """Versions 1, 2, ... of ``name`` (the folders given), logged as the registry logs them, the alias
    champion on the first: a real process writing to the store with MLflow itself."""
    import subprocess
    import sys

    script = ("import sys, mlflow\nfrom facslab.mlflow_store import setup_tracking\n"
              "from facslab.predictor import TaskPredictor\nfrom facslab.serving import log_predictor\n"
              "setup_tracking(None)\nfor folder in sys.argv[2:]:\n    with mlflow.start_run():\n"
              "        log_predictor(TaskPredictor.load(folder, runtime='torch'), sys.argv[1])\n"
              "mlflow.MlflowClient().set_registered_model_alias(sys.argv[1], 'champion', 1)")
    done = subprocess.run([sys.executable, "-c", script, name, *map(str, folders)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def _emoji_process(image, env: dict, *options: str, verbose: bool = True) -> tuple[int, list[str], list[str], object]:
    """``facslab -v emoji IMAGE --json OPTIONS`` as a real process: its exit status, which of torch,
    MLflow and MLflow's pyfunc loader it imported, where it asked the store about its models
    ("aside": a forked process; "here": itself; neither: the store's file answered; only said with
    ``verbose``, -v, which also shows a mistake's traceback) and its faces (its stderr when it
    failed)."""
    import json
    import subprocess
    import sys

    script = ("import json, sys\nfrom facslab.cli import main\ncode = main(sys.argv[1:])\nprint(json.dumps({'code': code, "
              "'loaded': sorted(m for m in ('torch', 'mlflow', 'mlflow.pyfunc') if m in sys.modules)}))")
    done = subprocess.run([sys.executable, "-c", script, *(["-v"] if verbose else []), "emoji", str(image), "--json", *options],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    *faces, status = done.stdout.strip().splitlines()
    status = json.loads(status)
    asked = [where for where, said in (("aside", "asked aside (process"), ("here", "asking the MLflow store"))
             if said in done.stderr]
    if "aside" in asked:  # the forked process ended well, and within the time the app gives it
        assert "exit status 0" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    return status["code"], status["loaded"], asked, done.stderr if status["code"] else json.loads("\n".join(faces))


@pytest.mark.slow
def test_emoji_on_a_registered_model_reads_its_folder_and_asks_mlflow_only_after_the_store_changed(model_dir,
                                                                                                      tmp_path):
    """Real processes on one store: a model registered as the registry does, then ``facslab emoji
    --model models:/NAME@champion`` answers as the folder does, reading the logged model's files:
    neither MLflow's pyfunc loader (whose check of every installed package took over a second)
    nor torch is imported. The store was written outside facslab's commands, so its file does not
    answer: a forked process asks MLflow aside, and the app itself never imports MLflow (1.7 s of
    its start-up). Started again on the unchanged store, nothing is asked; once the alias has moved
    to another version it answers with that one (asked aside again), and once the alias is gone it
    says so, as MLflow would: no answer of an older store is used. A URI the file knows the store
    lacks is asked in the app's own process, whose error names it."""
    import os

    import torch

    from facslab.predictor import AUPredictor
    from lightning_modules.au_detector import AUDetector

    image = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(image)
    store = tmp_path / "store"
    env = {**os.environ, "FACSLAB_MLRUNS": str(store)}

    def emoji(model, *more, verbose=True):
        code, loaded, asked, said = _emoji_process(image, env, "--model", model, *more, verbose=verbose)
        return code, (loaded, asked), said if code else said[0]["probabilities"]

    torch.manual_seed(1)
    other = tmp_path / "other"
    AUPredictor(AUDetector("resnet18", unfrozen_blocks=0, hidden_size=16, image_size=32),
                provenance={"trained_on": "generated", "datasets": "CKPlus (generated)"}).save(other)
    _register_outside_facslab_commands(env, "startup-au", model_dir, other)
    champion = "models:/startup-au@champion"
    first, again, folder = emoji(champion), emoji(champion), emoji(str(model_dir))
    # neither pyfunc nor torch nor MLflow in the app; asked aside, then not at all
    assert first[:2] == (0, ([], ["aside"])) and again[:2] == (0, ([], [])) and folder[:2] == (0, ([], []))
    assert first[2] == again[2] == folder[2]
    # the store has no emotion champion (kept as such for the apps' default): asked for by name, it is
    # MLflow's one line, not a folder called None
    status, (_, asked), said = emoji(champion, "--emotion_model", "models:/facslab-emotion@champion")
    assert status == 2 and "models:/facslab-emotion@champion: not in the MLflow store" in said, said
    assert asked == ["here"], said
    # a path inside the model: not the champion's folder (the file never answers it), MLflow's answer
    status, (_, asked), said = emoji(f"{champion}/facslab")
    assert status == 2 and "No such artifact: 'facslab/MLmodel'" in said and asked == ["here"], said
    from mlflow import MlflowClient

    # the store's own, for runs and models: not this worker's global registry (a module's sweep fixture sets it)
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}", registry_uri=f"sqlite:///{store / 'mlflow.db'}")
    client.set_registered_model_alias("startup-au", "champion", 2)
    moved = emoji(champion)
    assert moved[:2] == (0, ([], ["aside"])) and moved[2] != first[2] and moved[2] == emoji(str(other))[2]
    client.delete_registered_model_alias("startup-au", "champion")
    status, _, said = emoji(champion, verbose=False)
    assert status == 2 and "startup-au" in said and "Traceback" not in said, said


@pytest.mark.slow
def test_a_facslab_command_that_wrote_to_the_store_answers_the_apps_for_it_before_it_exits(model_dir, tmp_path,
                                                                                            cli):
    """A store whose AU champion was registered outside facslab's commands; an app asked it for
    version 1 by URI (asked aside: the file had no answers). ``facslab port-fer`` (the command, in process) then writes
    to it, and before it exits answers the apps' questions for the store as it now is: what they
    asked before and their defaults. ``facslab emoji`` (real processes) then answers with the
    default options (the AU champion and the new emotion champion) and with version 1 without
    asking the store at all. After a write from outside facslab's commands, the next app asks it
    again (aside); the questions it did not ask stay in the store's file for the next command to
    answer."""
    import os

    from mlflow import MlflowClient

    image = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(image)
    env = {**os.environ, "FACSLAB_MLRUNS": str(tmp_path / "store")}
    _register_outside_facslab_commands(env, "facslab-au", model_dir)
    code, loaded, asked, by_version = _emoji_process(image, env, "--model", "models:/facslab-au/1")
    assert (code, loaded, asked) == (0, [], ["aside"]) and "emotion" not in by_version[0]
    assert cli("port-fer", env={"FACSLAB_MLRUNS": env["FACSLAB_MLRUNS"]}).returncode == 0
    code, loaded, asked, by_default = _emoji_process(image, env)
    assert (code, loaded, asked) == (0, [], []), (loaded, asked)
    assert by_default[0]["probabilities"] == by_version[0]["probabilities"]
    assert by_default[0]["emotion"]["label"] == "happy"  # the ported FER-2013 model, the emotion champion
    assert _emoji_process(image, env, "--model", "models:/facslab-au/1")[:3] == (0, [], [])
    database = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # not this worker's global registry
    client = MlflowClient(database, registry_uri=database)
    client.set_registered_model_tag("facslab-au", "note", "elsewhere")
    assert _emoji_process(image, env)[:3] == (0, [], ["aside"])
    # that app kept only its own answers, and every question: version 1 is answered ahead again
    client.set_registered_model_tag("facslab-au", "note", "elsewhere again")
    assert cli("port-fer", env={"FACSLAB_MLRUNS": env["FACSLAB_MLRUNS"]}).returncode == 0
    assert _emoji_process(image, env, "--model", "models:/facslab-au/1")[:3] == (0, [], [])


def test_weights_that_do_not_fit_the_model_class_are_one_line(model_dir, astronaut, tmp_path, cli):
    """A folder whose weights another version of the model class wrote (a layer added since): one
    line naming the weights file, exit 2, no traceback."""
    import shutil

    import torch

    folder = tmp_path / "old"
    shutil.copytree(model_dir, folder)
    state = torch.load(folder / "model.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("head.")}, folder / "model.pt")
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    done = cli("emoji", str(image), "--model", str(folder), "--runtime", "torch")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    line, = done.stderr.strip().splitlines()
    assert f"{folder / 'model.pt'}" in line and "do not fit" in line and "Missing key" in line, line
