"""The largest face's outputs over time (Acting Mirror's graph of emotion percentages for person
0): a strip chart drawn into the live video, and the whole series saved at the end as a CSV and a
PNG. Which outputs are charted is the first model's that declares any (``chart_names``: an emotion
model's classes, a valence/arousal model's two dimensions)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from facslab.draw import series_colour as colour

FRAME_COLUMNS = ("frame", "timestamp", "face_id")


def charted(analyzer):
    """The analyzer's first model with outputs worth following over time, or None."""
    return next((p for p in analyzer.predictors if p.chart_names()), None)


class Timeline:
    """One row per frame: the frame's number (1-based) and time, and the largest face's id and
    values (NaN on frames without a face, so the series lines up with the video)."""

    def __init__(self, predictor, fps: float, seconds_shown: float = 10.0, keep: int | None = None):
        self.predictor, self.names = predictor, tuple(predictor.chart_names())
        self.low, self.high = predictor.chart_range
        self.rows: list[tuple[int, float, int | None, np.ndarray]] = []
        self.shown = max(2, int(round(seconds_shown * (fps or 30.0))))  # frames the strip chart spans
        self.keep = keep  # rows kept (None: all); a web stream that never ends keeps only what it shows

    def add(self, frame: int, timestamp: float, face_ids: list[int], results: list) -> None:
        values, face_id = np.full(len(self.names), np.nan), None
        if results:
            k = max(range(len(results)), key=lambda i: _area(results[i].box))
            row = next(row for predictor, row in results[k].outputs if predictor is self.predictor)
            values, face_id = np.asarray(row, np.float64)[:len(self.names)], face_ids[k]
        self.rows.append((frame, timestamp, face_id, values))
        if self.keep is not None:
            del self.rows[:-self.keep]

    def latest(self) -> dict:
        """The last frame's row for a JSON answer (values null without a face)."""
        frame, timestamp, face_id, values = self.rows[-1]
        return {"names": list(self.names), "range": [self.low, self.high], "face_id": face_id,
                "values": [None if np.isnan(v) else round(float(v), 4) for v in values]}

    def draw(self, image: np.ndarray, bgr: bool = True) -> None:
        """The last ``shown`` frames as a strip chart in the bottom-left corner of ``image``, in place,
        with each line's name and latest value beside it."""
        height, width = image.shape[:2]
        w, h = min(320, width // 2), min(100, height // 4)
        x0, y0 = 8, height - h - 8
        panel = image[y0:y0 + h, x0:x0 + w]
        panel[:] = (panel * 0.4).astype(np.uint8)  # darkened, so the lines read on any frame
        recent = np.array([values for *_, values in self.rows[-self.shown:]])
        if not len(recent):
            return
        xs = x0 + np.arange(len(recent)) * (w - 1) / (self.shown - 1)
        scaled = (np.clip(recent, self.low, self.high) - self.low) / (self.high - self.low)
        for k, name in enumerate(self.names):
            paint = colour(k)[::-1] if bgr else colour(k)
            ys = y0 + 4 + (h - 9) * (1 - scaled[:, k])  # 4 px inside the panel: 0 and 1 stay visible
            for run in _runs(~np.isnan(ys)):  # a frame without a face breaks the line
                points = np.stack([xs[run], ys[run]], 1).round().astype(np.int32)
                cv2.polylines(image, [points], False, paint, 2, cv2.LINE_AA)
            latest = recent[-1, k]
            text = f"{name} {latest:.2f}" if not np.isnan(latest) else name
            cv2.putText(image, text, (x0 + w + 6, y0 + 10 + k * max(10, h // len(self.names))),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, paint, 1, cv2.LINE_AA)

    def save(self, png: str | Path) -> tuple[Path, Path]:
        """The whole series as ``png`` and as a CSV of the same name; returns both paths."""
        from facslab.plots import plt

        png = Path(png)
        table = png.with_suffix(".csv")
        with open(table, "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(FRAME_COLUMNS + self.names)
            for frame, timestamp, face_id, values in self.rows:
                out.writerow([frame, round(timestamp, 3), "" if face_id is None else face_id]
                             + ["" if np.isnan(v) else round(float(v), 4) for v in values])
        figure, ax = plt.subplots(figsize=(9, 3.5))
        times = np.array([timestamp for _, timestamp, *_ in self.rows])
        values = np.array([v for *_, v in self.rows]).reshape(len(self.rows), len(self.names))
        for k, name in enumerate(self.names):
            ax.plot(times, values[:, k], color=np.array(colour(k)) / 255, label=name, linewidth=1)
        margin = 0.02 * (self.high - self.low)  # lines at the ends stay off the axes
        ax.set_ylim(self.low - margin, self.high + margin)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(self.predictor.outputs_name)
        ax.set_title(f"the largest face's {self.predictor.outputs_name} over time")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.tight_layout()
        figure.savefig(png, dpi=100)
        plt.close(figure)
        return png, table


def _area(box) -> float:
    return float(box[2] - box[0]) * float(box[3] - box[1])


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [np.arange(a, b) for a, b in zip(edges[::2], edges[1::2])]
