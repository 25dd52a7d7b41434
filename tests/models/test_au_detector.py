"""The AU detector: backbones, freezing, head, loss and the thresholds/metrics it is judged by."""

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from facslab.evaluation import choose_thresholds, mean_pr_auc, per_au_metrics
from lightning_modules.au_detector import AUDetector
from lightning_modules.backbones import build_backbone


@pytest.fixture(scope="module")
def tiny_ckplus(ckplus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return dict(root=str(ckplus[0]), batch_size=8, cache_dir=str(cache), preprocess_workers=0, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, unfrozen, size", [("resnet18", 0, 32), ("resnet18", 1, 32), ("resnet18", 2, 32),
                                                      ("alexnet", 1, 64), ("vgg11_bn", 1, 32), ("vgg11_bn", 0, 32),
                                                      ("googlenet", 1, 32), ("vit_b_16", 1, 32), ("mobilenet_v2", 2, 32),
                                                      ("landmark_patches_25", 2, 32)])
def test_frozen_blocks_stay_bit_identical_through_trainer_fit(tiny_ckplus, backbone, unfrozen, size):
    """Through Lightning's own loop (no mode switched by hand): frozen parameters and frozen
    BatchNorm statistics do not move at all, trainable ones do."""
    from datamodules import CKPlusDataModule
    from facslab.training import TrainerConfig, build_model, fit

    torch.manual_seed(0)
    dm = CKPlusDataModule(**tiny_ckplus, image_size=size, fold=0)
    dm.setup("fit")
    model = build_model(dict(backbone=backbone, unfrozen_blocks=unfrozen, hidden_size=16, lr=1e-2), dm)
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    fit(model, dm, TrainerConfig(max_epochs=2, patience=5, progress=False))
    frozen = {f"backbone.{n}" for n, p in model.backbone.named_parameters() if not p.requires_grad}
    frozen_prefixes = {n.rsplit(".", 1)[0] for n in frozen}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("head.") for n in trainable)
    assert frozen, "every case here leaves blocks frozen"
    after = model.state_dict()
    moved_buffers = 0
    for name, value in after.items():
        owner = name.rsplit(".", 1)[0]
        if name in frozen or owner in frozen_prefixes:  # frozen weights and their BN running stats
            assert torch.equal(value, before[name]), f"frozen {name} changed during Trainer.fit"
        elif name in trainable and name.endswith("weight"):
            assert not torch.equal(value, before[name]), f"{name} did not train"
        elif "running_mean" in name:
            moved_buffers += not torch.equal(value, before[name])
    assert moved_buffers > 0 or not any("running_mean" in n and n.rsplit(".", 1)[0] not in frozen_prefixes
                                        for n in after)  # trainable BatchNorm does update
    optimizer = model.configure_optimizers()
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(trainable)


def test_unfrozen_blocks_count_from_the_output_side():
    def trainable(model, prefix):
        return any(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))

    one = AUDetector("resnet18", unfrozen_blocks=1)
    assert trainable(one, "backbone.layer4") and not trainable(one, "backbone.layer3")
    two = AUDetector("resnet18", unfrozen_blocks=2)
    assert trainable(two, "backbone.layer3") and not trainable(two, "backbone.layer2")
    none = AUDetector("resnet18", unfrozen_blocks=0)
    assert not any(p.requires_grad for n, p in none.named_parameters() if n.startswith("backbone"))
    vgg = AUDetector("vgg11", unfrozen_blocks=1)
    assert trainable(vgg, "backbone.classifier") and trainable(vgg, "backbone.features.18")
    assert not trainable(vgg, "backbone.features.13")
    with pytest.raises(ValueError, match="unfrozen_blocks"):
        AUDetector("resnet18", unfrozen_blocks=6)


def test_head_shapes_and_backbone_choices():
    assert build_backbone("resnet18").features == 512
    assert build_backbone("resnet34").features == 512
    assert build_backbone("alexnet").features == 1000
    model = AUDetector("resnet18", hidden_size=64, image_size=64)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 18)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("lenet")


def test_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_backbone("resnet18", weights="IMAGENET1K_V1")
    model = build_backbone("resnet18")
    torch.save(model.trunk.state_dict(), tmp_path / "r18.pt")
    loaded = build_backbone("resnet18", weights=str(tmp_path / "r18.pt"))
    assert torch.equal(loaded.trunk.conv1.weight, model.trunk.conv1.weight)


