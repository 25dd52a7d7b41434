"""Commands of the data: generating a dataset in its real layout, and reading one into its crop cache."""

from __future__ import annotations

import json
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from facslab.badinput import BadInputError


def _generate(args, parser=None) -> int:
    from facslab.demo_data import OPENFACE_CSV, generate_celeba, generate_ckplus

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
    if args.dataset == "affwild2":
        from facslab.synth.affwild2 import write_affwild2

        write_affwild2(Path(args.root), n_train=max(2, args.subjects), seed=args.seed)
        print(f"Aff-Wild2 (VA Estimation Challenge annotations, cropped_aligned frames): {args.root}")
        return 0
    if args.dataset == "emotionet":
        from facslab.synth.emotionet import write_emotionet

        truth = write_emotionet(Path(args.root), args.images, args.seed)
        print(f"EmotioNet (as downloaded: sheet, images/, mapping.csv; {int((~truth['fetched']).sum())} image(s) "
              f"'not fetched', in errors.csv): {args.root}")
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


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'generate': 'Generate one dataset in its real on-disk layout.',
    'preprocess': 'Read a dataset and build its aligned-crop cache.',
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    from datamodules.base import FaceDataModule

    gen = ArgumentParser(exit_on_error=False, description=COMMANDS["generate"])
    gen.add_argument("dataset", choices=["ckplus", "celeba", "fer2013", "affectnet", "rafdb", "bp4d", "bp4d+", "disfa",
                                        "emotionet", "affwild2"])
    gen.add_argument("root")
    gen.add_argument("--subjects", type=int, default=20)
    gen.add_argument("--sequences", type=int, default=3, help="CK+ sequences per subject")
    gen.add_argument("--images", type=int, default=500)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--variant", choices=["fer2013", "icml"], default="fer2013", help="FER-2013's CSV layout")
    gen.add_argument("--release", choices=["csv", "2021"], default="csv", help="AffectNet's release layout")
    sub.add_subcommand("generate", gen, help=gen.description)

    pre = ArgumentParser(exit_on_error=False, description=COMMANDS["preprocess"])
    pre.add_argument("--config", action=ActionConfigFile)
    pre.add_subclass_arguments(FaceDataModule, "data", help="a datamodule: class_path and init_args, or a YAML file")
    pre.add_argument("--report", type=str | None, default=None, help="CSV of skipped files")
    pre.add_argument("--split", type=str | None, default=None, help="CSV of the split")
    sub.add_subcommand("preprocess", pre, help=pre.description)

    return {"generate": (gen, _generate), "preprocess": (pre, _preprocess)}
