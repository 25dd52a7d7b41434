"""Real-time face → emoji on a camera or a video: detect, then track between detections.

Detection (dlib HOG) is the expensive step, so it runs every ``detect_every`` frames or when a
tracker loses its face; in between, the faces are followed (``facslab.tracking``). Each frame's
faces go through alignment, every model, the eye aspect ratio and the emoji match; the annotated
video and a per-frame CSV (OpenFace-style columns) are written on request.

``LiveSettings`` holds the levers that make this real time on two cores (``FAST``, the default):
detection, tracking and landmarks on one grey copy of the frame (the only colour conversion;
alignment and drawing use the decoded BGR frame), HOG without upsampling (faces of a webcam are
large) with an upsampled retry when it finds nothing, and a detection rate limit while no face is
in view. ``LEGACY`` is the path before them, kept so that ``bench/live.py`` measures both. The web
page's WebSocket mode runs the same ``LivePipeline``.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facslab.analysis import FaceAnalyzer, FaceResult
from facslab.draw import annotate
from facslab.errors import ConfigError
from facslab.faces.detect import Detection, detect_faces
from facslab.tracking import TRACKERS, BackgroundFaceTracker, FaceTracker
from facslab.video_io import VideoDecoder, VideoEncoder, decoded_frames, open_source

log = logging.getLogger(__name__)

#: the frame's own columns, before each face's (``FaceAnalyzer.column_names``), as OpenFace writes them
FRAME_COLUMNS = ("frame", "face_id", "timestamp", "confidence", "success")


@dataclass(frozen=True)
class LiveSettings:
    """How a video is processed. ``upsample``: HOG pyramid upsampling (0 finds faces larger than
    about 80 px); ``retry_upsample``: a second, upsampled detection when the first finds nothing
    (None: no retry); ``idle_every``: while no face is in view, detect only every this many
    frames; ``grey``: detect, track and find landmarks on a grey copy of the frame; ``tracker``:
    how a face is followed between detections (``TRACKERS``); ``detect_in_background``: detections
    in a thread of their own (``BackgroundFaceTracker``); ``codec_threads``: a video file decoded
    ahead (``VideoDecoder``; a camera's frames stay read when wanted, for the newest) and the
    annotated video encoded (``VideoEncoder``) in threads of their own."""

    detect_every: int = 10
    upsample: int = 0
    retry_upsample: int | None = 1
    idle_every: int = 5
    grey: bool = True
    tracker: str = "auto"
    detect_in_background: bool = False
    codec_threads: bool = True


FAST = LiveSettings()
#: the path before the levers above: RGB frames, HOG upsampled once, detection on every frame
#: while no face is in view, the correlation tracker (``bench/live.py`` measures it beside ``FAST``)
LEGACY = LiveSettings(upsample=1, retry_upsample=None, idle_every=1, grey=False, tracker="correlation",
                      codec_threads=False)


class LivePipeline:
    """One video stream's state: tracker and settings; ``process`` turns a frame into tracked
    faces with their results. ``facslab live`` and the web page's WebSocket mode both use it."""

    def __init__(self, analyzer: FaceAnalyzer, settings: LiveSettings = FAST):
        self.analyzer, self.settings = analyzer, settings
        self.windows: dict = {}  # this stream's faces' last crops, for models that take a window of frames
        if settings.tracker not in TRACKERS:
            raise ConfigError(f"tracker must be one of {', '.join(TRACKERS)}, not {settings.tracker!r}")
        follow = settings.tracker
        if follow == "auto":
            follow = "nearby" if analyzer.detector == "hog" else "correlation"
        if follow == "nearby" and analyzer.detector != "hog":
            # its score decides whether a face is still there: another detector's faces (a profile,
            # a face MMOD finds and HOG does not) would be lost on every frame
            raise ConfigError(f"--tracker nearby follows faces with HOG: it takes --detector hog, not "
                              f"{analyzer.detector} (use --tracker correlation)")
        tracker = BackgroundFaceTracker if settings.detect_in_background else FaceTracker
        self.tracker = tracker(self._detect, detect_every=settings.detect_every, idle_every=settings.idle_every,
                               follow=follow)

    def _detect(self, image: np.ndarray) -> list[Detection]:
        analyzer, settings = self.analyzer, self.settings
        found = detect_faces(image, analyzer.detector, settings.upsample, analyzer.min_confidence)
        if not found and settings.retry_upsample is not None and settings.retry_upsample != settings.upsample:
            found = detect_faces(image, analyzer.detector, settings.retry_upsample, analyzer.min_confidence)
        return found

    def process(self, frame: np.ndarray, index: int, channels: str = "BGR",
                timings: dict | None = None) -> tuple[list[tuple[int, Detection]], list[FaceResult]]:
        """Tracked faces and their results for one frame (uint8, ``channels`` BGR or RGB)."""
        timings = timings if timings is not None else defaultdict(float)
        tracked, faces = self.faces(frame, index, channels, timings)
        if not tracked:
            return [], []
        return tracked, self.analyzer.answer([faces], timings=timings, windows=self.windows)[0]

    def faces(self, frame: np.ndarray, index: int, channels: str, timings: dict):
        """The frame's tracked faces (face id, box) and their ``FrameFaces`` (None without a face):
        the half of ``process`` before the models."""
        tracked, colour, view, channels = self.track(frame, index, channels, timings)
        if not tracked:
            return [], None
        face_ids = [face_id for face_id, _ in tracked]
        return tracked, self.analyzer.faces(colour, [d for _, d in tracked], timings, view, channels, face_ids)

    def track(self, frame: np.ndarray, index: int, channels: str, timings: dict):
        """The frame's tracked faces (face id, box), with the colour image the models' crops are cut
        from, the view landmarks are found on, and the colour image's channel order."""
        t0 = time.perf_counter()
        if self.settings.grey:
            view = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if channels == "BGR" else cv2.COLOR_RGB2GRAY)
            colour = frame
        else:
            colour = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if channels == "BGR" else frame
            view, channels = colour, "RGB"
        timings["decode"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        before = self.tracker.detections_run
        tracked = self.tracker.update(view, index)
        timings["detection" if self.tracker.detections_run > before else "tracking"] += time.perf_counter() - t0
        return tracked, colour, view, channels


def csv_columns(analyzer: FaceAnalyzer) -> tuple[str, ...]:
    """The frame's columns, then the eyes, the emoji and each model's own (OpenFace's ``AUxx_c``
    presence and ``AUxx_r`` intensity names where a model gives them)."""
    return FRAME_COLUMNS + analyzer.column_names()


def csv_row(frame_number: int, timestamp: float, face_id: int, result: FaceResult) -> list:
    return [frame_number, face_id, round(timestamp, 3), round(float(result.confidence), 3), 1] + result.row()


def frame_rows(index: int, timestamp: float, tracked: list[tuple[int, Detection]], results: list[FaceResult],
               analyzer: FaceAnalyzer) -> list[list]:
    """A frame's CSV rows (``index`` 0-based): one per face, or the no-face row."""
    if not results:
        return [no_face_row(index + 1, timestamp, analyzer)]
    return [csv_row(index + 1, timestamp, face_id, result) for (face_id, _), result in zip(tracked, results)]


def no_face_row(frame_number: int, timestamp: float, analyzer: FaceAnalyzer) -> list:
    """The row of a frame without a face: ``success`` 0 and no values, as OpenFace writes it, so
    that the CSV has a row for every decoded frame of the video."""
    return [frame_number, "", round(timestamp, 3), 0.0, 0] + [""] * len(analyzer.column_names())


@dataclass
class LiveStats:
    frames: int = 0
    faces: int = 0
    detections: int = 0
    seconds: float = 0.0
    #: 1-based numbers of the frames that did not decode (skipped; the frames around them are kept)
    corrupt_frames: list[int] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=lambda: defaultdict(float))

    def count_skipped(self, index: int) -> int:
        """Records the frames before 0-based position ``index`` that did not decode (since the last
        decoded one); returns how many."""
        first = self.frames + len(self.corrupt_frames)  # the position expected next
        self.corrupt_frames += range(first + 1, index + 1)  # 1-based, as the CSV numbers frames
        return index - first

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def breakdown(self) -> str:
        total = sum(self.stage_seconds.values()) or 1.0
        parts = ", ".join(f"{k} {1000 * v / max(self.frames, 1):.1f} ms ({100 * v / total:.0f}%)"
                          for k, v in sorted(self.stage_seconds.items(), key=lambda kv: -kv[1]))
        return f"per frame: {parts}"


