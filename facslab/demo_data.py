"""The built-in demo data: generated CK+ and CelebA(+OpenFace) datasets in their real layouts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from facslab.synth.celeba import write_celeba
from facslab.synth.ckplus import write_ckplus
from facslab.synth.openface import write_openface

log = logging.getLogger(__name__)

CKPLUS_DIR = "CK+"
CELEBA_DIR = "CelebA"
OPENFACE_CSV = "openface/img_align_celeba.csv"  # relative to the CelebA folder


@dataclass(frozen=True)
class DemoSize:
    """The real CK+ release's size (123 subjects, 593 sequences), short sequences (only the first
    and the peak frame are trained on), and enough CelebA faces for pretraining to help."""

    ckplus_subjects: int = 123
    ckplus_sequences: int = 593
    celeba_images: int = 8000
    frames: tuple[int, int] = (3, 5)


def generate_ckplus(root: Path, subjects: int, sequences: int, seed: int, progress: bool = True,
                    frames: tuple[int, int] = (5, 8)) -> dict:
    """``sequences``: the total over all subjects."""
    start = time.perf_counter()
    truth = write_ckplus(root, n_subjects=subjects, n_sequences=sequences, frames=frames, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    return dict(dataset="CK+", path=str(root), subjects=truth["subject"].nunique(), sequences=len(truth),
                faces=int(truth["n_frames"].sum()), seconds=seconds)


def generate_celeba(root: Path, images: int, seed: int, progress: bool = True) -> dict:
    start = time.perf_counter()
    truth = write_celeba(root, n_images=images, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    write_openface(truth, root / OPENFACE_CSV, seed=seed)
    return dict(dataset="CelebA", path=str(root), faces=len(truth), seconds=seconds)


def generate_demo(out: str | Path, size: DemoSize = DemoSize(), seed: int = 0, progress: bool = True) -> list[dict]:
    """Generate the demo datasets under ``out`` unless they are already there."""
    out = Path(out)
    done = []
    ck, celeba = out / CKPLUS_DIR, out / CELEBA_DIR
    if not (ck / ".complete").exists():
        done.append(generate_ckplus(ck, size.ckplus_subjects, size.ckplus_sequences, seed, progress, size.frames))
        (ck / ".complete").touch()
    if not (celeba / ".complete").exists():
        done.append(generate_celeba(celeba, size.celeba_images, seed, progress))
        (celeba / ".complete").touch()
    return done


def describe(made: dict) -> str:
    """One line about a generated dataset, for the console."""
    return (f"generated {made['dataset']}: {made['faces']} faces in {made['seconds']:.1f} s "
            f"({made['faces'] / made['seconds']:.0f} faces/s) -> {made['path']}")