def test_f1_thresholds_beat_fixed_ones_on_the_data_they_were_chosen_on():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 18)) < 0.3).astype(float)
    probs = np.clip(0.15 + 0.25 * labels + rng.normal(0, 0.1, labels.shape), 0, 1)  # all below 0.5
    f1 = choose_thresholds(probs, labels, "f1")
    fixed = choose_thresholds(probs, labels, "fixed")
    assert (fixed == 0.5).all() and (f1 < 0.5).all()
    table_f1 = per_au_metrics(probs, labels, f1)
    table_fixed = per_au_metrics(probs, labels, fixed)
    assert table_f1.iloc[-1]["f1"] > table_fixed.iloc[-1]["f1"]
    assert table_f1.iloc[-1]["au"] == "mean" and len(table_f1) == 19
    assert table_f1.iloc[-1]["pr_auc"] == pytest.approx(mean_pr_auc(probs, labels))
    with pytest.raises(ValueError, match="threshold policy"):
        choose_thresholds(probs, labels, "youden")


def test_initial_weights_fit_another_head_size_but_not_another_backbone(tmp_path):
    from facslab.training import load_weights

    torch.manual_seed(0)
    source = AUDetector("resnet18", hidden_size=256, image_size=32)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    target = AUDetector("resnet18", hidden_size=128, image_size=32)
    load_weights(target, str(tmp_path / "model.pt"))
    assert torch.equal(target.backbone.layer4[0].conv1.weight, source.backbone.layer4[0].conv1.weight)
    assert target.head.net[1].weight.shape == (128, 512)  # the head of another size starts fresh
    with pytest.raises(ValueError, match="do not fit backbone alexnet"):
        load_weights(AUDetector("alexnet", image_size=64), str(tmp_path / "model.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("backbone, unfrozen, size", [("resnet18", 0, 32), ("resnet18", 1, 32), ("alexnet", 1, 64),
                                                      ("vgg11_bn", 2, 32)])
def test_cached_frozen_features_give_the_same_logits_as_the_full_model(tiny_ckplus, backbone, unfrozen, size):
    from datamodules import CKPlusDataModule
    from datamodules.features import cached_features
    from facslab.training import TrainerConfig, build_model, fit

    def trained(feature_cache):
        torch.manual_seed(0)
        dm = CKPlusDataModule(**tiny_ckplus, image_size=size, fold=0, augment=False)
        dm.setup("fit")
        model = build_model(dict(backbone=backbone, unfrozen_blocks=unfrozen, hidden_size=16, lr=1e-3), dm)
        fit(model, dm, TrainerConfig(max_epochs=2, patience=5, progress=False, feature_cache=feature_cache))
        return model.eval(), dm

    model, dm = trained(feature_cache=True)
    positions = dm.positions("val")
    features = cached_features(model, dm, progress=False)  # the entry fit built, read back
    crops = np.asarray(dm.cached.crops[positions], np.float32)
    images = torch.from_numpy(((crops - np.float32(dm.mean) * 255) / (np.float32(dm.std) * 255)).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        from_cache = model.from_frozen(torch.from_numpy(np.array(features[positions])))
        full = model(images)
    assert torch.allclose(from_cache, full, atol=1e-4), (from_cache - full).abs().max()
    reference, _ = trained(feature_cache=False)  # the same training without the cache
    # equal up to float drift: the prefix ran in batches of another size, and a trainable BatchNorm
    # over a last batch of 2 at 1x1 resolution can magnify it in a single logit, so compare the
    # training curves and the mean probability rather than the largest logit difference (Adam's
    # normalised steps turn 1e-6 gradient differences into visible weight differences)
    for cached_epoch, plain_epoch in zip(model.history, reference.history, strict=True):
        assert cached_epoch["train_loss"] == pytest.approx(plain_epoch["train_loss"], abs=1e-2)
        assert cached_epoch["val_loss"] == pytest.approx(plain_epoch["val_loss"], abs=1e-2)
    with torch.no_grad():
        drift = (torch.sigmoid(reference(images)) - torch.sigmoid(full)).abs().mean()
    assert drift < 5e-2, drift


def test_the_feature_cache_key_changes_with_the_code_that_makes_the_cut_and_the_library_versions(
        tiny_ckplus, tmp_path, monkeypatch):
    """The key ``cached_features`` stores under follows the code that decides which stages are
    frozen (``lightning_modules/base.py``, ``freezing.py``) and torchvision's version, not only
    the backbones' file and torch's version."""
    import torchvision

    import lightning_modules.base
    import lightning_modules.freezing
    from datamodules import CKPlusDataModule
    from datamodules.features import feature_key
    from facslab.training import build_model

    dm = CKPlusDataModule(**tiny_ckplus, image_size=32, fold=0, augment=False)
    dm.setup("fit")
    model = build_model(dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=16), dm)
    rows = dm.positions("train")
    before = feature_key(model, dm, rows)
    assert feature_key(model, dm, rows) == before
    keys = set()
    for module in (lightning_modules.base, lightning_modules.freezing):
        edited = tmp_path / Path(module.__file__).name
        edited.write_bytes(Path(module.__file__).read_bytes() + b"\n# edited\n")
        with monkeypatch.context() as patch:
            patch.setattr(module, "__file__", str(edited))
            keys.add(feature_key(model, dm, rows))
    with monkeypatch.context() as patch:
        patch.setattr(torchvision, "__version__", torchvision.__version__ + "+other")
        keys.add(feature_key(model, dm, rows))
    assert len(keys) == 3 and before not in keys


