"""``facslab explain``: where a model looks, as an overlay per face (docs/explain.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentParser


def _explain(args, parser=None) -> int:
    import numpy as np
    from PIL import Image

    from facslab.analysis import FaceAnalyzer
    from facslab.badinput import BadInputError
    from facslab.cli.apps import _images_with_faces, _status
    from facslab.explain import explain, method_of, output_names, overlay, target_index
    from facslab.faces.detect import check_detector
    from facslab.model_uri import load_predictor

    check_detector(args.detector)
    stems = [Path(image).stem for image in args.images]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:  # their overlays would be written over each other
        raise BadInputError(args.images[stems.index(twice[0])], f"two images named {twice[0]}: their overlays would "
                                                                "have the same names; explain them in separate runs")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInputError(out, f"cannot be the output folder ({error.strerror or error})") from None
    predictor = load_predictor(args.model, "torch")  # gradients and attention weights need PyTorch
    method = method_of(predictor)
    if args.target is not None and method == "attention rollout":
        print(f"facslab explain: --target {args.target} is not used: attention rollout is the same for every output",
              file=sys.stderr)
    elif args.target is not None:  # a misspelt output is refused before any image is read
        target_index(predictor, np.zeros(len(output_names(predictor))), args.target)
    analyzer = FaceAnalyzer([predictor], detector=args.detector)
    failures = []
    for path, image, results in _images_with_faces(args.images, lambda im: analyzer.analyze(im, keep_crops=True),
                                                   failures, "explain"):
        crops = np.stack([r.crop for r in results])
        explanation = explain(predictor, crops, args.target)
        for k, (crop, saliency, name) in enumerate(zip(crops, explanation.maps, explanation.targets)):
            stem = out / f"{Path(path).stem}_face{k}_{name.replace('/', '_')}"
            Image.fromarray(overlay(crop, saliency)).save(stem.with_suffix(".png"))
            np.save(stem.with_suffix(".npy"), saliency.astype(np.float32))
            written = [stem.with_suffix(".png").name]
            if explanation.heads is not None:
                heads = np.concatenate([overlay(crop, h) for h in explanation.heads[k]], axis=1)
                Image.fromarray(heads).save(f"{stem}_heads.png")
                written.append(f"{stem.name}_heads.png")
            what = method if name == "attention" else f"{method} of {name}"
            if explanation.lowered and explanation.lowered[k]:
                what += " (negative: what lowers it)"
            if explanation.evidence and not explanation.evidence[k]:
                what += " (no positive evidence: the map is flat)"
            if explanation.parts is not None:  # the landmark-patch transformer: its share per face part
                shares = sorted(zip(explanation.part_attention[k], explanation.parts), reverse=True)[:3]
                what += " on " + ", ".join(f"{part} {share:.2f}" for share, part in shares)
            print(f"{path} face {k}: {what} ({results[k].summaries()[0][1]}): {', '.join(written)}")
    if not failures:
        print(f"overlays and maps (.npy, summing to 1) in {out}")
    return _status(failures)


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'explain': 'Saliency overlays per face: Grad-CAM for convolutional models, attention rollout for transformers.',
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    from facslab.faces.detect import DETECTORS

    parser = ArgumentParser(exit_on_error=False, description=COMMANDS["explain"])
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", required=True,
                        help="model URI (models:/NAME@ALIAS, runs:/ID/model) or a local model folder")
    parser.add_argument("--out", required=True, help="folder for the overlays (PNG) and the maps (.npy)")
    parser.add_argument("--target", type=str | None, default=None,
                        help="the output to explain (an AU such as AU12, an emotion, valence); default: each "
                             "face's strongest output")
    parser.add_argument("--detector", choices=list(DETECTORS), default="hog")
    sub.add_subcommand("explain", parser, help=parser.description)
    return {"explain": (parser, _explain)}
