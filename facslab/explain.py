"""What a model looks at: a saliency map per aligned face, for any single-frame task model.

* Convolutional backbones (ResNet, VGG, DenseNet, mini-Xception and the other families): Grad-CAM
  (Selvaraju et al.) on the last stage whose feature map is fine enough (``MIN_MAP_SIDE``), by Captum's
  ``LayerGradCam`` for one output of the model (an AU, an emotion, valence or arousal).
* Transformers (ViT-B/16, the landmark-patch transformer): attention rollout (Abnar & Zuidema):
  every layer's head-averaged attention, with the residual path added, multiplied through the
  layers; the class token's row says how much each patch reaches the output. The last layer's
  per-head attention of the class token is kept beside it. Rollout does not depend on the output
  explained. The embedding places the tokens in the image (``token_map``: ViT's grid, the landmark
  patches' squares), and the landmark-patch transformer's rollout is also a share per face part.

A map is (S, S) for an S-pixel crop, non-negative, and sums to 1, so "the mass in a region" is the
share of the map's attention that lies there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
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
    parts: tuple[str, ...] | None = None  # the landmark-patch transformer's face parts, one per token
    part_attention: np.ndarray | None = None  # (N, parts): the rollout's share of each part, summing to 1
    #: per face, whether the map found any positive evidence (Grad-CAM all zero: the map is flat and says so)
    evidence: list[bool] | None = None
    #: per face, whether the output explained is negative (valence -0.6) and the map shows what lowers it
    lowered: list[bool] | None = None


def attention_layers(model: nn.Module) -> list[nn.MultiheadAttention]:
    """The model's self-attention modules, input side first (none in a convolutional network)."""
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


def method_of(predictor) -> str:
    if predictor.window:
        raise BadInputError(predictor.task, "explanations take single-frame models; this one reads a window of frames")
    output_names(predictor)
    return METHODS[1] if attention_layers(predictor.model.backbone) else METHODS[0]


def output_names(predictor) -> tuple[str, ...]:
    try:
        return tuple(predictor.output_names())
    except NotImplementedError:
        raise BadInputError(predictor.task, f"{type(predictor).__name__} does not name its outputs (output_names): "
                                            "its task cannot be explained yet") from None


def target_index(predictor, outputs: np.ndarray, target: str | None) -> int:
    """The output to explain: ``target`` by name, or the face's strongest output (the largest in
    size: a valence of -0.8 is stronger than a probability of 0.6)."""
    names = output_names(predictor)
    if target is None:
        return int(np.argmax(np.abs(outputs[:len(names)])))
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
    nothing is positive: ``Explanation.evidence`` says which)."""
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
    def side(k):
        return lambda module, inputs, output: sides.__setitem__(k, min(output.shape[2:]) if output.dim() == 4 else 0)

    hooks = [stage.register_forward_hook(side(k)) for k, stage in enumerate(model._stages)]
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


def grad_cam(model, x: torch.Tensor, targets: list[int], signs: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``signs * output[target]`` per face: a negative output (valence -0.6) is
    explained by what lowers it."""
    from captum.attr import LayerGradCam

    layer = _map_stage(model, x)
    with torch.enable_grad():
        cams = LayerGradCam(lambda inputs: model(inputs) * signs[:, None], layer).attribute(
            x, target=targets, relu_attributions=True)
    return cams[:, 0]


def token_embedding(model) -> nn.Module:
    """A transformer backbone's embedding: it says where its tokens lie (``token_map``) and, for
    the landmark-patch transformer, which face part each is (``parts``)."""
    found = token_embedding_or_none(model)
    if found is None:
        raise BadInputError(model.hparams.get("backbone", "model"), "a transformer without a token embedding that "
                                                                     "places its tokens in the image")
    return found


