"""The preprocessing cache: a dataset's aligned crops, computed once in parallel and reused.

Decoding a 640x490 PNG and warping it costs far more than reading a 224x224 crop back, and
every epoch and every trial of a sweep would pay it again. The crops of one list of sources are
stored as a single ``.npy`` array (memory-mapped when read), beside the 68 landmarks of the sources
that come with 68 (carried into the crop; NaN for the others), keyed by a hash of everything that
changes a crop: each file's path, size and modification time, its landmarks, the alignment spec,
the detector settings and the version of this code. A different key is a different cache entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.badinput import BadInputError, SkipReport
from facslab.faces.align import AlignmentSpec, align_face, alignment_matrix, eye_centres, transform_points
from facslab.images import load_rgb
from facslab.threads import opencv_threads

log = logging.getLogger(__name__)

#: Bump when the crop a source produces changes for the same inputs.
CACHE_VERSION = 2  # 2: the landmarks beside the crops


@dataclass(frozen=True)
class FaceSource:
    """One face to crop: an image and where its landmarks come from.

    ``landmarks``: points given by the dataset (CelebA's eyes, as 2x2); ``landmarks_file``: a
    file of points, read by ``read_landmarks`` (the dataset's reader, which the datamodule gives:
    CK+'s 68-point text files); neither: detect with dlib and use its 5-point predictor.
    """

    image: str
    landmarks: tuple[float, ...] | None = None
    landmarks_file: str | None = None
    read_landmarks: Callable[[str], np.ndarray] | None = None  # a module-level function (pickled by name)

    def __post_init__(self):
        if self.landmarks_file is not None and self.read_landmarks is None:
            raise ValueError(f"{self.landmarks_file}: a landmarks file needs its dataset's reader (read_landmarks)")

    def reader_name(self) -> str | None:
        """The reader's import path: part of the cache key (another reader, other crops)."""
        fn = self.read_landmarks
        return None if fn is None else f"{fn.__module__}.{fn.__qualname__}"


@dataclass(frozen=True)
class DetectionSettings:
    method: str = "hog"  # or "mmod"
    upsample: int = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("FACSLAB_CACHE", Path.home() / ".cache" / "facslab")) / "aligned"


def _stat(path: str | None) -> tuple:
    if path is None:
        return ()
    try:
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns)
    except OSError:
        return ("missing",)


def cache_key(sources: list[FaceSource], spec: AlignmentSpec, detection: DetectionSettings) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, asdict(spec), asdict(detection)]).encode())
    for s in sources:
        key = (s.image, _stat(s.image), s.landmarks, s.landmarks_file, _stat(s.landmarks_file))
        # the reader only where there is a file to read: the other sources keep the keys they had
        digest.update(repr(key + ((s.reader_name(),) if s.read_landmarks is not None else ())).encode())
    return digest.hexdigest()[:24]


def crop_source(source: FaceSource, spec: AlignmentSpec, detection: DetectionSettings) -> np.ndarray:
    """Decode and align one source; ``BadInputError`` names the file and the problem."""
    return crop_with_landmarks(source, spec, detection)[0]


def crop_with_landmarks(source: FaceSource, spec: AlignmentSpec,
                        detection: DetectionSettings) -> tuple[np.ndarray, np.ndarray | None]:
    """(crop, the source's 68 landmarks in the crop's pixels, or None where it has fewer)."""
    image = load_rgb(source.image)
    if source.landmarks is not None:
        landmarks = np.asarray(source.landmarks, dtype=np.float64).reshape(-1, 2)
    elif source.landmarks_file is not None:
        landmarks = source.read_landmarks(source.landmarks_file)
    else:
        from facslab.faces.detect import detect_faces, predict_landmarks

        found = detect_faces(image, detection.method, detection.upsample)
        if not found:
            raise BadInputError(source.image, "no face found")
        landmarks = predict_landmarks(image, found[0], points=5)
    try:
        crop = align_face(image, landmarks, spec)
    except ValueError as error:
        raise BadInputError(source.landmarks_file or source.image, f"cannot align: {error}") from None
    if len(landmarks) != 68:
        return crop, None
    return crop, transform_points(landmarks, alignment_matrix(eye_centres(landmarks), spec)).astype(np.float32)


