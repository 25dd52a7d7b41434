"""Commands of the apps: face -> emoji on images, live video, the web page, and the eyes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jsonargparse import ArgumentParser

from facslab.badinput import BadInputError
from facslab.errors import ConfigError
from facslab.store_answers import DEFAULT_MODEL, app_questions, auto_champion, optional_tasks, store_version


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


def _eyes(args, parser=None) -> int:
    from facslab.faces.detect import MIN_CONFIDENCE, check_detector, detect_faces, predict_landmarks
    from facslab.faces.eyes import eye_aspect_ratios

    failures = []
    check_detector(args.detector)
    find = lambda image: detect_faces(image, args.detector, min_confidence=MIN_CONFIDENCE)  # noqa: E731
    for path, image, faces in _images_with_faces(args.images, find, failures, "eyes"):
        for k, face in enumerate(faces):
            left, right = eye_aspect_ratios(predict_landmarks(image, face, 68))
            state = lambda ear: "closed" if ear < args.threshold else "open"  # noqa: E731
            print(f"{path} face {k}: left eye EAR {left:.3f} ({state(left)}), "
                  f"right eye EAR {right:.3f} ({state(right)})")
    return _status(failures)


def _analyzer(args):
    from facslab.local_store import StoreLookups, default_tracking_uri
    from facslab.store_answers import AsideAnswers

    # what the store answered before, while its database is unchanged: no MLflow to import; what it
    # did not, asked aside while this process loads what every model needs
    with AsideAnswers(StoreLookups(args.tracking_uri or default_tracking_uri()), _store_questions(args)) as aside:
        from facslab.analysis import FaceAnalyzer
        from facslab.emoji import load_emojis

        if args.threads:
            from facslab.threads import set_threads

            set_threads(args.threads)
        if aside.process is not None:
            from facslab.faces.detect import preload

            preload(args.detector)
            if args.runtime != "torch":
                import onnxruntime  # noqa: F401 (its import, beside the store's answers)
    args.lookups = aside.lookups
    main_model = _task_predictor(args.model, None, "--model", args)
    also = [_task_predictor(uri, None, "--also", args) for uri in args.also or []]
    # each task's own option (--emotion_model, --va_model, ...) checks that its model is one of the
    # task; auto (the task's registered champion) gives way to a model of the task given already
    given = [m for m in (main_model, *also) if m is not None]
    optional = []
    for cls in optional_tasks():
        if not hasattr(args, cls.app_option):  # a task imported after the parser was built: --also takes it
            continue
        uri = getattr(args, cls.app_option)
        if uri == "auto":
            uri = None if any(m.task == cls.task for m in given) else _registered_champion(cls.task, args)
        optional.append(_task_predictor(uri, cls.task, f"--{cls.app_option}", args))
    args.lookups.save()
    analyzer = FaceAnalyzer([main_model, *optional, *also], load_emojis(args.emojis), metric=args.metric,
                            eye_threshold=args.eye_threshold, detector=args.detector)
    for note in analyzer.provenance_notes():  # said once, before any result
        print(note, file=sys.stderr)
    return analyzer


def _task_predictor(uri: str | None, task: str | None, flag: str, args):
    """The model of an option (a model URI or folder), which must be one of ``task`` when that is
    given; None without a URI, or with none."""
    from facslab.local_store import UNKNOWN
    from facslab.model_uri import load_predictor

    if uri is None or uri == "none":
        return None
    folder = UNKNOWN
    if uri.startswith("models:/"):
        folder = args.lookups.known(uri)
        if folder is UNKNOWN:
            from facslab.model_uri import logged_folder

            _ask_the_store(args)
            folder = logged_folder(uri)
            args.lookups.remember(uri, folder)
    elif uri.startswith("runs:/"):  # a copy of the run's artifacts each time, as MLflow makes it
        _ask_the_store(args)
    model = load_predictor(uri if folder is UNKNOWN else str(folder), args.runtime, args.threads)
    if task is not None and model.task != task:
        raise BadInputError(uri, f"a model of the {model.task} task; {flag} takes one of the {task} task")
    if model.onnx_session is not None and not model.onnx_gives_outputs:  # said, not slowed down silently
        print(f"note: {uri}: its ONNX export gives logits only (saved before facslab 23e337f), so PyTorch is "
              f"loaded to compute its {model.outputs_name} (seconds more before the first answer); a model "
              "saved or registered since then starts without it", file=sys.stderr)
    return model


def _store_questions(args) -> list[str]:
    """The store URIs this app may ask about (``app_questions``): a task imported after the parser
    was built has no option here (``--also`` takes it)."""
    return app_questions(args.model, args.also or [],
                         {cls.app_option: getattr(args, cls.app_option, None) for cls in optional_tasks()})


def _registered_champion(task: str, args) -> str | None:
    """The task's champion (``auto_champion``) when the store holds it (as ``facslab port-fer``
    registers the emotion model); None otherwise."""
    from facslab.local_store import UNKNOWN
    from facslab.predictor import PREDICTORS  # not facslab.tasks: it imports torch and Lightning

    uri = auto_champion(PREDICTORS[task], args.model)
    if uri is None or args.lookups.absent(uri):
        return None
    if args.lookups.known(uri) is UNKNOWN:
        from mlflow.exceptions import MlflowException

        _ask_the_store(args)
        try:
            if store_version(uri) is None:
                args.lookups.remember(uri, None)
                return None
        except MlflowException:
            return None
    return uri


def _ask_the_store(args) -> None:
    """Point MLflow at the apps' store, once per app, before asking it about a model URI."""
    from facslab.mlflow_store import setup_tracking

    if not args.lookups.asked:
        import logging

        logging.getLogger(__name__).info("asking the MLflow store %s in this process", args.lookups.tracking_uri)
        setup_tracking(args.tracking_uri, args.experiment)
        args.lookups.watch()


