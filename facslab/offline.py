"""Whole videos (and folders of frames) analysed offline: one OpenFace-style CSV per video, the rows
``facslab live`` writes (a face per row with its tracker id; a frame without a face still gets its
row, ``success`` 0, so the rows line up with the video's frames).

A CSV is written under a temporary name and renamed when its video is done, so a rerun skips the
videos already finished and starts again the one that was interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facslab.analysis import FaceAnalyzer
from facslab.badinput import BadInputError
from facslab.images import load_rgb
from facslab.live import FAST, LiveSettings, LiveStats, open_source, run_live

#: the frame rate of a folder of frames (its timestamps): none is stored with the images
FOLDER_FPS = 30.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class FolderFrames:
    """A folder of images, in name order, read as a video (what ``run_live`` asks of a capture)."""

    def __init__(self, folder: Path):
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise BadInputError(folder, f"no images in the folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.position = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.position >= len(self.paths):
            return False, None
        path = self.paths[self.position]
        self.position += 1
        try:
            return True, cv2.cvtColor(load_rgb(path), cv2.COLOR_RGB2BGR)
        except BadInputError:  # as a frame of a video that does not decode: skipped, counted, named after
            return False, None

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: FOLDER_FPS, cv2.CAP_PROP_FRAME_COUNT: float(len(self.paths))}.get(prop, 0.0)

    def release(self) -> None:
        self.position = len(self.paths)


@dataclass
class Outcome:
    source: str
    csv: Path
    stats: LiveStats | None = None  # None: skipped, finished by an earlier run
    error: BadInputError | None = None


def csv_path_of(source: str, out: Path) -> Path:
    return out / f"{Path(source).stem}.csv"


def analyze_sources(analyzer: FaceAnalyzer, sources: list[str], out: Path, settings: LiveSettings = FAST,
                    progress: bool = True):
    """Yield an ``Outcome`` per video or folder, as each ends: its CSV written, skipped (already
    done), or the one problem that stopped it (the others still run)."""
    out.mkdir(parents=True, exist_ok=True)
    stems = [Path(s).stem for s in sources]
    clashing = sorted({s for s in stems if stems.count(s) > 1})
    if clashing:
        raise BadInputError(sources[stems.index(clashing[0])], f"two sources would write {clashing[0]}.csv: "
                                                               "give each video a name of its own")
    for source in sources:
        target = csv_path_of(source, out)
        if target.exists():
            yield Outcome(source, target)
            continue
        partial = target.with_suffix(".csv.partial")
        try:
            capture = FolderFrames(Path(source)) if Path(source).is_dir() else open_source(source)
            stats = run_live(analyzer, capture, csv_path=str(partial), draw=False, progress=progress,
                             settings=settings)
        except BadInputError as error:
            partial.unlink(missing_ok=True)
            yield Outcome(source, target, error=error)
            continue
        partial.replace(target)
        yield Outcome(source, target, stats)