def _crop_chunk(args) -> list[tuple[int, np.ndarray | None, np.ndarray | None, str | None]]:
    chunk, sources, spec, detection = args
    out = []
    for i, source in zip(chunk, sources):
        try:
            out.append((i, *crop_with_landmarks(source, spec, detection), None))
        except BadInputError as error:
            out.append((i, None, None, f"{error.path}\t{error.problem}"))
    return out


@dataclass
class CachedCrops:
    """Crops of all sources (``crops[i]`` belongs to ``sources[i]``); ``index`` lists the ones
    that worked, the others are zeros and named in ``report``."""

    crops: np.ndarray  # (n, S, S, 3) uint8, memory-mapped
    index: np.ndarray  # positions of the sources that were cropped
    report: SkipReport
    path: Path
    built: bool  # False when read back from an earlier run
    #: (n, 68, 2) float32 landmarks in crop pixels where the source gave 68 (else NaN); None: none kept
    landmarks: np.ndarray | None = None


def build_cache(
    sources: list[FaceSource],
    spec: AlignmentSpec = AlignmentSpec(),
    detection: DetectionSettings = DetectionSettings(),
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    desc: str = "aligning faces",
) -> CachedCrops:
    """Aligned crops of ``sources``, from the cache when present, otherwise computed and stored."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = cache_dir / cache_key(sources, spec, detection)
    built = False
    if not (entry / "done").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Parallel sweep workers may want the same entry: one builds it, the others wait and reuse.
        with open(entry.with_name(entry.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (entry / "done").exists():
                _compute(entry, sources, spec, detection, workers, progress, desc)
                built = True
    table = pd.read_csv(entry / "index.csv", keep_default_na=False)
    report = SkipReport(strict=strict)
    for _, row in table[table["problem"] != ""].iterrows():
        path, problem = row["problem"].split("\t", 1)
        report.skip(path, problem)
    crops = np.load(entry / "crops.npy", mmap_mode="r")
    index = table.loc[table["problem"] == "", "position"].to_numpy()
    return CachedCrops(crops=crops, index=index, report=report, path=entry, built=built,
                       landmarks=np.load(entry / "landmarks.npy"))


def _compute(entry: Path, sources, spec, detection, workers, progress, desc) -> None:
    workers = (os.cpu_count() or 1) if workers is None else workers
    tmp = entry.with_name(entry.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(sources)
    chunk_size = max(1, min(64, n // (4 * max(workers, 1)) or 1))
    chunks = [list(range(i, min(i + chunk_size, n))) for i in range(0, n, chunk_size)]
    jobs = [(c, [sources[i] for i in c], spec, detection) for c in chunks]
    # Crops go straight to disk: a full CelebA does not fit in memory.
    array = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(n, spec.size, spec.size, 3))
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    problems: dict[int, str] = {}
    bar = tqdm(total=n, desc=desc, unit="face", disable=not progress)
    if workers <= 1:
        outputs = map(_crop_chunk, jobs)
    else:
        # a process per core, so each worker's OpenCV runs single-threaded (set before the fork)
        with opencv_threads(1):
            pool = ProcessPoolExecutor(max_workers=workers)
            outputs = pool.map(_crop_chunk, jobs)  # submits every chunk, so every worker forks here
    try:
        for out in outputs:
            for i, crop, points, problem in out:
                if crop is None:
                    problems[i] = problem
                else:
                    array[i] = crop
                    if points is not None:
                        landmarks[i] = points
            bar.update(len(out))
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown()
    array.flush()
    del array
    np.save(tmp / "landmarks.npy", landmarks)
    pd.DataFrame({"position": range(n), "image": [s.image for s in sources],
                  "problem": [problems.get(i, "") for i in range(n)]}).to_csv(tmp / "index.csv", index=False)
    (tmp / "done").touch()
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)
    log.info("cached %d crops (%d skipped) in %s", n - len(problems), len(problems), entry)
