"""Benchmark: face generation, alignment with 1 and 2 worker processes, cached reload vs decode+align,
and the training crops' channel statistics as one float64 array (before) and in float32 chunks (now):
time and peak memory side by side.

Run with `make bench` (or `.venv/bin/python bench/preprocessing.py --help`). Prints a table and
writes it as JSON next to the generated data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from facslab.faces.align import AlignmentSpec
from facslab.faces.cache import FaceSource, build_cache, crop_source, DetectionSettings
from facslab.formats.ckplus import FRAME_SHAPE, read_ckplus, read_landmarks
from facslab.synth.ckplus import write_ckplus
from facslab.formats.celeba import IMAGE_SHAPE
from facslab.synth.expressions import sample_posed_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face


def render_rate(shape, interocular, n) -> float:
    rng = np.random.default_rng(0)
    people = [Identity.sample(rng) for _ in range(10)]
    start = time.perf_counter()
    for k in range(n):
        render_face(people[k % 10], sample_posed_expression(rng).expression,
                    Pose((shape[1] / 2, shape[0] * 0.45), interocular, rng.uniform(-10, 10)), shape,
                    Conditions.sample(rng), rng)
    return n / (time.perf_counter() - start)


def _float64_channel_stats(crops, positions):
    """The statistics as computed before: every crop at once, in float64."""
    pixels = np.asarray(crops[positions], dtype=np.float64) / 255.0
    return pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)) + 1e-6


def channel_stats_side_by_side(crops) -> dict:
    import tracemalloc

    from datamodules.base import channel_stats

    positions = np.arange(len(crops))
    out = {}
    for name, function in (("float64_whole", _float64_channel_stats),
                           ("float32_chunks", lambda c, p: channel_stats(c, p, seed=0))):
        tracemalloc.start()
        start = time.perf_counter()
        function(crops, positions)
        out[f"channel_stats_{name}_s"] = time.perf_counter() - start
        out[f"channel_stats_{name}_peak_MB"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--size", type=int, default=224, help="aligned crop side")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="facslab-bench-"))
    results = {}
    results["generate_ckplus_640x490_faces_per_s"] = render_rate(FRAME_SHAPE, 90, 300)
    results["generate_celeba_178x218_faces_per_s"] = render_rate(IMAGE_SHAPE, 38, 1000)

    root = work / "ck"
    start = time.perf_counter()
    truth = write_ckplus(root, n_subjects=args.subjects, sequences_per_subject=3, frames=(6, 8), progress=False)
    frames = int(truth["n_frames"].sum())
    results["generate_and_write_ckplus_frames_per_s"] = frames / (time.perf_counter() - start)

    table = read_ckplus(root)
    frames_dir, lm_dir = root / "cohn-kanade-images", root / "Landmarks"
    sources = [FaceSource(str(p), landmarks_file=str(lm_dir / p.parent.relative_to(frames_dir) / f"{p.stem}_landmarks.txt"), read_landmarks=read_landmarks)
               for p in sorted(frames_dir.rglob("*.png"))]
    spec = AlignmentSpec(args.size)
    for workers in (1, 2):
        start = time.perf_counter()
        build_cache(sources, spec, cache_dir=work / f"cache{workers}", workers=workers, progress=False)
        results[f"align_{workers}_worker_faces_per_s"] = len(sources) / (time.perf_counter() - start)

    cached = build_cache(sources, spec, cache_dir=work / "cache2", progress=False)
    start = time.perf_counter()
    for i in range(len(sources)):
        np.asarray(cached.crops[i]).sum()
    reload = time.perf_counter() - start
    start = time.perf_counter()
    for source in sources:
        crop_source(source, spec, DetectionSettings()).sum()
    decode = time.perf_counter() - start
    results["epoch_cached_reload_s"] = reload
    results["epoch_decode_align_s"] = decode
    results["decode_align_over_cached_ratio"] = decode / reload
    results["faces"] = len(sources)
    results["sequences"] = len(table)
    results.update(channel_stats_side_by_side(cached.crops))

    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:,.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    (work / "bench_preprocessing.json").write_text(json.dumps(results, indent=2))
    print(f"written to {work / 'bench_preprocessing.json'}")


if __name__ == "__main__":
    main()
