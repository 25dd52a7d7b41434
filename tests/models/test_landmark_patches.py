"""The landmark-patch transformer cuts its patches around each face's own landmarks: the dataset's
68 points carried into the crop where it ships them (AffectNet, CK+), dlib's on the crop where it
does not (FER-2013) and in the apps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facslab.faces.align import AlignmentSpec, alignment_matrix, eye_centres, transform_points


@pytest.fixture(scope="module")
def small_affectnet(tmp_path_factory):
    from facslab.synth.emotion_datasets import write_affectnet

    root = tmp_path_factory.mktemp("affectnet_lpt")
    write_affectnet(root, n_train=70, n_test_per_code=2, seed=4, progress=False)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("source", ["dataset", "dlib"])
def test_fit_feeds_each_faces_landmarks_moved_with_the_augmentation(small_affectnet, tmp_path, source):
    """Through ``Trainer.fit``: every validation face reaches the patch embedding with its landmarks:
    AffectNet's own carried into the crop by the alignment (``landmarks: dataset``), or dlib's found
    on the crop (the default); training faces with theirs moved by the augmentation, a flipped
    face's points renumbered so that the right eye is again the one on the image's left (without
    that, about half the faces have it on the right)."""
    from facslab.faces.landmarks import crop_landmarks

    from datamodules import AffectNetDataModule
    from facslab.config import TrainConfig
    from facslab.tasks import get_task
    from facslab.training import TrainerConfig, fit

    size = 48
    dm = AffectNetDataModule(str(small_affectnet), image_size=size, batch_size=16, cache_dir=str(tmp_path / "aligned"),
                             preprocess_workers=0, progress=False, augment=True, landmarks=source)
    dm.setup("fit")
    torch.manual_seed(0)
    model = get_task("emotion").build_model(dict(backbone="landmark_patches_25", unfrozen_blocks=-1, lr=1e-3), dm,
                                            TrainConfig(init_from=None), None)
    seen = {True: [], False: []}
    embedding = model.backbone[0][0]
    embedding.register_forward_pre_hook(lambda module, args: seen[module.training].append(args[0][1].clone()))
    fit(model, dm, TrainerConfig(max_epochs=1, patience=5, progress=False))

    spec = AlignmentSpec(size=size)

    def own(rows):  # the dataset's points of these cache positions, carried into their crops
        points = [np.asarray(s.landmarks, np.float64).reshape(68, 2) for s in dm.samples.loc[rows, "source"]]
        return np.stack([transform_points(p, alignment_matrix(eye_centres(p), spec)) for p in points])

    def expected(rows):
        return own(rows) if source == "dataset" else crop_landmarks(np.asarray(dm.cached.crops[rows]))

    validated = torch.cat(seen[False]).numpy()
    assert validated.shape == (len(dm.positions("val")), 68, 2)
    np.testing.assert_allclose(validated, expected(dm.positions("val")), atol=1e-3)
    if source == "dlib":  # dlib's points are not the dataset's
        assert np.abs(validated - own(dm.positions("val"))).mean() > 0.1

    trained = torch.cat(seen[True]).numpy()
    assert len(trained) >= 30
    assert (trained[:, 36:42, 0].mean(1) < trained[:, 42:48, 0].mean(1)).all()
    train_points = expected(dm.positions("train"))
    moved = [np.abs(train_points - face).max(axis=(1, 2)).min() for face in trained]
    assert np.median(moved) > 0.5  # the augmentation moved the points (an unaugmented face matches to 1e-3)


def test_faces_without_the_datasets_68_points_get_dlibs_on_the_crop(fer2013, tmp_path, astronaut):
    """FER-2013 ships pixels only: its crops' landmarks come from dlib run on the crop (48 px,
    enlarged first), eyes near where the alignment puts them. On a real photograph, the points
    dlib finds on the astronaut's aligned crop lie within 0.03 of the crop's side (mean) of those
    found on the photograph and carried into the crop."""
    from datamodules import FER2013DataModule
    from facslab.faces.align import align_face
    from facslab.faces.detect import detect_faces, predict_landmarks
    from facslab.faces.landmarks import crop_landmarks

    dm = FER2013DataModule(str(fer2013), cache_dir=str(tmp_path / "aligned"), progress=False)
    dm.setup("fit")
    assert dm.cached.landmarks is None  # pixels, no points shipped
    points = dm.landmarks()[dm.positions("train")]
    assert not np.isnan(points).any()
    eyes = np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1)], 1) / dm.image_size
    spec = AlignmentSpec(size=dm.image_size)
    assert np.median(np.abs(eyes - spec.eye_targets() / spec.size)) < 0.06, np.median(np.abs(eyes - spec.eye_targets() / spec.size))

    spec = AlignmentSpec(size=112)
    found = predict_landmarks(astronaut, detect_faces(astronaut)[0], 68)
    crop = align_face(astronaut, found, spec)
    carried = transform_points(found, alignment_matrix(eye_centres(found), spec))
    on_crop = crop_landmarks(crop[None])[0]
    assert np.abs(on_crop - carried).mean() / spec.size < 0.03


def test_data_that_cannot_carry_each_faces_landmarks_is_refused(ckplus, tmp_path):
    """Mixed face halves would give a face another's lower half without its points: refused with
    the setting to change, through ``fit``, before a step is taken."""
    from datamodules import CKPlusDataModule
    from facslab.errors import ConfigError
    from facslab.training import TrainerConfig, build_model, fit

    dm = CKPlusDataModule(str(ckplus[0]), image_size=32, batch_size=8, cache_dir=str(tmp_path / "aligned"),
                          preprocess_workers=0, progress=False, fold=0, mix_halves=0.5)
    dm.setup("fit")
    model = build_model(dict(backbone="landmark_patches_25", unfrozen_blocks=-1, hidden_size=16), dm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="mix_halves"):
        fit(model, dm, TrainerConfig(max_epochs=1, progress=False))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_cached_features_of_a_frozen_patch_embedding_follow_where_the_patches_were_cut(small_affectnet, tmp_path):
    """With the embedding frozen its output depends on the landmarks: the feature cache keeps one
    entry per landmark source (one key for both served the first source's features to the second)."""
    from datamodules import AffectNetDataModule
    from datamodules.features import cached_features, feature_key
    from facslab.config import TrainConfig
    from facslab.tasks import get_task

    keys, features = {}, {}
    for source in ("dlib", "dataset"):
        dm = AffectNetDataModule(str(small_affectnet), image_size=32, batch_size=16, cache_dir=str(tmp_path / "aligned"),
                                 preprocess_workers=0, progress=False, augment=False, landmarks=source)
        dm.setup("fit")
        torch.manual_seed(0)
        model = get_task("emotion").build_model(dict(backbone="landmark_patches_25", unfrozen_blocks=2, lr=1e-3), dm,
                                                TrainConfig(init_from=None), None)
        positions = np.sort(np.concatenate([dm.positions("train"), dm.positions("val")]))
        keys[source] = feature_key(model, dm, positions)
        features[source] = np.asarray(cached_features(model, dm, progress=False))[positions]
    assert keys["dlib"] != keys["dataset"]
    assert not np.allclose(features["dlib"], features["dataset"])
