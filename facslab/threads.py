"""One deliberate thread count for the numeric libraries of a process.

On two cores, torch, OpenCV and ONNX Runtime each start a pool per core and then compete with each
other and with dlib; worker processes that already run one per core must not start pools at all.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


def set_threads(threads: int) -> None:
    """torch and OpenCV use ``threads``; ONNX Runtime sessions are given it too. torch not yet
    imported (the apps on ONNX Runtime import it only where a PyTorch model is built) reads it from
    ``OMP_NUM_THREADS`` when it loads."""
    import os

    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


@contextmanager
def opencv_threads(threads: int):
    """OpenCV's thread count for the duration of a block. Worker processes forked inside it start
    with that count: it cannot be changed in the child, whose copy of OpenCV's pool hangs."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)
