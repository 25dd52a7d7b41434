"""What a model looks at: a saliency map per aligned face, for any single-frame task model.

* Convolutional backbones (ResNet, VGG, DenseNet, mini-Xception and the other families): Grad-CAM
  (Selvaraju et al.) on the last stage whose feature map is fine enough (``MIN_MAP_SIDE``), by Captum's
  ``LayerGradCam`` for one output of the model (an AU, an emotion, valence or arousal).
* Transformers (ViT-B/16, the landmark-patch transformer): attention rollout (Abnar & Zuidema):
  every layer's head-averaged attention, with the residual path added, multiplied through the
  layers; the class token's row says how much each patch reaches the output. The last layer's
  per-head attention of the class token is kept beside it. Rollout does not depend on the output
  explained.

A map is (S, S) for an S-pixel crop, non-negative, and sums to 1, so "the mass in a region" is the
share of the map's attention that lies there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from facslab.badinput import BadInputError

METHODS = ("grad-cam", "attention rollout")


@dataclass
class Explanation:
    method: str  # one of METHODS
    targets: list[str]  # the output each map explains ("attention" for rollout, which explains no one output)
    maps: np.ndarray  # (N, S, S), each summing to 1
    heads: np.ndarray | None = None  # (N, heads, S, S): the last layer's class-token attention per head


def attention_layers(model: nn.Module) -> list[nn.MultiheadAttention]:
    """The model's self-attention modules, input side first (none in a convolutional network)."""
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


def method_of(predictor) -> str:
    if predictor.window:
        raise BadInputError(predictor.task, "explanations take single-frame models; this one reads a window of frames")
    return METHODS[1] if attention_layers(predictor.model.backbone) else METHODS[0]


def target_index(predictor, outputs: np.ndarray, target: str | None) -> int:
    """The output to explain: ``target`` by name, or the face's strongest output."""
    names = predictor.output_names()
    if target is None:
        return int(np.argmax(outputs[:len(names)]))
    spelt = {name.lower(): k for k, name in enumerate(names)}
    key = target.lower()
    if key not in spelt and f"au{key}" in spelt:  # "12" for "AU12"
        key = f"au{key}"
    if key not in spelt:
        raise BadInputError("--target", f"{target!r} is not an output of this {predictor.task} model; "
                                        f"choose from {', '.join(names)}")
    return spelt[key]


def _unit_maps(maps: torch.Tensor, size: int) -> np.ndarray:
    """(N, h, w) non-negative maps resized to the crop and normalised to sum 1 (a flat map when
    nothing is positive)."""
    maps = torch.nn.functional.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear",
                                           align_corners=False)[:, 0].clamp_min(0)
    total = maps.sum((1, 2), keepdim=True)
    flat = torch.full_like(maps, 1.0 / (size * size))
    return torch.where(total > 0, maps / total.clamp_min(1e-12), flat).detach().cpu().numpy()


#: Grad-CAM's layer: the last stage whose map has at least this many cells a side (ResNet's last
#: stage at ImageNet's 224 px, the setting Grad-CAM was made for); at small crops a coarser last
#: stage (2x2 at 64 px) cannot say where anything is
MIN_MAP_SIDE = 7


