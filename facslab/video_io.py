"""Video in and out for the apps: a camera or a file opened with one clear line when it cannot be,
its frames decoded (a frame that does not decode skipped and counted, not the end), read ahead in
a thread of their own (``VideoDecoder``), and an annotated video written in another
(``VideoEncoder``): OpenCV releases the GIL while it decodes and encodes."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np


def open_source(source: str) -> cv2.VideoCapture:
    """A camera (a number) or a video file, or a ``BadInputError`` saying which and why."""
    from facslab.badinput import BadInputError

    camera = source.isdigit()
    if not camera and not Path(source).is_file():
        raise BadInputError(source, "no such video file")
    # OpenCV warns on stderr for every backend it tries; the error below says it once
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        capture = cv2.VideoCapture(int(source) if camera else source)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        raise BadInputError(f"camera {source}" if camera else source,
                            "no camera with this index (or it is in use)" if camera
                            else "not a video OpenCV can decode (unknown or corrupt format)")
    return capture


#: reads that fail in a row before a video counts as ended: a frame that does not decode is
#: skipped, and only a run this long is the end of the stream
END_AFTER_FAILED_READS = 25


def decoded_frames(capture, timings: dict | None = None):
    """(0-based position, BGR frame) for each frame that decodes, until the video ends. A frame
    that does not decode is skipped (the positions after it keep counting it); only a run of
    ``END_AFTER_FAILED_READS`` failed reads ends the video. Decoding time goes to ``timings``."""
    failed, position = 0, 0
    while True:
        t0 = time.perf_counter()
        ok, bgr = capture.read()
        if timings is not None:
            timings["decode"] += time.perf_counter() - t0
        if not ok:
            failed += 1
            if failed >= END_AFTER_FAILED_READS:
                return
            continue
        position, failed = position + failed, 0
        yield position, bgr
        position += 1


def _put(frames: queue.Queue, item, stop) -> bool:
    """Put ``item`` on a bounded queue, waiting while it is full; False (not put) once ``stop()``
    says the other side is gone."""
    while not stop():
        try:
            frames.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class VideoDecoder(threading.Thread):
    """``decoded_frames`` of a capture, read ahead in a thread of its own (OpenCV and PIL release
    the GIL while they decode); iterating yields them in order, and re-raises the reader's error."""

    def __init__(self, capture, ahead: int):
        super().__init__(daemon=True, name="facslab-decode")
        self.capture, self.frames, self.stopped = capture, queue.Queue(ahead), threading.Event()
        self.timings = defaultdict(float)
        self.waited = 0.0  # the reader's time waiting for frames (the decoding it did not hide)

    def run(self) -> None:
        try:
            for item in decoded_frames(self.capture, self.timings):
                if not _put(self.frames, item, self.stopped.is_set):
                    return
            _put(self.frames, None, self.stopped.is_set)
        except BaseException as error:  # noqa: BLE001 (handed to the consumer, which raises it)
            _put(self.frames, error, self.stopped.is_set)

    def __iter__(self):
        while True:
            t0 = time.perf_counter()
            item = self.frames.get()
            self.waited += time.perf_counter() - t0
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopped.set()
        self.join()


class VideoEncoder:
    """An annotated video, written in a thread of its own (``background``): OpenCV releases the GIL
    while it encodes, so the next frame's work goes on beside it. ``write`` waits while ``ahead``
    frames are queued, and raises the writer's error; ``close`` writes the rest."""

    def __init__(self, path: str, fps: float, size: tuple[int, int], background: bool = True, ahead: int = 4):
        self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        self.frames, self.error, self.thread = queue.Queue(ahead), None, None
        if background:
            self.thread = threading.Thread(target=self._encode, daemon=True, name="facslab-encode")
            self.thread.start()

    def _encode(self) -> None:
        try:
            while (frame := self.frames.get()) is not None:
                self.writer.write(frame)
        except BaseException as error:  # noqa: BLE001 (raised in the loop, by write or close)
            self.error = error

    def write(self, frame: np.ndarray) -> None:
        """Write or queue a frame; the caller no longer changes it."""
        if self.thread is None:
            self.writer.write(frame)
            return
        if not _put(self.frames, frame, lambda: self.error is not None or not self.thread.is_alive()):
            error, self.error = self.error, None  # raised here, once: close does not raise it again
            raise error or RuntimeError("the video encoder stopped")

    def close(self, raise_error: bool = True) -> None:
        """Write the queued frames and release the file; ``raise_error``: raise the writer's error
        (once: not when ``write`` already did)."""
        if self.thread is not None and self.thread.is_alive():
            self.frames.put(None)
            self.thread.join()
        self.writer.release()
        if self.error is not None and raise_error:
            raise self.error
