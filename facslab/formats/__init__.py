"""Dataset readers: each dataset's real on-disk layout, read and checked (they never write; the
generators of fake data in the same layouts are ``facslab.synth``). A generated copy carries a
marker file, so every model trained on it can say so (registered-model tags, a note in the apps)."""

from __future__ import annotations

from pathlib import Path

GENERATED_MARKER = "GENERATED_BY_FACSLAB.txt"


def is_generated(root: str | Path) -> bool:
    return (Path(root) / GENERATED_MARKER).exists()
