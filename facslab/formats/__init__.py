"""Dataset formats. Generated copies carry a marker file, so every model trained on them can
say so (registered-model tags, and a note in the apps)."""

from __future__ import annotations

from pathlib import Path

GENERATED_MARKER = "GENERATED_BY_FACSLAB.txt"


def mark_generated(root: str | Path, dataset: str, seed: int) -> None:
    path = Path(root) / GENERATED_MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{dataset} in its release layout, drawn by facslab's face renderer (seed {seed}).\n"
                    "No real faces: models trained on it learn the renderer, not people.\n")


def is_generated(root: str | Path) -> bool:
    return (Path(root) / GENERATED_MARKER).exists()