def attention_rollout(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rollout, the last layer's per-head attention): the class token's attention over the other
    tokens, (N, tokens) and (N, heads, tokens); the backbone's attention modules are asked for their
    weights by a hook."""
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
    identity = torch.eye(tokens, device=weights[0].device, dtype=weights[0].dtype)
    rollout = identity.expand(weights[0].shape[0], tokens, tokens)
    for w in weights:  # (N, heads, T, T)
        a = 0.5 * w.mean(1) + 0.5 * identity
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    return rollout[:, 0, 1:], weights[-1][:, :, 0, 1:]


def explain(predictor, crops: np.ndarray, target: str | None = None, landmarks: np.ndarray | None = None) -> Explanation:
    """Saliency maps of aligned RGB uint8 crops (N, S, S, 3) for one named output of the model
    (``target``; None: each face's strongest output); ``landmarks``: the crops' 68 points for a
    model that reads face parts (None: dlib's, found on the crops)."""
    method = method_of(predictor)
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    size = predictor.alignment.size
    model = predictor.model
    x = predictor.torch_input(*predictor.inputs(crops, landmarks))
    if method == "grad-cam":
        names = output_names(predictor)
        outputs = predictor.predict_aligned(crops)
        indices = [target_index(predictor, row, target) for row in outputs]
        lowered = [bool(row[k] < 0) for row, k in zip(outputs, indices)]
        signs = torch.tensor([-1.0 if low else 1.0 for low in lowered], device=x.device)
        cams = grad_cam(model, x, indices, signs)
        evidence = [bool(c.max() > 0) for c in cams]
        return Explanation(method, [names[k] for k in indices], _unit_maps(cams, size), evidence=evidence,
                           lowered=lowered)
    cls, heads = attention_rollout(model, x)
    n, h, tokens = heads.shape
    embedding = token_embedding(model)
    parts = getattr(embedding, "parts", None)
    landmarks = x[1] if isinstance(x, tuple) else None  # where each face's part tokens were cut
    per_head = None if landmarks is None else landmarks.repeat_interleave(h, 0)
    return Explanation(method, ["attention"] * n, _unit_maps(embedding.token_map(cls, landmarks), size),
                       _unit_maps(embedding.token_map(heads.reshape(n * h, tokens), per_head), size).reshape(n, h, size, size),
                       parts, None if parts is None else (cls / cls.sum(1, keepdim=True)).cpu().numpy())


def face_overlays(predictors, results) -> list[list[dict]]:
    """Per face (``FaceResult``s analysed with ``keep_crops``), every model's overlay on its own
    crop: ``{"task", "method", "target", "overlay"}`` (RGB uint8); a model that reads windows of
    frames gets ``{"task", "skipped"}`` instead."""
    faces: list[list[dict]] = [[] for _ in results]
    for k, predictor in enumerate(predictors):
        if predictor.window:
            for face in faces:
                face.append({"task": predictor.task, "skipped": "it reads windows of frames"})
            continue
        crops = np.stack([result.crops[k] for result in results])
        explanation = explain(predictor, crops)
        for face, crop, saliency, name in zip(faces, crops, explanation.maps, explanation.targets):
            face.append({"task": predictor.task, "method": explanation.method, "target": name,
                         "overlay": overlay(crop, saliency)})
    return faces


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


def part_attention_table(predictor, crops: np.ndarray, groups: np.ndarray | None = None,
                         batch: int = 64) -> pd.DataFrame | None:
    """The landmark-patch transformer's share of attention per face part (rollout), averaged over
    the faces of each group (e.g. each true class) and over all of them; None for other backbones."""
    if not hasattr(token_embedding_or_none(predictor.model), "parts"):
        return None
    shares = np.concatenate([explain(predictor, crops[k:k + batch]).part_attention
                             for k in range(0, len(crops), batch)])
    parts = token_embedding_or_none(predictor.model).parts
    frame = pd.DataFrame(shares, columns=list(parts))
    rows = [] if groups is None else [frame[groups == g].mean().rename(str(g)) for g in pd.unique(groups)]
    return pd.DataFrame(rows + [frame.mean().rename("all")]).rename_axis("faces").reset_index()


def token_embedding_or_none(model) -> nn.Module | None:
    return next((m for m in model.backbone.modules() if hasattr(m, "token_map")), None)