def test_the_feature_cache_refuses_augmented_training(tiny_ckplus):
    from datamodules import CKPlusDataModule
    from facslab.training import TrainerConfig, build_model, fit

    dm = CKPlusDataModule(**tiny_ckplus, image_size=32, fold=0)  # augment defaults to on
    dm.setup("fit")
    model = build_model(dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=16), dm)
    with pytest.raises(ValueError, match="feature_cache needs the datamodule's augment: false"):
        fit(model, dm, TrainerConfig(max_epochs=1, progress=False, feature_cache=True))


def test_mixed_face_halves_reach_training_steps_only_with_labels_following_each_half(tiny_ckplus):
    """Through Trainer.fit: every training face seen is a known face's upper half over a known
    face's lower half, some of them two different faces, with the upper-face AUs of the first, the
    lower-face AUs of the second and AU9 only where both agree; validation faces are whole."""
    from lightning.pytorch.callbacks import Callback

    from datamodules import CKPlusDataModule
    from facslab.au import FACE_HALF_AUS
    from facslab.training import TrainerConfig, build_model, fit

    class Seen(Callback):
        def __init__(self):
            self.train, self.val = [], []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.train.append([t.detach().cpu().clone() for t in batch])

        def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
            self.val.append([t.detach().cpu().clone() for t in batch])

    torch.manual_seed(0)
    dm = CKPlusDataModule(**tiny_ckplus, image_size=32, fold=0, augment=False, mix_halves=0.5)
    dm.setup("fit")
    row = dm.lower_face_row()
    assert 0 < row < 32
    faces = {role: [dm.dataset(role)[k] for k in range(len(dm.dataset(role)))] for role in ("train", "val")}
    images = {role: torch.stack([image for image, _ in faces[role]]) for role in faces}
    labels = {role: torch.stack([label for _, label in faces[role]]) for role in faces}

    def whose(part: torch.Tensor, role: str, rows: slice) -> int:
        matches = [k for k in range(len(images[role])) if torch.equal(images[role][k, :, rows], part)]
        assert matches, f"a {role} image part that is no {role} face's"
        return matches[0]

    seen = Seen()
    model = build_model(dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=16, lr=1e-3), dm)
    fit(model, dm, TrainerConfig(max_epochs=2, patience=5, progress=False), callbacks=[seen])
    lower, upper, both = (list(FACE_HALF_AUS[h]) for h in ("lower", "upper", "both"))
    mixed = 0
    for batch_images, batch_labels in (pair for batch in seen.train for pair in zip(*batch)):
        top = whose(batch_images[:, :row], "train", slice(None, row))
        bottom = whose(batch_images[:, row:], "train", slice(row, None))
        assert torch.equal(batch_labels[upper], labels["train"][top, upper])
        assert torch.equal(batch_labels[lower], labels["train"][bottom, lower])
        agree = labels["train"][top, both] == labels["train"][bottom, both]
        assert torch.equal(batch_labels[both][agree], labels["train"][top, both][agree])
        assert torch.isnan(batch_labels[both][~agree]).all()
        mixed += top != bottom
    seen_count = sum(len(batch[0]) for batch in seen.train)
    assert 0.25 * seen_count < mixed < 0.75 * seen_count, (mixed, seen_count)  # about half of them
    for batch_images, batch_labels in (pair for batch in seen.val for pair in zip(*batch)):
        k = whose(batch_images, "val", slice(None))
        assert torch.equal(batch_labels, labels["val"][k])


def test_the_feature_cache_refuses_mixed_face_halves(tiny_ckplus):
    from datamodules import CKPlusDataModule
    from facslab.training import TrainerConfig, build_model, fit

    dm = CKPlusDataModule(**tiny_ckplus, image_size=32, fold=0, augment=False, mix_halves=0.5)
    dm.setup("fit")
    model = build_model(dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=16), dm)
    with pytest.raises(ValueError, match="feature_cache needs the datamodule's mix_halves: 0"):
        fit(model, dm, TrainerConfig(max_epochs=1, progress=False, feature_cache=True))


#: one backbone of every family in ``backbones.FAMILIES`` (mini-Xception, whose trunk ends in a
#: feature map, through the emotion task that takes it)
FAMILY_EXAMPLES = ["resnet18", "vgg11_bn", "alexnet", "densenet121", "mobilenet_v3_small", "convnext_tiny",
                   "shufflenet_v2_x1_0", "googlenet", "vit_b_16", "mini_xception", "landmark_patches_25"]


