"""Saliency maps: they follow the face's active AU, and ``facslab explain`` writes them per face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facslab.au import AU_INDEX, NUM_AUS
from facslab.synth.expressions import PosedExpression
from facslab.synth.face import Conditions, Expression, Identity, Pose, render_face

#: one AU (or pair) per face region, each present in half of the sequences independently of the
#: other: nothing but its own region tells a model whether it is there
REGION_POSES = {"lower": ("12",), "upper": ("1", "2")}


def _single_region_aus(rng: np.random.Generator) -> PosedExpression:
    aus = np.zeros(NUM_AUS, np.float32)
    for pose in REGION_POSES.values():
        if rng.random() < 0.5:
            for au in pose:
                aus[AU_INDEX[au]] = rng.uniform(3, 5)
    return PosedExpression(Expression(aus), None, {})


def _posed_faces(region: str, spec, n: int, seed: int):
    """Grey faces (as CK+'s frames) with only ``region``'s AUs at intensity 4, aligned as the model
    sees them; per face the masks of the upper face (above the eye centres) and the lower face
    (below the nose base), from the renderer's landmarks carried through the same alignment; and
    those landmarks (N, 68, 2)."""
    import cv2

    from facslab.faces.align import align_face, alignment_matrix, eye_centres, transform_points

    rng = np.random.default_rng(seed)
    crops, upper, lower, carried = [], [], [], []
    rows = np.arange(spec.size)[:, None] * np.ones((1, spec.size))
    for _ in range(n):
        aus = np.zeros(NUM_AUS, np.float32)
        for au in REGION_POSES[region]:
            aus[AU_INDEX[au]] = 4.0
        image, landmarks = render_face(Identity.sample(rng), Expression(aus), Pose((160, 150), 90, rng.uniform(-8, 8)),
                                       (320, 320), Conditions.sample(rng), rng)
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        crops.append(align_face(image, landmarks, spec))
        points = transform_points(landmarks, alignment_matrix(eye_centres(landmarks), spec))
        upper.append(rows < points[36:48, 1].mean())
        lower.append(rows > points[33, 1])
        carried.append(points)
    return np.stack(crops), upper, lower, np.stack(carried).astype(np.float32)


@pytest.fixture(scope="module")
def single_region_ckplus(tmp_path_factory):
    """Generated CK+ whose only AUs are AU12 (mouth) and AU1+2 (brows), independently."""
    from facslab.synth.ckplus import write_ckplus

    root = tmp_path_factory.mktemp("regions") / "ckplus"
    write_ckplus(root, n_subjects=60, sequences_per_subject=4, frames=(3, 4), seed=11, progress=False,
                 expressions=_single_region_aus, emotion_rate=0)
    return root


@pytest.mark.slow
@pytest.mark.xdist_group("single-region")  # one worker makes the faces for both
def test_grad_cam_mass_lies_in_the_region_of_the_active_au_and_moves_with_it(single_region_ckplus, tmp_path):
    """A ResNet-18 trained (Trainer.fit) on generated CK+ whose only AUs are AU12 (mouth) and AU1+2
    (brows), independently: Grad-CAM of AU12 on AU12-only faces lies mostly below the nose, of AU2
    on AU1+2-only faces mostly above the eyes, and the map's centre moves between the two.

    Its last two blocks and the head train on the cached features of its frozen first stages (as
    a fine-tuning does; here they keep their random start), in about half the time of training all.
    Over seeds 0-2: 0.70-0.82 of AU12's mass below the nose, 0.74-0.88 of AU2's above the eyes. At
    96 px, with 12 epochs or with three blocks trained, AU12's map spread over the face."""
    from datamodules import CKPlusDataModule
    from facslab.explain import explain, region_mass
    from facslab.predictor import AUPredictor
    from facslab.training import TrainerConfig, build_model, fit

    root = single_region_ckplus
    torch.manual_seed(0)
    dm = CKPlusDataModule(str(root), batch_size=16, cache_dir=str(tmp_path / "cache"), preprocess_workers=0,
                          progress=False, image_size=112, fold=0, augment=False)
    dm.setup("fit")
    model = build_model(dict(backbone="resnet18", unfrozen_blocks=2, hidden_size=32, lr=1e-3), dm)
    result = fit(model, dm, TrainerConfig(max_epochs=20, patience=20, progress=False, feature_cache=True))
    predictor = AUPredictor(result.model, dm.spec)
    centres, masses = {}, {}
    for region, target in (("lower", "AU12"), ("upper", "AU2")):
        crops, upper, lower, _ = _posed_faces(region, dm.spec, 8, seed=5)
        probabilities = predictor.predict_aligned(crops)[:, AU_INDEX[target[2:]]]
        assert probabilities.mean() > 0.5, f"the model did not learn {target}: {probabilities.round(2)}"
        explanation = explain(predictor, crops, target)
        assert explanation.method == "grad-cam" and explanation.targets == [target] * 8
        assert np.allclose(explanation.maps.sum((1, 2)), 1, atol=1e-4)
        inside = upper if region == "upper" else lower
        masses[region] = np.mean([region_mass(m, r) for m, r in zip(explanation.maps, inside)])
        centres[region] = np.mean([(m * np.arange(dm.spec.size)[:, None]).sum() for m in explanation.maps])
    print(f"mass in region: {masses}; map centre rows (of {dm.spec.size}): {centres}")
    assert masses["lower"] > 0.5 and masses["upper"] > 0.5
    assert centres["lower"] - centres["upper"] > 0.25 * dm.spec.size


@pytest.mark.slow
@pytest.mark.xdist_group("single-region")  # one worker makes the faces for both
def test_attention_rollout_follows_the_active_region(single_region_ckplus, tmp_path):
    """The landmark-patch transformer trained from scratch (Trainer.fit) on the same faces, its
    patches cut at each face's own landmarks (the renderer's, which CK+'s files carry, in training
    and in the explanation): its attention rollout (one map whatever the output) on AU1+2-only faces
    lies mostly above the eyes, and on AU12-only faces its centre is lower down the face. Measured
    over seeds 1-3 at 64 px and 30 epochs: brow faces 0.54-0.74 of the mass above the eyes, the
    centre 3.0-7.5 rows (of 64) lower on mouth faces; the mouth faces' mass below the nose 0.31-0.39:
    AU12 is not learnt here (mean probability about 0.5 on those faces), AU2 is."""
    from datamodules import CKPlusDataModule
    from facslab.explain import explain, region_mass
    from facslab.predictor import AUPredictor
    from facslab.training import TrainerConfig, build_model, fit

    torch.manual_seed(1)
    dm = CKPlusDataModule(str(single_region_ckplus), batch_size=16, cache_dir=str(tmp_path / "cache"),
                          preprocess_workers=0, progress=False, image_size=64, fold=0, landmarks="dataset")
    dm.setup("fit")
    model = build_model(dict(backbone="landmark_patches_25", unfrozen_blocks=-1, hidden_size=32, lr=1e-3), dm)
    predictor = AUPredictor(fit(model, dm, TrainerConfig(max_epochs=30, patience=30, progress=False)).model, dm.spec)
    centres, masses, au2 = {}, {}, {}
    for region, target in (("lower", "AU12"), ("upper", "AU2")):
        crops, upper, lower, landmarks = _posed_faces(region, dm.spec, 8, seed=5)
        explanation = explain(predictor, crops, target, landmarks)
        assert explanation.method == "attention rollout" and np.allclose(explanation.maps.sum((1, 2)), 1, atol=1e-4)
        masses[region] = np.mean([region_mass(m, r) for m, r in zip(explanation.maps, upper if region == "upper" else lower)])
        centres[region] = np.mean([(m * np.arange(dm.spec.size)[:, None]).sum() for m in explanation.maps])
        au2[region] = predictor.predict_aligned(crops, landmarks)[:, AU_INDEX["2"]].mean()
    print(f"rollout mass in region: {masses}; map centre rows (of {dm.spec.size}): {centres}; AU2: {au2}")
    assert au2["upper"] > 0.5 > au2["lower"]  # AU1+2 was learnt
    assert masses["upper"] > 0.5
    assert centres["lower"] - centres["upper"] > 0.04 * dm.spec.size


def test_explain_writes_an_overlay_and_a_map_per_face_and_refuses_what_it_cannot_use(emotion_model_dir, astronaut,
                                                                                        tmp_path, capsys):
    """The CLI (in process): the real FER-2013 port (Grad-CAM) on the astronaut; a missing file gets
    one line and exit status 2 while the readable image is still explained; a misspelt output is refused."""
    from facslab.cli import main

    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    out = tmp_path / "out"
    model = ["--model", str(emotion_model_dir), "--out", str(out)]
    assert main(["explain", str(image), str(tmp_path / "missing.png"), *model, "--target", "sad"]) == 2
    said = capsys.readouterr()
    assert said.err.strip().splitlines() == [f"facslab explain: error: {tmp_path / 'missing.png'}: file not found"]
    assert "grad-cam of sad" in said.out
    overlay = np.asarray(Image.open(out / "astronaut_face0_sad.png"))
    saliency = np.load(out / "astronaut_face0_sad.npy")
    assert overlay.shape[:2] == saliency.shape and saliency.min() >= 0 and saliency.sum() == pytest.approx(1, abs=1e-4)
    assert main(["explain", str(image), *model]) == 0
    assert "grad-cam of happy" in capsys.readouterr().out  # the face's own answer by default
    assert not np.allclose(np.load(out / "astronaut_face0_happy.npy"), saliency, atol=1e-4)
    assert main(["explain", str(image), *model, "--target", "AU12"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'AU12' is not an output of this emotion model" in err[0]

    from facslab.predictor import TemporalAUPredictor
    from lightning_modules.temporal import TemporalAUDetector

    TemporalAUPredictor(TemporalAUDetector(window=2, width=4, image_size=32)).save(tmp_path / "temporal", onnx=False)
    assert main(["explain", str(image), "--model", str(tmp_path / "temporal"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "explanations take single-frame models" in err[0]


@pytest.mark.slow
def test_a_vit_model_gets_attention_rollout_and_its_last_layers_heads(astronaut, tmp_path, cli):
    """ViT: rollout (one map whatever the output) and the last layer's class-token attention per head."""
    from facslab.analysis import FaceAnalyzer
    from facslab.explain import explain
    from facslab.predictor import AUPredictor
    from lightning_modules.au_detector import AUDetector

    torch.manual_seed(0)
    AUPredictor(AUDetector("vit_b_16", unfrozen_blocks=0, hidden_size=16, image_size=64)).save(tmp_path / "vit")
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    done = cli("explain", str(image), "--model", str(tmp_path / "vit"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    heads = np.asarray(Image.open(tmp_path / "out" / "astronaut_face0_attention_heads.png"))
    assert heads.shape == (64, 12 * 64, 3)
    from facslab.predictor import TaskPredictor

    predictor = TaskPredictor.load(tmp_path / "vit", runtime="torch")
    crop = FaceAnalyzer([predictor]).analyze(astronaut, keep_crops=True)[0].crop
    shifted = np.roll(crop, 16, axis=0)
    explanation = explain(predictor, np.stack([crop, shifted]))
    assert explanation.method == "attention rollout" and explanation.heads.shape == (2, 12, 64, 64)
    assert np.allclose(np.load(tmp_path / "out" / "astronaut_face0_attention.npy"), explanation.maps[0], atol=1e-5)
    # a map that ignores its input fails (an untrained ViT's rollout is near uniform: 1/4096 a pixel)
    assert np.abs(explanation.maps[0] - explanation.maps[1]).max() > 0.02 * explanation.maps[0].mean()


@pytest.mark.slow
def test_the_landmark_patch_transformer_is_a_backbone_the_apps_and_onnx_take_as_any_other(astronaut, tmp_path, cli):
    """An AU model on the landmark-patch transformer: saved with its ONNX export (parity checked),
    run by ``facslab emoji`` on ONNX Runtime, and explained per face part by ``facslab explain``."""
    import json

    from facslab.predictor import AUPredictor, TaskPredictor
    from lightning_modules.au_detector import AUDetector
    from lightning_modules.landmark_patches import PART_POINTS

    torch.manual_seed(0)
    model = AUDetector("landmark_patches_25", unfrozen_blocks=-1, hidden_size=16, image_size=64)
    AUPredictor(model).save(tmp_path / "lpt")
    saved = json.loads((tmp_path / "lpt" / "config.json").read_text())
    assert saved["onnx"]["max_abs_logit_difference"] <= saved["onnx"]["tolerance"]
    assert TaskPredictor.load(tmp_path / "lpt").runtime == "onnx"
    image = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(image)
    emoji = cli("emoji", str(image), "--model", str(tmp_path / "lpt"), "--json")
    assert emoji.returncode == 0, emoji.stderr[-2000:]
    assert len(json.loads(emoji.stdout)) == 1
    done = cli("explain", str(image), "--model", str(tmp_path / "lpt"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout.split("attention rollout on ")[1].split(" (")[0]  # "mouth_centre 0.10, nose 0.09, ..."
    shares = {part: float(share) for part, share in (item.split() for item in said.split(", "))}
    assert len(shares) == 3 and set(shares) <= set(PART_POINTS) and 0 < sum(shares.values()) <= 1
    heads = np.asarray(Image.open(tmp_path / "out" / "astronaut_face0_attention_heads.png"))
    assert heads.shape == (64, 4 * 64, 3)


def test_each_landmark_patch_is_cut_and_mapped_at_each_faces_own_part():
    """Two faces with their own landmarks (the second's parts 9 px right and 5 px lower): a bright
    pixel at a part's place is that face's patch centre, and the part's weight alone maps to a
    square centred at the place of that face's part (the chin's half below the crop is cut off)."""
    from lightning_modules.landmark_patches import PART_POINTS, landmark_patch_transformer

    size = 112
    embedding, _ = landmark_patch_transformer(size)
    p = embedding.patch_size
    centre = p // 2 - 1 if p % 2 == 0 else p // 2  # the patch pixel at the part's place
    rows, columns = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    first = rng.uniform(0.25, 0.75, (68, 2)) * size
    for part, points in PART_POINTS.items():  # a part's place: the mean of its points
        first[list(points)] = rng.uniform(0.2, 0.8, 2) * size
    for k, part in enumerate(embedding.parts):
        places = []
        for shift in ((0, 0), (9, 5)):
            x, y = (int(v) for v in first[PART_POINTS[part][0]] + shift)
            places.append((x, y))
        landmarks = torch.tensor(np.stack([first, first + (9, 5)]), dtype=torch.float32)
        # pixel centres lie at +0.5 (grid_sample's convention); an even patch is centred between pixels
        landmarks = landmarks.floor() + (0.5 if p % 2 == 0 else 0.0)
        image = torch.zeros(2, 3, size, size)
        for face, (x, y) in enumerate(places):
            image[face, :, y, x] = 1.0
        patches = embedding.patches(image, landmarks)
        weights = torch.zeros(2, len(embedding.parts))
        weights[:, k] = 1.0
        painted = embedding.token_map(weights, landmarks).numpy()
        for face, (x, y) in enumerate(places):
            patch = patches[face, k, 0]  # (a part's place is a mean: exact to float rounding)
            assert patch[centre, centre] > 1 - 1e-4 and abs(float(patch.sum()) - 1) < 1e-4, (part, face)
            assert abs((painted[face] * columns).sum() / painted[face].sum() - x) <= 1.0, (part, face)
            assert abs((painted[face] * rows).sum() / painted[face].sum() - y) <= 1.0, (part, face)


def test_rollout_is_the_class_rows_of_the_residual_attention_multiplied_through_the_layers():
    """Against the attention each layer gives when asked directly: two layers, four heads."""
    from facslab.explain import attention_rollout

    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = torch.nn.MultiheadAttention(8, 4, batch_first=True)

        def forward(self, x):
            return x + self.attention(x, x, x, need_weights=False)[0]

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Sequential(Block(), Block())

        def forward(self, x):
            return self.backbone(x)

    model, x = Toy().eval(), torch.randn(3, 5, 8)
    rollout, heads = attention_rollout(model, x)
    expected, hidden = torch.eye(5).expand(3, 5, 5), x
    with torch.no_grad():
        for block in model.backbone:
            w = block.attention(hidden, hidden, hidden, average_attn_weights=False)[1]
            a = 0.5 * w.mean(1) + 0.5 * torch.eye(5)
            expected = (a / a.sum(-1, keepdim=True)) @ expected
            hidden = block(hidden)
    assert torch.allclose(rollout, expected[:, 0, 1:], atol=1e-6)
    assert torch.allclose(heads, w[:, :, 0, 1:], atol=1e-6)  # the last layer's class row per head
