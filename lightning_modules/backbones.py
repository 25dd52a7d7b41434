"""torchvision backbones as (trunk, feature size, freezable blocks), one function per family.

Blocks are listed input to output; "the last N blocks" are the last N of the list. ResNet's are
the stem and ``layer1``..``layer4``, and its trunk ends in the pooled features (512 for
ResNet-18/34). VGG's and AlexNet's are the convolution groups between max-pools, and their trunk
keeps the 1000-d classifier output the report's head reads; the classifier, which sits after the
last group, trains whenever at least one block does.

What is frozen is a prefix of the trunk's stages, one definition for training and for the
feature cache (``Backbone.frozen_stages``): with no block training, every stage is frozen,
pooling included, so a LayerNorm in a pooling tail (ConvNeXt, ViT) freezes as it is cached.

Weights are never downloaded: ``weights`` is a local state-dict file, or a torchvision weights
name ("DEFAULT", "IMAGENET1K_V1") that must already be in the TORCH_HOME cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from facslab.errors import ConfigError


@dataclass
class Backbone:
    trunk: nn.Module
    features: int
    blocks: list[nn.Module]  # input to output
    #: ``trunk`` as a chain: one stage per block (with its parameter-free layers), then the
    #: pooling (and VGG's classifier); running them in order equals ``trunk(x)``, so a frozen
    #: prefix of stages can be computed once and the rest run on its output
    stages: list[nn.Module]
    #: what the trunk reads: the image, or ``(image, landmarks)`` (the crop's 68 points, pixels)
    #: for a model that cuts face parts around each face's own landmarks
    inputs: tuple[str, ...] = ("image",)

    def prefix_length(self, unfrozen_blocks: int) -> int:
        """How many stages are frozen: every one, pooling included, when no block trains; with
        ``k`` blocks training, the stages of the other blocks. ``-1`` trains every block."""
        if unfrozen_blocks == -1:
            unfrozen_blocks = len(self.blocks)
        if not 0 <= unfrozen_blocks <= len(self.blocks):
            raise ConfigError(f"unfrozen_blocks must be in 0..{len(self.blocks)}, not {unfrozen_blocks}")
        return len(self.stages) if unfrozen_blocks == 0 else len(self.blocks) - unfrozen_blocks

    def frozen_stages(self, unfrozen_blocks: int) -> list[nn.Module]:
        """The stages that do not train, input side first: what training freezes is exactly what
        the feature cache computes once."""
        return self.stages[:self.prefix_length(unfrozen_blocks)]


def _load_weights(model: nn.Module, name: str, weights: str | None) -> None:
    if weights is None:
        return
    path = Path(weights)
    if path.suffix in (".pt", ".pth", ".bin") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        missing, unexpected = model.load_state_dict(state, strict=False)
        if len(missing) > len(state) // 2:
            raise ValueError(f"{path}: does not look like {name} weights ({len(missing)} missing keys)")
        return
    enum = torchvision.models.get_model_weights(name)[weights]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if not cached.is_file():
        raise FileNotFoundError(
            f"{name} weights {weights} are not in the TORCH_HOME cache ({cached}); facslab never downloads "
            "weights: copy the file there, pass a local weights file, or use weights=None (random init)"
        )
    model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))


def resnet(name: str = "resnet18", weights: str | None = None) -> Backbone:
    model = torchvision.models.get_model(name, weights=None)
    _load_weights(model, name, weights)
    features = model.fc.in_features
    model.fc = nn.Identity()
    stem = nn.ModuleList([model.conv1, model.bn1])
    stages = [nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool), model.layer1, model.layer2,
              model.layer3, model.layer4, nn.Sequential(model.avgpool, nn.Flatten(1))]
    return Backbone(model, features, [stem, model.layer1, model.layer2, model.layer3, model.layer4], stages)


def _conv_groups(features: nn.Sequential) -> list[nn.Module]:
    groups, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            groups.append(nn.ModuleList(current))
            current = []
    if current:
        groups.append(nn.ModuleList(current))
    return groups


def vgg(name: str = "vgg16", weights: str | None = None) -> Backbone:
    model = torchvision.models.get_model(name, weights=None)
    _load_weights(model, name, weights)
    groups = _conv_groups(model.features)
    stages = [nn.Sequential(*group) for group in groups] + [nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)]
    return Backbone(model, model.classifier[-1].out_features, groups, stages)


def alexnet(name: str = "alexnet", weights: str | None = None) -> Backbone:
    return vgg(name, weights)  # same structure: features, avgpool, classifier


def _staged(parts: list[nn.Module]) -> list[nn.Module]:
    """Consecutive layers grouped so that every group starts with a layer that has parameters
    (parameter-free layers such as ReLU or pooling join the group before them)."""
    groups: list[list[nn.Module]] = []
    for layer in parts:
        if groups and not any(True for _ in layer.parameters()):
            groups[-1].append(layer)
        else:
            groups.append([layer])
    return [group[0] if len(group) == 1 else nn.Sequential(*group) for group in groups]


def _chain(model: nn.Module, blocks: list[nn.Module], pooling: nn.Module, features: int) -> Backbone:
    """A trunk that is ``blocks`` then ``pooling``, each block a stage (the torchvision model's
    own modules, so weights loaded into ``model`` are the trunk's)."""
    stages = blocks + [pooling]
    return Backbone(nn.Sequential(*stages), features, list(blocks), stages)


def features_family(name: str, weights: str | None = None) -> Backbone:
    """Families whose torchvision model is ``features`` then pooling then ``classifier``:
    DenseNet, EfficientNet, MobileNet-V2/V3 and ConvNeXt. Their blocks are the children of
    ``features``; the classifier is dropped (the task brings its head)."""
    model = torchvision.models.get_model(name, weights=None)
    _load_weights(model, name, weights)
    blocks = _staged(list(model.features))
    if name.startswith("densenet"):
        pooling = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        features = model.classifier.in_features
    elif name.startswith("convnext"):  # its classifier starts with a LayerNorm over the pooled map
        pooling = nn.Sequential(model.avgpool, model.classifier[0], nn.Flatten(1))
        features = model.classifier[-1].in_features
    else:
        pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        features = next(m for m in model.classifier if isinstance(m, nn.Linear)).in_features
    return _chain(model, blocks, pooling, features)


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def shufflenet(name: str = "shufflenet_v2_x1_0", weights: str | None = None) -> Backbone:
    model = torchvision.models.get_model(name, weights=None)
    _load_weights(model, name, weights)
    blocks = [nn.Sequential(model.conv1, model.maxpool), model.stage2, model.stage3, model.stage4, model.conv5]
    return _chain(model, blocks, _SpatialMean(), model.fc.in_features)


def mini_xception(name: str = "mini_xception", weights: str | None = None, in_channels: int = 1) -> Backbone:
    """Arriaga et al.'s mini-Xception trunk: stem and four residual modules (the blocks); its
    output is the last feature map, which the task's convolutional head reads. ``weights``: a
    local state-dict file of the trunk (the ported FER-2013 weights load through the task)."""
    from lightning_modules.mini_xception import MiniXceptionTrunk

    trunk = MiniXceptionTrunk(in_channels)
    _load_weights(trunk, name, weights)
    blocks = list(trunk)
    return Backbone(trunk, trunk.out_channels, blocks, list(blocks))


def googlenet(name: str = "googlenet", weights: str | None = None) -> Backbone:
    """GoogLeNet (Inception v1) without its auxiliary classifiers; blocks: the stem convolutions
    and each inception module (torchvision's input transform applies only to its own ImageNet
    weights, with which facslab's normalisation is used instead)."""
    model = torchvision.models.get_model(name, weights=None, aux_logits=False, init_weights=True)
    _load_weights(model, name, weights)
    parts = [model.conv1, model.maxpool1, model.conv2, model.conv3, model.maxpool2, model.inception3a,
             model.inception3b, model.maxpool3, model.inception4a, model.inception4b, model.inception4c,
             model.inception4d, model.inception4e, model.maxpool4, model.inception5a, model.inception5b]
    return _chain(model, _staged(parts), nn.Sequential(model.avgpool, nn.Flatten(1)), model.fc.in_features)


class _VitEmbedding(nn.Module):
    """ViT's patch projection, class token and position embedding (the first block)."""

    def __init__(self, model):
        super().__init__()
        self.conv_proj, self.class_token = model.conv_proj, model.class_token
        self.pos_embedding = model.encoder.pos_embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)  # (n, hidden, rows, columns) of 16-px patches
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embedding

    def token_map(self, weights: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """(N, rows, columns) grid of per-patch weights (N, patches), for saliency overlays (the
        grid is the same for every face: ``landmarks`` are not needed)."""
        side = int(round(weights.shape[1] ** 0.5))
        return weights.reshape(weights.shape[0], side, side)


class _ClassToken(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)[:, 0]


def vit(name: str = "vit_b_16", weights: str | None = None, image_size: int = 224) -> Backbone:
    """ViT-B/16 at the data's input size (ImageNet weights fit only at 224 px); blocks: the
    embedding and the 12 encoder layers; features: the final class token."""
    model = torchvision.models.get_model(name, weights=None, image_size=image_size)
    _load_weights(model, name, weights)
    embedding = _VitEmbedding(model)
    blocks = [embedding] + list(model.encoder.layers)
    stages = [nn.Sequential(embedding, model.encoder.dropout)] + list(model.encoder.layers)
    pooling = _ClassToken(model.encoder.ln)
    trunk = nn.Sequential(*stages, pooling)
    return Backbone(trunk, model.hidden_dim, blocks, stages + [pooling])


def landmark_patches(name: str = "landmark_patches_25", weights: str | None = None, in_channels: int = 3,
                     image_size: int = 112) -> Backbone:
    """The landmark-patch transformer (``lightning_modules.landmark_patches``), trained from scratch;
    the name's number is the patch side in percent of the crop. Blocks: the patch embedding and the
    4 encoder layers; features: the final class token (128)."""
    from lightning_modules.landmark_patches import landmark_patch_transformer

    embedding, encoder = landmark_patch_transformer(image_size, in_channels,
                                                    patch_fraction=int(name.rsplit("_", 1)[1]) / 100)
    pooling = _ClassToken(encoder.ln)
    blocks = [embedding] + list(encoder.layers)
    stages = [nn.Sequential(embedding, encoder.dropout)] + list(encoder.layers)
    trunk = nn.Sequential(*stages, pooling)
    _load_weights(trunk, name, weights)
    return Backbone(trunk, encoder.pos_embedding.shape[-1], blocks, stages + [pooling], inputs=("image", "landmarks"))


FAMILIES = {
    "resnet18": resnet, "resnet34": resnet, "resnet50": resnet, "resnext50_32x4d": resnet,
    "vgg11": vgg, "vgg11_bn": vgg, "vgg16": vgg, "vgg16_bn": vgg,
    "alexnet": alexnet,
    "densenet121": features_family, "efficientnet_b0": features_family, "mobilenet_v2": features_family,
    "mobilenet_v3_small": features_family, "mobilenet_v3_large": features_family, "convnext_tiny": features_family,
    "shufflenet_v2_x1_0": shufflenet,
    "googlenet": googlenet,
    "vit_b_16": vit,
    "mini_xception": mini_xception,
    "landmark_patches_20": landmark_patches, "landmark_patches_25": landmark_patches,
    "landmark_patches_33": landmark_patches,
}
#: Backbones whose trunk ends in a feature map (the task's head pools it), not a vector.
SPATIAL_OUTPUT = ("mini_xception",)


def build_backbone(name: str, weights: str | None = None, in_channels: int = 3, image_size: int = 224) -> Backbone:
    """``image_size`` matters to the transformers only (ViT's position embedding is sized for it,
    the landmark patches are cut at its pixels)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown backbone {name!r}; choose from {', '.join(FAMILIES)}")
    if name == "mini_xception":
        return mini_xception(name, weights, in_channels)
    if name.startswith("landmark_patches"):
        return landmark_patches(name, weights, in_channels, image_size)
    if in_channels != 3:
        raise ConfigError(f"{name} takes 3-channel input; use channels: 3 in the data (grey images are repeated)")
    if name.startswith("vit"):
        return vit(name, weights, image_size)
    return FAMILIES[name](name, weights)


def block_count(name: str) -> int:
    """How many freezable blocks a backbone has, without building its weights (meta device):
    configs check ``unfrozen_blocks`` against every backbone a sweep can use."""
    with torch.device("meta"):
        return len(build_backbone(name).blocks)


def freeze_all_but_last(backbone: Backbone, unfrozen_blocks: int) -> list[nn.Module]:
    """Switch off gradients of the trunk's frozen stages (``Backbone.frozen_stages``); returns
    them. Their BatchNorm statistics and eval mode are kept by
    ``lightning_modules.freezing.FrozenBlocks`` during training."""
    frozen = backbone.frozen_stages(unfrozen_blocks)
    backbone.trunk.requires_grad_(True)
    for module in frozen:
        module.requires_grad_(False)
    return frozen
