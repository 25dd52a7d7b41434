"""Generators of fake data in every dataset's real layout (``facslab.formats`` reads them): the
face renderer, posed and spontaneous expressions, and one writer per dataset."""

from __future__ import annotations

from pathlib import Path

from facslab.formats import GENERATED_MARKER


def mark_generated(root: str | Path, dataset: str, seed: int) -> None:
    path = Path(root) / GENERATED_MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{dataset} in its release layout, drawn by facslab's face renderer (seed {seed}).\n"
                    "No real faces: models trained on it learn the renderer, not people.\n")
