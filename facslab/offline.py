"""Whole videos (and folders of frames) analysed offline: one OpenFace-style CSV per video, the rows
``facslab live`` writes (a face per row with its tracker id; a frame without a face still gets its
row, ``success`` 0, so the rows line up with the video's frames).

Three threads share the work, as the live loop cannot: one decodes ahead, one tracks the faces and
cuts their crops frame by frame, and one runs every model on a batch of many frames' faces at once
(ONNX Runtime and PyTorch release the GIL while they compute; on a GPU the batch runs there).

A CSV is written under a temporary name and renamed when its video is done, so a rerun skips the
videos already finished and starts again the one that was interrupted.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facslab.analysis import FaceAnalyzer
from facslab.badinput import BadInputError
from facslab.errors import ConfigError
from facslab.images import load_rgb
from facslab.live import FAST, LivePipeline, LiveSettings, LiveStats, csv_columns, frame_rows
from facslab.video_io import VideoDecoder, open_source

#: the frame rate of a folder of frames (its timestamps): none is stored with the images
FOLDER_FPS = 30.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: frames whose faces go through the models in one call
BATCH_FRAMES = 32
#: frames decoded ahead of the tracking (bounded: a 4K video's frames are 25 MB each)
DECODE_AHEAD = 16


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


def analyze_video(analyzer: FaceAnalyzer, capture, csv_path: str | Path, settings: LiveSettings = FAST,
                  batch_frames: int = BATCH_FRAMES, progress: bool = True) -> LiveStats:
    """One video (or anything ``decoded_frames`` reads) to its CSV, the rows ``run_live`` writes for
    it: decoded ahead, tracked frame by frame, the models run on ``batch_frames`` frames' faces at
    once, beside the tracking of the next batch."""
    from tqdm import tqdm

    if settings.detect_in_background:  # rows that depend on the threads' pace: not in a CSV to keep
        capture.release()
        raise ConfigError("analyze detects inline: its rows must come out the same on every run")
    try:
        pipeline = LivePipeline(analyzer, settings)
        handle = open(csv_path, "w", newline="", encoding="utf-8")
    except BaseException:
        capture.release()
        raise
    fps_in = capture.get(cv2.CAP_PROP_FPS) or 30.0
    stats = LiveStats()
    stages, model_stages = stats.stage_seconds, defaultdict(float)  # one dict per thread
    decoder, models = VideoDecoder(capture, DECODE_AHEAD), ThreadPoolExecutor(1, thread_name_prefix="facslab-models")
    pending = deque()  # (the models' future, the batch's frames), oldest first
    bar = tqdm(total=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None, desc="analyze", unit="frame",
               disable=not progress)
    start = time.perf_counter()
    with handle:
        table = csv.writer(handle)
        table.writerow(csv_columns(analyzer))

        def write_oldest() -> None:
            future, frames = pending.popleft()
            answers = iter(future.result() if future else [])  # None: a batch without a face
            for index, tracked in frames:
                results = next(answers) if tracked else []
                table.writerows(frame_rows(index, index / fps_in, tracked, results, analyzer))
                stats.faces += len(results)

        def submit(frames: list, faces: list) -> None:
            pending.append((models.submit(analyzer.answer, faces, False, model_stages, pipeline.windows) if faces
                            else None, frames))
            while len(pending) > 1:  # one batch in the models while the next is tracked
                write_oldest()

        decoder.start()
        try:
            frames, faces = [], []
            for index, bgr in decoder:
                bar.update(stats.count_skipped(index) + 1)
                tracked, found = pipeline.faces(bgr, index, "BGR", stages)
                if tracked:
                    faces.append(found)
                frames.append((index, tracked))
                stats.frames += 1
                if len(frames) >= batch_frames:
                    submit(frames, faces)
                    frames, faces = [], []
            submit(frames, faces)
            while pending:
                write_oldest()
        finally:
            decoder.stop()
            models.shutdown(wait=True, cancel_futures=True)
            bar.close()
            capture.release()
            stats.seconds = time.perf_counter() - start
            stats.detections = pipeline.tracker.detections_run
            for timings in (decoder.timings, model_stages):
                for stage, seconds in timings.items():
                    stages[stage] += seconds
    return stats


def analyze_sources(analyzer: FaceAnalyzer, sources: list[str], out: Path, settings: LiveSettings = FAST,
                    progress: bool = True, batch_frames: int = BATCH_FRAMES):
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
            stats = analyze_video(analyzer, capture, partial, settings, batch_frames, progress)
        except BadInputError as error:
            partial.unlink(missing_ok=True)
            yield Outcome(source, target, error=error)
            continue
        partial.replace(target)
        yield Outcome(source, target, stats)
