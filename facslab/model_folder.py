"""A saved model folder: ``config.json`` (the task, its predictor class, the model's hyperparameters,
the alignment, the outputs, where it was trained), ``model.pt`` (the weights) and ``model.onnx`` (the
export with its parity); reading one back, building its PyTorch model only where it is needed, and
choosing where it runs. ``TaskPredictor.save`` and ``TaskPredictor.load`` use it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from facslab import onnx_export
from facslab.badinput import BadInputError, MissingInputError
from facslab.name_tables import class_path, import_class_module, import_path

WEIGHTS_FILE, CONFIG_FILE, ONNX_FILE = "model.pt", "config.json", "model.onnx"
RUNTIMES = ("auto", "torch", "onnx")

#: task name -> its predictor class, filled as the classes are defined (``TaskPredictor.__init_subclass__``)
PREDICTORS: dict[str, type] = {}


def write_folder(predictor, folder: str | Path, onnx: bool = True) -> Path:
    """Weights, config and (``onnx``) the ONNX export of a predictor, checked against PyTorch on
    random inputs."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = predictor.model
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    hparams = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.hparams).items()}
    hparams["weights"] = None  # the saved state holds the weights
    if type(predictor).__module__ == "__main__":
        raise ValueError(f"{type(predictor).__qualname__} is defined in a script (__main__): another process cannot "
                         "import it to load the model; define the task in an importable module")
    config = {"task": predictor.task, "predictor": class_path(type(predictor)), "hparams": hparams,
              "alignment": asdict(predictor.alignment), "provenance": predictor.provenance, **predictor.outputs_config()}
    config["hparams"].update(config.pop("hparams_update", {}))
    if onnx:
        difference = onnx_export.export_onnx(model, folder / ONNX_FILE, predictor.alignment.size,
                                             input_shape=predictor.input_shape())
        predictor._take(model)  # back on its device
        config["onnx"] = {"file": ONNX_FILE, "max_abs_logit_difference": difference, "tolerance": onnx_export.ONNX_TOLERANCE}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


def saved_predictor_class(folder: Path, wanted: type | None = None) -> tuple[dict, type]:
    """(config, predictor class) of a saved folder; ``wanted``: the class it must be (None: any)."""
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise MissingInputError(folder, f"not a facslab model folder (no {name}): give the folder a model "
                                            "was saved to, or a models:/ or runs:/ URI")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInputError(folder / CONFIG_FILE, f"not readable JSON ({error})") from None
    task = config.get("task", "au")  # folders saved before emotions were a task are AU models
    saved = config.get("predictor")  # module:class of the predictor that saved it (folders since 2026-12-06)
    if saved is not None:
        import_class_module(folder / CONFIG_FILE, saved, required=task not in PREDICTORS)
    if task not in PREDICTORS:
        raise BadInputError(folder / CONFIG_FILE, f"unknown task {task!r}; known: {', '.join(PREDICTORS)}")
    if saved is not None and class_path(PREDICTORS[task]) != saved:
        raise BadInputError(folder / CONFIG_FILE, f"saved by {saved}, but task {task!r} is "
                                                  f"{class_path(PREDICTORS[task])} here")
    if wanted is not None and PREDICTORS[task] is not wanted:
        raise BadInputError(folder, f"a {task} model, not a {wanted.task} model")
    return config, PREDICTORS[task]


def build_saved_model(cls: type, folder: Path, hparams: dict):
    """The PyTorch model of a saved folder (its config's ``hparams``), with its weights (imports
    torch and Lightning)."""
    import torch

    module = cls.module_class if isinstance(cls.module_class, type) else import_path(cls.module_class, "model class")
    model = module(**hparams)
    state = torch.load(Path(folder) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # the model class changed since the folder was saved (a layer added)
        raise BadInputError(Path(folder) / WEIGHTS_FILE, f"the weights do not fit this version's "
                            f"{module.__name__} ({_first_detail(error)}): saved by another "
                            "version of facslab; train or register the model again") from None
    return model


def gpu_present(device: str = "auto") -> bool:
    """Whether the model should run on a GPU: ``device`` names one, or (auto) torch sees one. A
    machine without a GPU device file is answered without importing torch (a second of start-up)."""
    if device != "auto":
        return not device.startswith("cpu")
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")):
        return False
    import torch

    return torch.cuda.is_available()


def _first_detail(error: BaseException) -> str:
    """The first line of a load_state_dict error that names keys (its first line names the class)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__)[:160]
