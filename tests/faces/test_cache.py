"""The aligned-crop cache: computed once, reused, invalidated by anything that changes a crop."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facslab.badinput import BadInputError
from facslab.faces.align import AlignmentSpec
from facslab.faces.cache import DetectionSettings, FaceSource, build_cache, cache_key
from facslab.formats.ckplus import read_landmarks


@pytest.fixture
def sources(ckplus):
    _, truth = ckplus
    root = ckplus[0]
    out = []
    for path in truth["peak_image"][:6]:
        rel = os.path.relpath(path, root / "cohn-kanade-images")
        landmarks = root / "Landmarks" / rel.replace(".png", "_landmarks.txt")
        out.append(FaceSource(path, landmarks_file=str(landmarks), read_landmarks=read_landmarks))
    return out


def test_built_once_then_reused(sources, tmp_path):
    spec = AlignmentSpec(size=48)
    first = build_cache(sources, spec, cache_dir=tmp_path, workers=0, progress=False)
    second = build_cache(sources, spec, cache_dir=tmp_path, workers=0, progress=False)
    assert first.built and not second.built and first.path == second.path
    assert np.array_equal(first.crops, second.crops) and first.crops.shape == (6, 48, 48, 3)
    assert list(second.index) == list(range(6))


def test_parallel_workers_give_the_same_crops(sources, tmp_path):
    spec = AlignmentSpec(size=40)
    one = build_cache(sources, spec, cache_dir=tmp_path / "a", workers=0, progress=False)
    two = build_cache(sources, spec, cache_dir=tmp_path / "b", workers=2, progress=False)
    assert np.array_equal(np.asarray(one.crops), np.asarray(two.crops))


def _crop_chunk_recording_threads(job):
    """A crop worker that notes OpenCV's thread count in its process (module level: pickled by name)."""
    import cv2

    from facslab.faces import cache

    Path(os.environ["FACSLAB_TEST_THREADS_DIR"], f"threads-{os.getpid()}").write_text(str(cv2.getNumThreads()))
    return cache.REAL_CROP_CHUNK(job)


def test_crop_workers_run_opencv_single_threaded_and_the_parent_keeps_its_threads(sources, tmp_path, monkeypatch):
    import cv2

    from facslab.faces import cache

    cv2.setNumThreads(2)
    cv2.resize(np.zeros((1500, 1500, 3), np.uint8), (700, 700))  # the parent's pool has run
    monkeypatch.setenv("FACSLAB_TEST_THREADS_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "REAL_CROP_CHUNK", cache._crop_chunk, raising=False)
    monkeypatch.setattr(cache, "_crop_chunk", _crop_chunk_recording_threads)
    built = build_cache(sources, AlignmentSpec(size=40), cache_dir=tmp_path / "c", workers=2, progress=False)
    assert len(built.index) == len(sources)
    seen = {p.name: p.read_text() for p in tmp_path.glob("threads-*")}
    assert seen and set(seen.values()) == {"1"}, seen  # two processes already use the two cores
    assert cv2.getNumThreads() == 2  # the parent's setting is back


def test_key_covers_spec_detector_and_files(sources, tmp_path):
    base = cache_key(sources, AlignmentSpec(48), DetectionSettings())
    assert cache_key(sources, AlignmentSpec(64), DetectionSettings()) != base
    assert cache_key(sources, AlignmentSpec(48, eye_y=0.35), DetectionSettings()) != base
    assert cache_key(sources, AlignmentSpec(48), DetectionSettings("mmod")) != base
    assert cache_key(sources[:-1], AlignmentSpec(48), DetectionSettings()) != base
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(sources[0].image, "rb").read())
    moved = [FaceSource(str(copy), landmarks_file=sources[0].landmarks_file, read_landmarks=read_landmarks)] + sources[1:]
    key = cache_key(moved, AlignmentSpec(48), DetectionSettings())
    assert key != base
    os.utime(copy, ns=(1, 1))  # same file, new modification time
    assert cache_key(moved, AlignmentSpec(48), DetectionSettings()) != key


def test_bad_files_are_skipped_and_reported(sources, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    garbage_landmarks = tmp_path / "lm.txt"
    garbage_landmarks.write_text("1 2\n3 4\n")
    bad = [FaceSource(str(broken), landmarks_file=sources[0].landmarks_file, read_landmarks=read_landmarks),
           FaceSource(str(blank)),  # no landmarks: detection finds no face
           FaceSource(sources[1].image, landmarks_file=str(garbage_landmarks), read_landmarks=read_landmarks)]
    cached = build_cache(sources[:2] + bad, AlignmentSpec(32), cache_dir=tmp_path / "c", workers=0, progress=False)
    assert list(cached.index) == [0, 1]
    problems = dict(cached.report.rows)
    assert "not a readable image" in problems[str(broken)] or "cannot decode" in problems[str(broken)]
    assert problems[str(blank)] == "no face found"
    assert problems[str(garbage_landmarks)] == "2 landmarks, expected 68"
    with pytest.raises(BadInputError, match="broken.png"):
        build_cache(sources[:2] + bad, AlignmentSpec(32), cache_dir=tmp_path / "c", workers=0, strict=True,
                    progress=False)


def test_faces_without_landmarks_are_detected(astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    cached = build_cache([FaceSource(str(path))], AlignmentSpec(64), cache_dir=tmp_path, workers=0, progress=False)
    assert list(cached.index) == [0] and cached.crops[0].std() > 20


def _build_in_process(args):
    sources, cache_dir = args
    return build_cache(sources, AlignmentSpec(40), cache_dir=cache_dir, workers=0, progress=False).built


def test_processes_building_the_same_entry_share_it(sources, tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(3) as pool:
        built = list(pool.map(_build_in_process, [(sources, tmp_path)] * 3))
    assert sorted(built) == [False, False, True]  # one built it, two waited and reused it