def _emoji(args, parser=None) -> int:
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


def _live(args, parser=None) -> int:
    from dataclasses import replace

    from facslab.live import run_live
    from facslab.video_io import open_source

    settings = _tracking(args)
    # a camera's frames come at their own pace: no frame waits for a detection there; a file's rows
    # stay the same from run to run
    background = args.detection == "background" or (args.detection == "auto" and args.source.isdigit())
    settings = replace(settings, detect_in_background=background)
    capture = open_source(args.source)  # before the model loads: a wrong source is said at once
    stats = run_live(_analyzer(args), capture, out=args.out, csv_path=args.csv, max_frames=args.max_frames,
                     show=args.show, progress=not args.quiet, settings=settings, chart=args.chart)
    print(f"{stats.frames} frames, {stats.faces} faces, {stats.detections} detections: {stats.fps:.1f} fps")
    if stats.corrupt_frames:
        shown = ", ".join(map(str, stats.corrupt_frames[:10])) + (", …" if len(stats.corrupt_frames) > 10 else "")
        print(f"{args.source}: {len(stats.corrupt_frames)} frame(s) did not decode and were skipped (frame {shown}); "
              "the frames around them are in the outputs", file=sys.stderr)
    print(stats.breakdown())
    return 0


def _analyze(args, parser=None) -> int:
    from facslab.offline import analyze_sources

    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: give at least 1 frame")
    analyzer, failures = _analyzer(args), []
    for outcome in analyze_sources(analyzer, args.sources, Path(args.csv), _tracking(args), progress=not args.quiet,
                                   batch_frames=args.batch):
        if outcome.error is not None:
            print(f"facslab analyze: error: {outcome.error}", file=sys.stderr)
            failures.append((outcome.source, True))
        elif outcome.stats is None:
            print(f"{outcome.source}: {outcome.csv} exists: skipped (delete it to analyse the video again)")
        else:
            stats = outcome.stats
            skipped = f", {len(stats.corrupt_frames)} frame(s) did not decode" if stats.corrupt_frames else ""
            print(f"{outcome.source}: {stats.frames} frames, {stats.faces} faces at {stats.fps:.1f} fps{skipped} -> "
                  f"{outcome.csv}")
    return _status(failures)


def _serve(args, parser=None) -> int:
    from facslab.web.app import serve

    from facslab.listening import check_port

    check_port(args.host, args.port, f"--host {args.host} --port {args.port}")  # before the model loads
    analyzer = _analyzer(args)
    for predictor in analyzer.predictors:  # the page explains on PyTorch: a model that cannot be built fails now
        predictor.model
    print(f"serving on http://{args.host}:{args.port}/")
    serve(analyzer, args.host, args.port)
    return 0


def _add_model_arguments(parser: ArgumentParser) -> None:
    from facslab.emoji import DEFAULT_TABLE, METRICS
    from facslab.faces.detect import DETECTORS
    from facslab.faces.eyes import EYE_CLOSED_THRESHOLD

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model URI (models:/NAME@ALIAS, runs:/ID/model) or a local model folder, of any task "
                             "(an AU model adds the emoji)")
    for cls in optional_tasks():  # each task that declares one: --emotion_model, --va_model, ...
        parser.add_argument(f"--{cls.app_option}", type=str | None, default=cls.app_option_default,
                            help=cls.app_option_help)
    parser.add_argument("--also", type=list[str] | None, default=None,
                        help="more models of any task (URIs or folders): '[URI, URI]', or --also+ URI once per "
                             "model; each adds its own fields and CSV columns")
    parser.add_argument("--tracking_uri", type=str | None, default=None, help="MLflow store (default: mlruns/)")
    parser.add_argument("--experiment", default="facslab")
    parser.add_argument("--emojis", default=str(DEFAULT_TABLE), help="emoji table CSV")
    parser.add_argument("--metric", choices=list(METRICS), default="kappa")
    parser.add_argument("--eye_threshold", type=float, default=EYE_CLOSED_THRESHOLD)
    parser.add_argument("--detector", choices=list(DETECTORS), default="hog",
                        help="hog, mmod (dlib), haar or haar-profile (OpenCV's cascades)")
    parser.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                        help="auto: ONNX Runtime on a CPU when the model has its ONNX export, else PyTorch")
    parser.add_argument("--threads", type=int | None, default=None,
                        help="threads for torch, OpenCV and ONNX Runtime (default: the libraries' own)")