def _trainable_with_and_without_cache(model):
    """(names that train in a plain fit, names that train on cached features: the stages after
    the cached prefix and the head)."""
    plain = {n for n, p in model.named_parameters() if p.requires_grad}
    owners = {id(p): n for n, p in model.named_parameters()}
    after_cut = {owners[id(p)] for stage in model._stages[model._prefix:] for p in stage.parameters()}
    return plain, after_cut | {f"head.{n}" for n, _ in model.head.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", FAMILY_EXAMPLES)
def test_unfrozen_blocks_mean_the_same_with_and_without_the_feature_cache(tiny_ckplus, fer2013, tmp_path, backbone):
    """k unfrozen blocks: the trainable parameters of a plain fit are exactly those a cached fit
    trains, for every family at k = 0, 1, 2 (a pooling LayerNorm, as in ConvNeXt and ViT, is on
    the frozen side at k = 0 in both), and one epoch through ``Trainer.fit`` gives the same
    validation loss with and without the cache, at one thread (as in a two-worker sweep).

    Not bit-identical: the cache runs the frozen stages in batches of 128, a fit in the loader's
    batches, and at one thread the convolution kernel picked per batch shape rounds differently
    (a few 1e-6 on DenseNet's features), which one epoch grew to 7e-5 on DenseNet-121's loss at
    k = 2 (measured; every other family equal to 1e-6). At two threads all were equal."""
    from datamodules import CKPlusDataModule, FER2013DataModule
    from facslab.config import TrainConfig
    from facslab.tasks import get_task
    from facslab.training import TrainerConfig, fit

    torch.set_num_threads(1)  # the same kernels whatever the machine's cores (conftest restores the count)
    for unfrozen in (0, 1, 2):
        losses = []
        for cache in (False, True):
            torch.manual_seed(0)
            args = dict(backbone=backbone, unfrozen_blocks=unfrozen, lr=1e-4, dropout=0.0)
            if backbone == "mini_xception":
                dm = FER2013DataModule(str(fer2013), cache_dir=str(tmp_path / "aligned"), progress=False, batch_size=32,
                                       augment=False)
                task = get_task("emotion")
            else:
                dm = CKPlusDataModule(**tiny_ckplus, image_size=64 if backbone == "alexnet" else 32, fold=0,
                                      augment=False)
                task, args["hidden_size"] = get_task("au"), 16
            dm.setup("fit")
            model = task.build_model(args, dm, TrainConfig(init_from=None), None)
            plain, cached = _trainable_with_and_without_cache(model)
            assert plain == cached, (unfrozen, sorted(plain ^ cached)[:5])
            if unfrozen == 0:
                assert not any(n.startswith("backbone.") for n in plain), sorted(plain)[:5]
            result = fit(model, dm, TrainerConfig(max_epochs=1, patience=5, progress=False, feature_cache=cache))
            assert bool(model.frozen_stages()) == (unfrozen != -1)
            losses.append(result.history[-1]["val_loss"])
            large = sum(p.numel() for p in model.parameters()) > 50_000_000
            del model, result, dm
            if large:  # VGG, AlexNet, ViT-B: GBs a fit, with Adam's state (a collection: about 0.4 s)
                gc.collect()
        assert losses[0] == pytest.approx(losses[1], abs=1e-4), (backbone, unfrozen, losses)


def test_a_refit_for_fewer_epochs_keeps_the_one_cycle_schedule_of_its_folds(tiny_ckplus):
    """The registry refits for the folds' best epoch e: with a one-cycle schedule the learning rate
    at every step of those e epochs is the one the folds trained with, not a cycle squeezed into e."""
    from lightning.pytorch.callbacks import Callback

    from datamodules import CKPlusDataModule
    from facslab.training import TrainerConfig, build_model, fit

    class Rates(Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, module, batch, index):
            self.seen.append((trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"]))

    def rates(epochs):
        dm = CKPlusDataModule(**tiny_ckplus, image_size=32, fold=0)
        dm.setup("fit")
        model = build_model(dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=8, lr=1e-2,
                                 lr_schedule="onecycle"), dm)
        recorder = Rates()
        fit(model, dm, TrainerConfig(max_epochs=4, patience=4, progress=False), epochs=epochs, callbacks=[recorder])
        return recorder.seen

    folds, refit = rates(None), rates(2)
    assert {epoch for epoch, _ in refit} == {0, 1}
    assert refit == [(epoch, lr) for epoch, lr in folds if epoch < 2]
    assert refit[-1][1] > 0.5e-2, "at epoch 2 of 4 the cycle has not annealed yet"
