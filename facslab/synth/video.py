"""Videos built from a real photograph, moved, scaled and rotated a little from frame to frame:
test input for the live loop and Chromium's fake camera (dlib does not detect drawn faces)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def photo_frames(photo: np.ndarray, n_frames: int = 30, size: tuple[int, int] = (640, 480), seed: int = 0):
    """RGB frames (H, W, 3) of ``size`` (W, H): the photo on a grey background, drifting."""
    rng = np.random.default_rng(seed)
    width, height = size
    scale0 = min(width / photo.shape[1], height / photo.shape[0]) * 0.9
    for k in range(n_frames):
        t = k / max(n_frames - 1, 1)
        angle = 6 * np.sin(2 * np.pi * t) + rng.normal(0, 0.5)
        scale = scale0 * (1 + 0.06 * np.sin(np.pi * t))
        shift = (width / 2 + 20 * np.sin(2 * np.pi * t), height / 2 + 10 * np.cos(2 * np.pi * t))
        matrix = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), angle, scale)
        matrix[:, 2] += np.asarray(shift) - np.array([photo.shape[1] / 2, photo.shape[0] / 2])
        yield cv2.warpAffine(photo, matrix, (width, height), borderValue=(128, 128, 128))


def write_mp4(path: str | Path, frames, fps: float = 15.0) -> Path:
    path = Path(path)
    writer = None
    for frame in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if writer is not None:
        writer.release()
    return path


def write_y4m(path: str | Path, frames, fps: int = 15) -> Path:
    """YUV4MPEG2 (4:2:0), the format Chromium's ``--use-file-for-fake-video-capture`` plays."""
    path = Path(path)
    with open(path, "wb") as handle:
        for k, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if k == 0:
                handle.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
            handle.write(b"FRAME\n")
            handle.write(yuv.tobytes())
    return path
