"""Overlays on frames and images: face boxes, the emoji, AU and emotion probability bars, fps."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facslab.au import AU_LABELS

EMOJI_FONTS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",)
#: matplotlib's tab10 (RGB), so a class has one colour in the bars, the strip chart and the PNG
SERIES_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                  (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def series_colour(k: int) -> tuple[int, int, int]:
    return SERIES_COLOURS[k % len(SERIES_COLOURS)]


@lru_cache(maxsize=1)
def _emoji_font():
    for path in EMOJI_FONTS:
        if Path(path).exists():
            try:
                return ImageFont.truetype(path, 109)  # the colour bitmap font has this one size
            except OSError:
                pass
    return None


@lru_cache(maxsize=64)
def emoji_image(char: str, size: int) -> np.ndarray | None:
    """RGBA picture of an emoji at ``size`` px, or None without a colour emoji font."""
    font = _emoji_font()
    if font is None:
        return None
    canvas = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    return np.asarray(canvas.crop(box).resize((size, size), Image.LANCZOS))


def _paste(frame: np.ndarray, rgba: np.ndarray, x: int, y: int) -> None:
    h, w = rgba.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    patch = rgba[y0 - y:y1 - y, x0 - x:x1 - x]
    alpha = patch[..., 3:4].astype(np.float32) / 255.0
    frame[y0:y1, x0:x1] = (patch[..., :3] * alpha + frame[y0:y1, x0:x1] * (1 - alpha)).astype(np.uint8)


def annotate(frame: np.ndarray, results, fps: float | None = None, bars: bool = True, bgr: bool = False) -> np.ndarray:
    """A copy of an RGB frame (``bgr``: a BGR one, as OpenCV decodes and encodes video) with each
    face's box, emoji (or its name), score and AU bars when a model decides AUs, and under the box
    a few words from every model (``TaskPredictor.summary``)."""
    out = frame.copy()
    colour = (lambda c: c[::-1]) if bgr else (lambda c: c)  # noqa: E731
    for result in results:
        left, top, right, bottom = (int(v) for v in result.box)
        cv2.rectangle(out, (left, top), (right, bottom), colour((0, 220, 0)), 2)
        if result.match is not None:
            size = max(24, (right - left) // 2)
            glyph = emoji_image(result.match.emoji.char, size)
            label = f"{result.match.score:.2f}"
            if glyph is not None:
                _paste(out, glyph[..., [2, 1, 0, 3]] if bgr else glyph, left, max(0, top - size - 4))
                cv2.putText(out, label, (left + size + 4, max(12, top - 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                            colour((255, 255, 0)), 1)
            else:
                cv2.putText(out, f"{result.match.emoji.name} {label}", (left, max(12, top - 8)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour((255, 255, 0)), 1)
        below = [text for _, text in result.summaries()]  # every model's few words, under the box
        for k, text in enumerate(below):
            cv2.putText(out, text, (left, min(out.shape[0] - 4, bottom + 16 + 16 * k)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, colour((255, 200, 0)), 1)
        if bars:
            _chart_bars(out, result, left, bottom + 8 + 16 * len(below), colour)
        if bars and result.probabilities is not None:
            x = right + 6
            for k, (au, p) in enumerate(zip(AU_LABELS, result.probabilities)):
                y = top + 10 * k
                bar = colour((255, 80, 80)) if result.decisions[k] else (180, 180, 180)
                cv2.putText(out, au, (x, y + 8), cv2.FONT_HERSHEY_PLAIN, 0.7, bar, 1)
                cv2.rectangle(out, (x + 34, y + 1), (x + 34 + int(50 * float(p)), y + 8), bar, -1)
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} fps", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return out


def _chart_bars(out: np.ndarray, result, x: int, y: int, colour) -> None:
    """A bar per charted output (``chart_names``: an emotion model's classes) of each model, under
    the face's words, in the colours of the strip chart."""
    for predictor, row in result.outputs:
        low, high = predictor.chart_range
        for k, name in enumerate(predictor.chart_names()):
            if not np.isfinite(row[k]):  # nothing to draw, and int() of NaN would raise
                continue
            share = (min(max(float(row[k]), low), high) - low) / (high - low)
            paint = colour(series_colour(k))
            cv2.putText(out, name[:8], (x, y + 8), cv2.FONT_HERSHEY_PLAIN, 0.7, paint, 1)
            cv2.rectangle(out, (x + 56, y + 1), (x + 56 + int(60 * share), y + 8), paint, -1)
            y += 10
