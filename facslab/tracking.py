"""Faces followed between detections: which face is where on every frame of a video.

``FaceTracker`` detects every ``detect_every`` frames (or when a face is lost) and follows the faces
in between, either by HOG run again on a window around each face's last box (``nearby``) or by
dlib's correlation tracker; face ids persist by box overlap. ``BackgroundFaceTracker`` runs the
detections in a thread of their own, for cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dlib
import numpy as np

from facslab.faces.detect import Detection, box_iou, face_near

#: correlation: dlib's correlation tracker on the frame, lost when its peak-to-sidelobe ratio drops
#: (about 3 ms a face, whatever its size); nearby: HOG run again on a window around the face's last
#: box (about 1 ms), lost when it scores no face there above ``TRACK_MIN_SCORE``; auto: nearby with
#: HOG's detections, correlation with another detector's (whose faces HOG may not score)
TRACKERS = ("auto", "correlation", "nearby")
#: HOG's margin under which a face followed nearby counts as lost (looser than a detection's
#: threshold: a face turning away for a moment is still followed)
TRACK_MIN_SCORE = -0.5


@dataclass
class _Track:
    face_id: int
    tracker: dlib.correlation_tracker | None  # None: followed nearby
    detection: Detection


@dataclass
class FaceTracker:
    """Boxes for every frame: a detection every ``detect_every`` frames (or when a track is lost),
    correlation tracking in between; face ids persist by box overlap."""

    detect: callable
    detect_every: int = 10
    idle_every: int = 1  # frames between detections while no face is tracked
    lost_below: float = 7.0  # peak-to-sidelobe ratio under which a tracker has lost its face
    follow: str = "correlation"  # TRACKERS
    tracks: list[_Track] = field(default_factory=list)
    next_id: int = 0
    detections_run: int = 0
    last_detection: int | None = None

    def update(self, frame: np.ndarray, index: int) -> list[tuple[int, Detection]]:
        if not self.tracks and self.last_detection is not None and index - self.last_detection < self.idle_every:
            return []  # nothing in view a moment ago: do not pay a full detection on every frame
        if self.tracks and index % self.detect_every != 0 and all(self._follow(t, frame) for t in self.tracks):
            return [(t.face_id, t.detection) for t in self.tracks]
        self.detections_run += 1
        self.last_detection = index
        self.tracks = self._matched(self.detect(frame), frame)
        return [(t.face_id, t.detection) for t in self.tracks]

    def close(self) -> None:
        """Nothing to release (the background tracker's thread is)."""

    def _follow(self, track: _Track, frame: np.ndarray) -> bool:
        """Moves ``track`` to this frame; False when it has lost its face."""
        if self.follow == "nearby":
            found = face_near(frame, track.detection.box, min_confidence=TRACK_MIN_SCORE)
            if found is None:
                return False
            # HOG's boxes come in its pyramid's steps (a fifth apart): the side is averaged with the
            # last one, which took the eyes' aspect ratios' spread on a still face from 0.037 to 0.011
            left, top, right, bottom = track.detection.box
            x0, y0, x1, y1 = found.box
            half = ((right - left) + (x1 - x0)) / 4
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            track.detection = Detection((int(round(cx - half)), int(round(cy - half)), int(round(cx + half)),
                                         int(round(cy + half))), found.confidence)
            return True
        quality = track.tracker.update(frame)
        p = track.tracker.get_position()
        track.detection = Detection((int(p.left()), int(p.top()), int(p.right()), int(p.bottom())),
                                    track.detection.confidence)
        return quality >= self.lost_below

    def _matched(self, found: list[Detection], frame: np.ndarray,
                 boxes: list[tuple[int, tuple]] | None = None) -> list[_Track]:
        """The tracks of a detection on ``frame``: a face overlapping a tracked one keeps its id
        (``boxes``: the tracked faces' (id, box) on that frame; by default their boxes now)."""
        boxes = [(t.face_id, t.detection.box) for t in self.tracks] if boxes is None else boxes
        tracks = []
        for detection in found:
            previous = max(boxes, key=lambda b: box_iou(b[1], detection.box), default=None)
            if previous is not None and box_iou(previous[1], detection.box) > 0.3 and \
                    all(previous[0] != t.face_id for t in tracks):
                face_id = previous[0]
            else:
                face_id, self.next_id = self.next_id, self.next_id + 1
            tracker = None
            if self.follow == "correlation":
                tracker = dlib.correlation_tracker()
                tracker.start_track(frame, dlib.rectangle(*detection.box))

            tracks.append(_Track(face_id, tracker, detection))
        return tracks


@dataclass
class BackgroundFaceTracker(FaceTracker):
    """A ``FaceTracker`` whose detections run in a thread of their own (dlib and OpenCV release the
    GIL while they detect) while the faces already found are followed, so that no frame waits for
    one (but the first): a detection joins the tracks when it ends, a few frames after its own
    frame, and a lost face is dropped until the next one finds it. The next detection is due
    ``detect_every`` (``idle_every`` without a face) frames after one ends. What a frame's row holds
    then depends on timing: for cameras, not for CSVs that must come out the same twice."""

    #: (the detection's future, its frame, each face's box on that frame)
    pending: tuple | None = None

    def __post_init__(self):
        from concurrent.futures import ThreadPoolExecutor

        # every detection runs on this one thread: MMOD's network and OpenCV's cascades are one
        # object each, not safe on two threads at once
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="facslab-detect")
        self.pool.submit(self.detect, np.zeros((8, 8), np.uint8))  # loads the detector before the first frame

    def update(self, frame: np.ndarray, index: int) -> list[tuple[int, Detection]]:
        if self.detections_run == 0:  # the first is waited for: until it ends there is nothing to follow
            self.detections_run, self.last_detection = 1, index
            self.tracks = self._matched(self.pool.submit(self.detect, frame).result(), frame)
            return [(t.face_id, t.detection) for t in self.tracks]
        if self.pending is not None and self.pending[0].done():
            future, seen, boxes = self.pending
            self.pending, self.last_detection = None, index
            # matched by where the faces were on the detection's own frame; started there, followed to this one
            self.tracks = self._matched(future.result(), seen, boxes)
        followed = len(self.tracks)
        self.tracks = [t for t in self.tracks if self._follow(t, frame)]
        wait = self.detect_every if self.tracks else self.idle_every
        if self.pending is None and (index - self.last_detection >= wait or len(self.tracks) < followed):
            self.detections_run += 1
            seen = frame.copy()  # the caller may draw on its frame; the detection and the trackers read this
            self.pending = (self.pool.submit(self.detect, seen), seen, [(t.face_id, t.detection.box) for t in self.tracks])
        return [(t.face_id, t.detection) for t in self.tracks]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
