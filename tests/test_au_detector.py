"""The AU detector: backbones, freezing, head, loss and the thresholds/metrics it is judged by."""

import numpy as np
import pytest
import torch

from facslab.evaluation import choose_thresholds, mean_pr_auc, per_au_metrics
from lightning_modules.au_detector import AUDetector
from lightning_modules.backbones import build_backbone


def step(model, images, labels):
    optimizer = model.configure_optimizers()
    model.train()
    optimizer.zero_grad()
    model.loss(model(images), labels).backward()
    optimizer.step()


@pytest.mark.parametrize("backbone, unfrozen", [("resnet18", 0), ("resnet18", 1), ("resnet18", 2), ("alexnet", 1),
                                                ("vgg11_bn", 1)])
def test_frozen_parameters_stay_and_trainable_ones_move(backbone, unfrozen):
    torch.manual_seed(0)
    model = AUDetector(backbone, unfrozen_blocks=unfrozen, image_size=64, lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers() if "running" in n}
    images, labels = torch.randn(4, 3, 64, 64), (torch.rand(4, 18) > 0.5).float()
    step(model, images, labels)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("head.") for n in trainable)
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        if name in trainable:
            assert changed or name.endswith("bias") and "bn" in name, f"{name} did not train"
        else:
            assert not changed, f"frozen {name} changed"
    # frozen BatchNorm stays in eval mode: its running statistics do not move
    frozen_bn = [n for n in buffers if n.rsplit(".", 1)[0] + ".weight" not in trainable]
    for name in frozen_bn:
        assert torch.equal(dict(model.named_buffers())[name], buffers[name]), f"{name} moved"
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