def _add_tracking_arguments(parser: ArgumentParser) -> None:
    """How a video's faces are found: detections every so many frames, tracked in between."""
    from facslab.tracking import TRACKERS

    parser.add_argument("--tracker", choices=list(TRACKERS), default="auto",
                        help="between detections, follow each face with HOG run again near its last box (nearby, "
                             "about 1 ms a face) or dlib's correlation tracker (about 3 ms); auto: nearby with "
                             "--detector hog, correlation with the others")
    parser.add_argument("--detect_every", type=int, default=10, help="frames between detections (track in between)")
    parser.add_argument("--upsample", type=int, default=0,
                        help="HOG upsampling (0: faces over ~80 px; an upsampled retry runs when none is found)")
    parser.add_argument("--idle_every", type=int, default=5, help="frames between detections while no face is in view")


def _tracking(args):
    from facslab.live import LiveSettings

    return LiveSettings(detect_every=args.detect_every, upsample=args.upsample, idle_every=args.idle_every,
                        tracker=args.tracker)


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'emoji': 'Detect every face, predict its AUs and eyes, and match an emoji.',
    'live': 'Face to emoji in real time on a camera (0) or a video file.',
    'analyze': 'Whole videos (or folders of frames) offline: an OpenFace-style CSV per video, resumable.',
    'serve': 'A local web page: upload an image or stream the webcam, see AUs and the emoji.',
    'eyes': 'Eye aspect ratio and open/closed per face (dlib 68 points).',
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    from facslab.faces.detect import DETECTORS
    from facslab.faces.eyes import EYE_CLOSED_THRESHOLD

    emoji = ArgumentParser(exit_on_error=False, description=COMMANDS["emoji"])
    emoji.add_argument("images", nargs="+")
    _add_model_arguments(emoji)
    emoji.add_argument("--json", action="store_true", help="machine-readable output")
    emoji.add_argument("--annotate", type=str | None, default=None, help="folder for annotated images")
    sub.add_subcommand("emoji", emoji, help=emoji.description)

    live = ArgumentParser(exit_on_error=False, description=COMMANDS["live"])
    live.add_argument("--source", default="0")
    _add_model_arguments(live)
    live.add_argument("--out", type=str | None, default=None, help="annotated video (.mp4)")
    live.add_argument("--csv", type=str | None, default=None, help="per-frame CSV, OpenFace-style columns")
    live.add_argument("--chart", type=str | None, default=None,
                      help="PNG of the largest face's emotion probabilities over time, written at the end with a CSV "
                           "of the same name (the strip chart is drawn into --out whenever an emotion model runs)")
    _add_tracking_arguments(live)
    live.add_argument("--detection", choices=["auto", "inline", "background"], default="auto",
                      help="background: detections in a thread of their own, joining the tracks when they end (no "
                           "frame waits for one; rows then depend on timing); auto: background on a camera, inline "
                           "on a file")
    live.add_argument("--max_frames", type=int | None, default=None)
    live.add_argument("--show", action="store_true", help="show a window (needs a display)")
    live.add_argument("--quiet", action="store_true")
    sub.add_subcommand("live", live, help=live.description)

    analyze = ArgumentParser(exit_on_error=False, description=COMMANDS["analyze"])
    analyze.add_argument("sources", nargs="+", help="video files, or folders of frames (images in name order)")
    _add_model_arguments(analyze)
    analyze.add_argument("--csv", required=True, help="folder for the CSVs (<video name>.csv; finished ones are skipped)")
    _add_tracking_arguments(analyze)
    analyze.add_argument("--batch", type=int, default=32, help="frames whose faces go through the models at once")
    analyze.add_argument("--quiet", action="store_true")
    sub.add_subcommand("analyze", analyze, help=analyze.description)

    web = ArgumentParser(exit_on_error=False, description=COMMANDS["serve"])
    _add_model_arguments(web)
    web.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1: this machine only)")
    web.add_argument("--port", type=int, default=8000)
    sub.add_subcommand("serve", web, help=web.description)

    eyes = ArgumentParser(exit_on_error=False, description=COMMANDS["eyes"])
    eyes.add_argument("images", nargs="+")
    eyes.add_argument("--threshold", type=float, default=EYE_CLOSED_THRESHOLD)
    eyes.add_argument("--detector", choices=list(DETECTORS), default="hog")
    sub.add_subcommand("eyes", eyes, help=eyes.description)
    return {"emoji": (emoji, _emoji), "live": (live, _live), "analyze": (analyze, _analyze), "serve": (web, _serve),
            "eyes": (eyes, _eyes)}