def _map_stage(model, x: torch.Tensor) -> nn.Module:
    """The last backbone stage whose output is a feature map at least ``MIN_MAP_SIDE`` a side (the
    finest one when none is)."""
    sides = {}
    hooks = [stage.register_forward_hook(lambda m, i, o, k=k: sides.__setitem__(k, min(o.shape[2:]) if o.dim() == 4 else 0))
             for k, stage in enumerate(model._stages)]
    try:
        with torch.no_grad():
            model.backbone(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [k for k, side in sides.items() if side > 0]
    if not spatial:
        raise BadInputError(model.hparams.get("backbone", "model"), "no stage of this backbone gives a feature map")
    fine = [k for k in spatial if sides[k] >= MIN_MAP_SIDE]
    return model._stages[fine[-1] if fine else max(spatial, key=lambda k: (sides[k], -k))]


def grad_cam(model, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    from captum.attr import LayerGradCam

    layer = _map_stage(model, x)
    with torch.enable_grad():
        cams = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    return cams[:, 0]


def attention_rollout(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(rollout, last layer's per-head class-token attention, grid side): class-token rows over the
    patch tokens; the backbone's attention modules are asked for their weights by a hook."""
    layers = attention_layers(model.backbone)
    weights: list[torch.Tensor] = []

    def ask(module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def keep(module, args, kwargs, output):
        weights.append(output[1].detach())

    hooks = [h for layer in layers for h in (layer.register_forward_pre_hook(ask, with_kwargs=True),
                                              layer.register_forward_hook(keep, with_kwargs=True))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    if len(weights) != len(layers):
        raise RuntimeError(f"{len(weights)} of {len(layers)} attention layers gave their weights")
    tokens = weights[0].shape[-1]
    rollout = torch.eye(tokens).expand(len(x), tokens, tokens)
    for w in weights:  # (N, heads, T, T)
        a = 0.5 * w.mean(1) + 0.5 * torch.eye(tokens)
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    side = int(round((tokens - 1) ** 0.5))
    if side * side != tokens - 1:
        raise BadInputError(model.hparams.get("backbone", "model"),
                            f"{tokens - 1} patch tokens do not form a square grid")
    cls = rollout[:, 0, 1:].reshape(len(x), side, side)
    heads = weights[-1][:, :, 0, 1:].reshape(len(x), -1, side, side)
    return cls, heads, side


def explain(predictor, crops: np.ndarray, target: str | None = None) -> Explanation:
    """Saliency maps of aligned RGB uint8 crops (N, S, S, 3) for one named output of the model
    (``target``; None: each face's strongest output)."""
    method = method_of(predictor)
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    size = predictor.alignment.size
    model = predictor.model
    x = torch.from_numpy(predictor._normalise(crops)).to(predictor.device)
    if method == "grad-cam":
        names = predictor.output_names()
        indices = [target_index(predictor, row, target) for row in predictor.predict_aligned(crops)]
        return Explanation(method, [names[k] for k in indices], _unit_maps(grad_cam(model, x, indices), size))
    cls, heads, side = attention_rollout(model, x)
    n, h = heads.shape[:2]
    return Explanation(method, ["attention"] * n, _unit_maps(cls, size),
                       _unit_maps(heads.reshape(n * h, side, side), size).reshape(n, h, size, size))


def region_mass(saliency: np.ndarray, mask: np.ndarray) -> float:
    """The share of a map's mass inside a boolean mask of the crop."""
    return float(saliency[mask].sum() / max(saliency.sum(), 1e-12))


def overlay(crop: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The map as a colour heat map (red: most) over the RGB crop."""
    scaled = np.uint8(255 * saliency / max(float(saliency.max()), 1e-12))
    heat = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    crop = crop if crop.shape[-1] == 3 else np.repeat(crop, 3, -1)
    return np.uint8(np.clip((1 - alpha) * crop.astype(np.float32) + alpha * heat, 0, 255))


def overlay_grid(predictor, crops: np.ndarray, target: str | None = None, title: str | None = None):
    """A figure of overlays on sample faces, each titled with the output it explains (what a
    registered model logs on its test faces)."""
    from facslab.plots import plt  # with the Agg backend

    explanation = explain(predictor, crops, target)
    n = len(crops)
    columns = min(n, 4)
    rows = -(-n // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(max(2.4 * columns, 4.8), 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (crop, saliency, name) in enumerate(zip(crops, explanation.maps, explanation.targets)):
        axes.flat[k].imshow(overlay(crop, saliency))
        axes.flat[k].set_title(name, fontsize=8)
    figure.suptitle(title or f"{explanation.method} of {predictor.outputs_name} on test faces", fontsize=10)
    figure.tight_layout()
    return figure