def run_live(analyzer: FaceAnalyzer, source: str | Path | cv2.VideoCapture, out: str | None = None, csv_path: str | None = None,
             max_frames: int | None = None, show: bool = False, draw: bool = True, progress: bool = True,
             settings: LiveSettings = FAST, chart: str | None = None) -> LiveStats:
    """Process a camera or video until it ends (or ``max_frames``); returns timing statistics.
    With a model that declares outputs over time (an emotion model), the largest face's are drawn
    as a strip chart into the video, and ``chart`` (a PNG path) saves the whole series at the end,
    with a CSV of the same name, whatever stopped the loop."""
    from tqdm import tqdm

    from facslab.timeline import Timeline, charted

    predictor = charted(analyzer)
    if chart and predictor is None:
        raise ConfigError(f"--chart {chart}: none of the models gives outputs to follow over time (an emotion or "
                          f"a valence/arousal model does); the models given: "
                          f"{', '.join(p.task for p in analyzer.predictors)}")
    if chart:
        _check_chart_path(Path(chart), csv_path)
    capture = open_source(str(source)) if isinstance(source, (str, Path)) else source  # or anything that reads frames
    fps_in = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) or None  # a camera's count is -1 or 0
    stats = LiveStats()
    stages = stats.stage_seconds
    pipeline = LivePipeline(analyzer, settings)
    timeline = None
    if predictor is not None and (chart or (draw and (out or show))):
        timeline = Timeline(predictor, fps_in)
        if not chart:  # only drawn: the strip chart's frames are all it needs (a camera runs for days)
            timeline.keep = timeline.shown
    writer, table, handle = None, None, None
    if csv_path:
        handle = open(csv_path, "w", newline="", encoding="utf-8")
        table = csv.writer(handle)
        table.writerow(csv_columns(analyzer))
    bar = tqdm(total=max_frames or total, desc="live", unit="frame", disable=not progress)
    # a file's frames are decoded a few ahead; a camera's are read when wanted (the newest)
    decoder = VideoDecoder(capture, ahead=4) if settings.codec_threads and total else None
    start = time.perf_counter()
    if decoder is not None:
        decoder.start()
    try:
        for index, bgr in decoded_frames(capture, stages) if decoder is None else decoder:
            if max_frames is not None and stats.frames >= max_frames:
                break
            skipped = stats.count_skipped(index)
            bar.update(skipped)
            if settings.grey:  # the grey copy is made in process(); alignment and drawing use BGR
                frame, channels = bgr, "BGR"
            else:
                t0 = time.perf_counter()
                frame, channels = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "RGB"
                stages["decode"] += time.perf_counter() - t0
            tracked, results = pipeline.process(frame, index, channels, stages)
            stats.frames += 1
            stats.faces += len(results)
            timestamp = index / fps_in
            if table is not None:
                table.writerows(frame_rows(index, timestamp, tracked, results, analyzer))
            if timeline is not None:
                timeline.add(index + 1, timestamp, [face_id for face_id, _ in tracked], results)
            if writer is None and out:
                writer = VideoEncoder(out, fps_in, (bgr.shape[1], bgr.shape[0]), settings.codec_threads)
            if draw and (writer is not None or show):
                t0 = time.perf_counter()
                fps = stats.frames / (time.perf_counter() - start)
                if channels == "BGR":  # drawn on the decoded frame: no conversion back and forth
                    shown = annotate(frame, results, fps=fps, bgr=True)
                else:
                    shown = cv2.cvtColor(annotate(frame, results, fps=fps), cv2.COLOR_RGB2BGR)
                if timeline is not None:
                    timeline.draw(shown, bgr=True)
                stages["drawing"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                if writer is not None:
                    writer.write(shown)
                stages["encoding"] += time.perf_counter() - t0  # the wait for the encoder's queue
                if show:
                    cv2.imshow("facslab live", shown)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
            bar.update()
    finally:
        bar.close()
        stats.seconds = time.perf_counter() - start
        stats.detections = pipeline.tracker.detections_run
        pipeline.tracker.close()
        if decoder is not None:
            decoder.stop()
            stages["decode"] += decoder.waited  # the loop's own wait (the decoding runs beside it)
        capture.release()
        try:
            if writer is not None:  # its error, unless the loop's own is on its way out
                writer.close(raise_error=sys.exc_info()[1] is None)
        finally:
            if handle is not None:
                handle.close()
            if chart and timeline is not None:
                _save_chart(timeline, chart)
    return stats


def _check_chart_path(chart: Path, csv_path: str | None) -> None:
    """What would make saving the chart fail or overwrite something, said before the first frame."""
    from facslab.badinput import BadInputError

    if chart.suffix.lower() != ".png":
        raise BadInputError(str(chart), "the chart is written as a PNG: give a name ending in .png")
    if chart.is_dir() or not chart.parent.is_dir():
        raise BadInputError(str(chart), "is a folder" if chart.is_dir() else "its folder does not exist")
    table = chart.with_suffix(".csv")
    if csv_path and table.resolve() == Path(csv_path).resolve():
        raise BadInputError(str(chart), f"its table would be {table}, the --csv file: give the chart another name")


def _save_chart(timeline, chart: str) -> None:
    """Save the chart; when the loop is already failing, a failure here is logged and the loop's
    own error goes on (a ``finally`` that raised would replace it)."""
    if sys.exc_info()[1] is None:
        timeline.save(chart)
        return
    try:
        timeline.save(chart)
    except Exception as error:  # noqa: BLE001 (the loop's error is the one to report)
        log.error("%s: the chart was not saved (%s)", chart, error)
