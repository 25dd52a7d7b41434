"""The ``facslab`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

log = logging.getLogger("facslab")


def _demo(args) -> int:
    from datamodules import CelebANoisyDataModule, CKPlusDataModule
    from facslab.demo import CELEBA_DIR, CKPLUS_DIR, OPENFACE_CSV, DemoSize, generate_demo

    out = Path(args.out)
    for made in generate_demo(out, DemoSize(args.ckplus_subjects, args.sequences, args.celeba_images), args.seed):
        print(f"generated {made['dataset']}: {made['faces']} faces in {made['seconds']:.1f} s "
              f"({made['faces'] / made['seconds']:.0f} faces/s) -> {made['path']}")
    common = dict(image_size=args.image_size, cache_dir=str(args.cache_dir or out / "cache"),
                  preprocess_workers=args.workers, seed=args.seed)
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
    print("Training, sweeps and the model registry arrive with issue #3; this demo stops at the cache.")
    return 0


def _generate(args) -> int:
    from facslab.demo import OPENFACE_CSV, generate_celeba, generate_ckplus

    if args.dataset == "ckplus":
        made = generate_ckplus(Path(args.root), args.subjects, args.sequences, args.seed)
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


def _eyes(args) -> int:
    from facslab.badinput import BadInputError
    from facslab.faces.detect import detect_faces, predict_landmarks
    from facslab.faces.eyes import eye_aspect_ratios
    from facslab.images import load_rgb

    status = 0
    for path in args.images:
        try:
            image = load_rgb(path)
        except BadInputError as error:
            print(error, file=sys.stderr)
            status = 1
            continue
        faces = detect_faces(image, args.detector)
        if not faces:
            print(f"{path}: no face found", file=sys.stderr)
            status = 1
        for k, face in enumerate(faces):
            left, right = eye_aspect_ratios(predict_landmarks(image, face, 68))
            state = lambda ear: "closed" if ear < args.threshold else "open"  # noqa: E731
            print(f"{path} face {k}: left eye EAR {left:.3f} ({state(left)}), "
                  f"right eye EAR {right:.3f} ({state(right)})")
    return status


def build_parser() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    from datamodules.base import AUFaceDataModule
    from facslab.faces.eyes import EYE_CLOSED_THRESHOLD

    parser = ArgumentParser(prog="facslab", description="Facial Action Unit detection, experiment-tracked.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subcommands(dest="command")

    demo = ArgumentParser(description="Generate the demo datasets and build their caches.")
    demo.add_argument("--out", default="data/demo", help="where the demo datasets go")
    demo.add_argument("--cache_dir", type=str | None, default=None, help="crop cache (default: OUT/cache)")
    demo.add_argument("--ckplus_subjects", type=int, default=45)
    demo.add_argument("--sequences", type=int, default=3, help="CK+ sequences per subject")
    demo.add_argument("--celeba_images", type=int, default=3000)
    demo.add_argument("--image_size", type=int, default=112, help="side of the aligned crops")
    demo.add_argument("--workers", type=int | None, default=None, help="preprocessing processes (default: all cores)")
    demo.add_argument("--seed", type=int, default=0)
    sub.add_subcommand("demo", demo)

    gen = ArgumentParser(description="Generate one dataset in its real on-disk layout.")
    gen.add_argument("dataset", choices=["ckplus", "celeba"])
    gen.add_argument("root")
    gen.add_argument("--subjects", type=int, default=20)
    gen.add_argument("--sequences", type=int, default=3)
    gen.add_argument("--images", type=int, default=500)
    gen.add_argument("--seed", type=int, default=0)
    sub.add_subcommand("generate", gen)

    pre = ArgumentParser(description="Read a dataset and build its aligned-crop cache.")
    pre.add_argument("--config", action=ActionConfigFile)
    pre.add_subclass_arguments(AUFaceDataModule, "data", help="a datamodule: class_path and init_args, or a YAML file")
    pre.add_argument("--report", type=str | None, default=None, help="CSV of skipped files")
    pre.add_argument("--split", type=str | None, default=None, help="CSV of the split")
    sub.add_subcommand("preprocess", pre)

    eyes = ArgumentParser(description="Eye aspect ratio and open/closed per face (dlib 68 points).")
    eyes.add_argument("images", nargs="+")
    eyes.add_argument("--threshold", type=float, default=EYE_CLOSED_THRESHOLD)
    eyes.add_argument("--detector", choices=["hog", "mmod"], default="hog")
    sub.add_subcommand("eyes", eyes)
    return parser, {"demo": demo, "generate": gen, "preprocess": pre, "eyes": eyes}


def main(argv: list[str] | None = None) -> int:
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    command = args.command
    sub_args = args[command]
    if command == "preprocess":
        return _preprocess(sub_args, subparsers[command])
    return {"demo": _demo, "generate": _generate, "eyes": _eyes}[command](sub_args)


if __name__ == "__main__":
    sys.exit(main())
