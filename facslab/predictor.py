"""A trained task model packaged with everything needed to use it: input size, channels,
normalisation, alignment, and the task's outputs (AU list and decision thresholds, or emotion
classes). Saved as a folder; logged to MLflow as a pyfunc model.

The folder also holds the network exported to ONNX (``model.onnx``, checked against PyTorch when
it is written). On a CPU the apps run it with ONNX Runtime, which is several times faster than
eager PyTorch for one small face; ``runtime="torch"`` keeps PyTorch.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from facslab.badinput import MissingInputError
from facslab.au import AU_LABELS, openface_columns
from facslab.emotions import DIMENSIONS, affect_fields, affect_summary
from facslab.faces.align import AlignmentSpec
from facslab import onnx_export
from facslab.model_folder import (CONFIG_FILE, ONNX_FILE, PREDICTORS, RUNTIMES, WEIGHTS_FILE,  # noqa: F401
                                  build_saved_model, gpu_present, saved_predictor_class, write_folder)
from facslab.name_tables import register


class TaskPredictor:
    """A task model ready for faces: aligned RGB crops in, the task's outputs out.

    ``provenance``: what the model was trained on (``trained_on``: generated, real or mixed;
    ``datasets``), so the apps can say when a model has only ever seen generated faces.
    ``device``: where the model runs (auto: a GPU when there is one). ``onnx_session``: an ONNX
    Runtime session of the same network, used instead of PyTorch when given."""

    task = "task"
    outputs_name = "outputs"
    #: the name the task's models are registered under, where an app's ``auto`` takes its champion
    registered_name: str | None = None
    #: the task's LightningModule, or its import path (then torch and Lightning load only when a
    #: PyTorch model is built: a saved model with its ONNX export runs without them)
    module_class: type | str = "lightning_modules.base.BackboneModule"
    #: frames one input spans: a face's last ``window`` crops (None: one crop)
    window: int | None = None
    #: whether ``decide`` gives the 18 AUs' presence (what the emoji matcher and the AU rules read)
    decides_aus = False
    #: the apps' option that adds a model of this task (``--va_model URI``; None: ``--also`` only),
    #: its help, and its default (auto: the task's registered champion, when the store holds one)
    app_option: str | None = None
    app_option_help = ""
    app_option_default: str | None = None

    def __init_subclass__(cls, **kwargs):
        """Every predictor class is found by the task name a saved model's config gives: defining
        the class is registering it (no second table to keep in step)."""
        super().__init_subclass__(**kwargs)
        if "task" in cls.__dict__:  # a subclass that keeps its parent's task does not take it over
            register(PREDICTORS, cls.task, cls, cls, "task")

    def __init__(self, model=None, alignment: AlignmentSpec | None = None, provenance: dict | None = None,
                 device: str = "auto", onnx_session=None, saved: Path | None = None, hparams: dict | None = None):
        """``model``: the task's LightningModule; or None with ``saved``, a saved folder whose ONNX
        export answers (``onnx_session``), and its ``hparams``: its PyTorch model is built only where
        asked for (explain)."""
        if model is None and (saved is None or onnx_session is None or hparams is None):
            raise ValueError("a predictor needs its model, or a saved folder with an ONNX session and hparams")
        self._device, self._model, self.saved = device, None, saved
        self._building = threading.Lock()  # scoring threads share a predictor: one of them builds the model
        self.onnx_session = onnx_session
        given = {o.name for o in onnx_session.get_outputs()} if onnx_session is not None else set()
        self.onnx_gives_outputs = onnx_export.OUTPUT_NAMES[1] in given  # exports before 23e337f: logits only
        self.provenance = dict(provenance or {})
        if model is not None:
            self._take(model)
        hp = self.hparams = dict(model.hparams if model is not None else hparams)
        self.alignment = alignment or AlignmentSpec(size=hp["image_size"])
        self.mean = np.asarray(hp["mean"], np.float32) * 255.0
        self.std = np.asarray(hp["std"], np.float32) * 255.0
        self.channels = len(hp["mean"])
        #: the network's input is the crops and their 68 landmarks (a backbone that reads face parts)
        self.takes_landmarks = (model.takes_landmarks if model is not None else
                                "landmarks" in [i.name for i in onnx_session.get_inputs()])

    def _take(self, model) -> None:
        import torch

        if self._device == "auto":
            self._device = "cuda" if gpu_present("auto") else "cpu"
        self._model = model.eval().to(torch.device(self._device))

    @property
    def model(self):
        """The PyTorch model (built from the saved folder the first time it is asked for)."""
        if self._model is None:
            with self._building:
                if self._model is None:
                    self._take(build_saved_model(type(self), self.saved, self.hparams))
        return self._model

    @property
    def trained_only_on_generated(self) -> bool:
        return self.provenance.get("trained_on") == "generated"

    def provenance_note(self) -> str | None:
        """One sentence for the apps when the model has never seen a real face."""
        if not self.trained_only_on_generated:
            return None
        return (f"note: this model was trained only on generated faces ({self.provenance.get('datasets', 'facslab data')}); "
                f"its {self.outputs_name} on real photographs are not meaningful until it is trained on real data")

    def predict_aligned(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The task's outputs (AU probabilities, class probabilities) for aligned RGB uint8 crops
        (N, S, S, 3) (grey models take their luminance); see ``inputs`` for ``landmarks``."""
        return self._run(*self.inputs(crops, landmarks))

    def inputs(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(normalised NCHW crops, their (N, 68, 2) landmarks or None): the network's input. A model
        that reads face parts takes the crops' landmarks (not given: dlib's on the crops, as the apps')."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1:3] != (self.alignment.size, self.alignment.size):
            raise ValueError(f"crops must be {self.alignment.size}x{self.alignment.size}, got {crops.shape[1:3]}")
        if not self.takes_landmarks:
            return self._normalise(crops), None
        if landmarks is None:
            from facslab.faces.landmarks import crop_landmarks  # dlib: only models that read face parts

            landmarks = crop_landmarks(crops)
        return self._normalise(crops), np.asarray(landmarks, np.float32)

    def torch_input(self, x: np.ndarray, landmarks: np.ndarray | None = None):
        """``inputs`` as the PyTorch model takes them, on its device."""
        import torch

        x = torch.from_numpy(x).to(self.model.device)
        return x if landmarks is None else (x, torch.from_numpy(landmarks).to(x.device))

    def _run(self, x: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The outputs of a normalised input batch, on ONNX Runtime or PyTorch."""
        if self.onnx_session is not None:
            feed = {"image": x} if landmarks is None else {"image": x, "landmarks": landmarks}
            if self.onnx_gives_outputs:
                return self.onnx_session.run([onnx_export.OUTPUT_NAMES[1]], feed)[0]
            return self.activate(self.onnx_session.run(None, feed)[0])
        import torch

        with torch.inference_mode():
            return self.model.outputs_from_logits(self.model(self.torch_input(x, landmarks))).float().cpu().numpy()

    # What one face's answer says, declared by each task, so that every app (emoji, live, the web
    # page, the served model) assembles its answer from the models it was given.

    def fields(self, row: np.ndarray) -> dict:
        """JSON fields of one face's outputs ``row`` (``emoji --json``, the web page, the WebSocket)."""
        raise NotImplementedError

    def column_names(self) -> tuple[str, ...]:
        """The flat columns this model adds to a face's row (the live CSV, the served model's table)."""
        raise NotImplementedError

    def columns(self, row: np.ndarray) -> list:
        """The values of ``column_names`` for one face's outputs."""
        raise NotImplementedError

    def summary(self, row: np.ndarray) -> str:
        """A few words for people (the terminal line, the drawn annotation, the page)."""
        raise NotImplementedError

    #: the span of ``chart_names``' values: the vertical axis of the apps' chart over time
    chart_range: tuple[float, float] = (0.0, 1.0)

    def chart_names(self) -> tuple[str, ...]:
        """The outputs worth following over time (the apps' strip chart of the largest face; none
        by default). Their values are the first ``len(chart_names())`` of a face's outputs."""
        return ()

    def output_names(self) -> tuple[str, ...]:
        """The name of each of the model's outputs, in order (what ``facslab explain --target`` picks)."""
        raise NotImplementedError

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The model's ``outputs_from_logits`` on ONNX Runtime's logits (exports of logits only)."""
        from torch import from_numpy

        return self.model.outputs_from_logits(from_numpy(logits)).numpy()

    def _normalise(self, crops: np.ndarray) -> np.ndarray:
        """RGB uint8 crops (N, S, S, 3) as the network's normalised NCHW float32 input."""
        if self.channels == 1 and crops.shape[-1] == 3:  # ITU-R 601 luminance, as cv2's RGB2GRAY
            crops = (crops.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        return np.ascontiguousarray(((crops.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2))

    @property
    def runtime(self) -> str:
        return "onnx" if self.onnx_session is not None else "torch"

    def predict_image(self, image: np.ndarray, detector: str = "hog", upsample: int = 1,
                      min_confidence: float | None = None):
        """Detect, align and predict every face of an RGB image: ``FaceResult``s with the box, this
        model's outputs, the eye states and (an AU model) the emoji match."""
        from facslab.analysis import FaceAnalyzer  # a higher layer: it runs any list of predictors

        options = {} if min_confidence is None else {"min_confidence": min_confidence}
        return FaceAnalyzer([self], detector=detector, upsample=upsample, **options).analyze(image)

    def save(self, folder: str | Path, onnx: bool = True) -> Path:
        """Weights, config and (``onnx``) the ONNX export, checked against PyTorch on random inputs."""
        return write_folder(self, folder, onnx)

    def outputs_config(self) -> dict:
        """What the saved config says about the outputs (and ``hparams_update``: hparams to store)."""
        return {}

    def input_shape(self) -> tuple[int, ...]:
        """One input's shape, without the batch: (channels, size, size)."""
        return (self.channels, self.alignment.size, self.alignment.size)

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto", runtime: str = "auto",
             threads: int | None = None) -> TaskPredictor:
        """The predictor of a saved folder, of the task it was saved as. ``runtime``: onnx (needs
        ``model.onnx``), torch, or auto: ONNX Runtime on a CPU when the folder has the export,
        else PyTorch (on ONNX Runtime the PyTorch model is built only when something asks for it)."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        folder = Path(folder)
        config, cls = saved_predictor_class(folder, None if cls is TaskPredictor else cls)
        alignment, provenance = AlignmentSpec(**config["alignment"]), config.get("provenance")
        has_onnx = (folder / ONNX_FILE).exists()
        if runtime == "onnx" and not has_onnx:
            raise MissingInputError(folder / ONNX_FILE, "this model was saved without its ONNX export; "
                                                        "register it again, or use --runtime torch")
        if runtime == "onnx" or (runtime == "auto" and has_onnx and not gpu_present(device)):
            session = onnx_export.onnx_session(folder / ONNX_FILE, threads)
            return cls(None, alignment, provenance, "cpu", session, folder, config["hparams"])
        return cls(build_saved_model(cls, folder, config["hparams"]), alignment, provenance, device)


class AUPredictor(TaskPredictor):
    """AU probabilities and the per-AU decision thresholds chosen on validation data."""

    task = "au"
    outputs_name = "AUs"
    module_class = "lightning_modules.au_detector.AUDetector"

    def __init__(self, model=None, *args, **kwargs):
        super().__init__(model, *args, **kwargs)
        # a trained model's thresholds are a buffer the registry sets; a saved one's are in its hparams
        self.thresholds = (model.thresholds.cpu().numpy() if model is not None
                           else np.asarray(self.hparams["thresholds"])).astype(np.float64)
        self.au_labels = AU_LABELS

    decides_aus = True

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities >= self.thresholds

    def outputs_config(self) -> dict:
        return {"au_labels": list(self.au_labels), "hparams_update": {"thresholds": [float(t) for t in self.thresholds]}}

    def output_names(self):
        return tuple(f"AU{a}" for a in self.au_labels)

    def decided(self, row: np.ndarray) -> list[str]:
        """The labels of the AUs ``decide`` finds present in one face's outputs."""
        return [a for a, d in zip(self.au_labels, self.decide(row)) if d]

    def fields(self, row):
        probabilities = row[:len(self.thresholds)]
        return {"aus": self.decided(row),
                "probabilities": {a: round(float(p), 4) for a, p in zip(self.au_labels, probabilities)}}

    def column_names(self):
        return openface_columns("p") + openface_columns("c")

    def columns(self, row):
        return [round(float(p), 4) for p in row[:len(self.thresholds)]] + [int(d) for d in self.decide(row)]

    def summary(self, row):
        return f"AUs {'+'.join(self.decided(row)) or 'none'}"


class EmotionPredictor(TaskPredictor):
    """Emotion class probabilities."""

    task = "emotion"
    outputs_name = "emotions"
    module_class = "lightning_modules.emotion_classifier.EmotionClassifier"
    app_option, app_option_default = "emotion_model", "auto"
    registered_name = "facslab-emotion"  # EmotionTask's
    app_option_help = ("emotion model: auto (models:/facslab-emotion@champion when registered in the store of a "
                       "models:/ or runs:/ --model), none, a URI or a folder")

    def __init__(self, model=None, *args, **kwargs):
        super().__init__(model, *args, **kwargs)
        self.classes = tuple(self.hparams["classes"])

    def outputs_config(self) -> dict:
        return {"classes": list(self.classes)}

    def output_names(self):
        return self.classes

    def label(self, probabilities: np.ndarray) -> str:
        return self.classes[int(np.argmax(probabilities))]

    def fields(self, row):
        return {"emotion": {"label": self.label(row),
                            "probabilities": {c: round(float(p), 4) for c, p in zip(self.classes, row)}}}

    def column_names(self):
        return ("emotion",) + tuple(f"emotion_{c}" for c in self.classes)

    def columns(self, row):
        return [self.label(row)] + [round(float(p), 4) for p in row]

    def summary(self, row):
        return f"emotion: {self.label(row)} {float(np.max(row)):.2f}"

    chart_names = output_names  # every class is followed over time


class ValenceArousalPredictor(TaskPredictor):
    """Valence and arousal in [-1, 1]."""

    task = "valence_arousal"
    outputs_name = "valence and arousal"
    module_class = "lightning_modules.valence_arousal.ValenceArousalRegressor"
    app_option = "va_model"
    app_option_help = "a valence/arousal model (URI or folder), e.g. models:/facslab-valence-arousal@champion"

    def outputs_config(self) -> dict:
        return {"dimensions": list(DIMENSIONS)}

    def output_names(self):
        return tuple(DIMENSIONS)

    def fields(self, row):
        return affect_fields(row)

    def column_names(self):
        return tuple(DIMENSIONS)

    def columns(self, row):
        return [round(float(v), 4) for v in row]

    def summary(self, row):
        return affect_summary(row)

    chart_range = (-1.0, 1.0)

    chart_names = output_names  # both dimensions


class AUIntensityPredictor(TaskPredictor):
    """Intensity 0-5 of each of the 18 AUs."""

    task = "au_intensity"
    outputs_name = "AU intensities"
    module_class = "lightning_modules.au_intensity.AUIntensityRegressor"
    app_option = "intensity_model"
    app_option_help = "an AU intensity model (URI or folder): intensities 0-5, AUxx_r columns in the live CSV"

    def outputs_config(self) -> dict:
        return {"au_labels": list(AU_LABELS)}

    def output_names(self):
        return tuple(f"AU{a}" for a in AU_LABELS)

    def fields(self, row):
        return {"intensities": {a: round(float(v), 3) for a, v in zip(AU_LABELS, row)}}

    def column_names(self):
        return openface_columns("r")  # OpenFace's AUxx_r

    def columns(self, row):
        return [round(float(v), 3) for v in row]

    def summary(self, row):
        strongest = [(a, float(v)) for a, v in sorted(zip(AU_LABELS, row), key=lambda av: -av[1]) if v >= 1][:3]
        return "intensity: " + (", ".join(f"AU{a} {v:.1f}" for a, v in strongest) or "none of 1 or more")


class TemporalAUPredictor(AUPredictor):
    """AU probabilities of the last frame of stacks of ``window`` aligned crops."""

    task = "au_temporal"
    outputs_name = "AUs over the last frames"
    module_class = "lightning_modules.temporal.TemporalAUDetector"
    app_option = "temporal_model"
    app_option_help = "a temporal AU model (URI or folder): a sliding window over each tracked face (AUxx_tp columns)"

    def fields(self, row):
        return {"temporal_aus": self.decided(row),
                "temporal_probabilities": {a: round(float(p), 4) for a, p in zip(self.au_labels, row)}}

    def column_names(self):
        return openface_columns("tp")  # probabilities over the face's last frames

    def columns(self, row):
        return [round(float(p), 4) for p in row]

    def summary(self, row):
        return f"over time: {super().summary(row)}"

    @property
    def window(self) -> int:
        return int(self.hparams["window"])

    def input_shape(self) -> tuple[int, ...]:
        return (self.window, self.channels, self.alignment.size, self.alignment.size)

    def predict_aligned(self, stacks: np.ndarray) -> np.ndarray:
        """(N, 18) for (N, window, S, S, 3) RGB uint8 stacks (one stack: (window, S, S, 3))."""
        stacks = np.asarray(stacks)
        if stacks.ndim == 4:
            stacks = stacks[None]
        if stacks.shape[1] != self.window or stacks.shape[2:4] != (self.alignment.size, self.alignment.size):
            raise ValueError(f"stacks must be (N, {self.window}, {self.alignment.size}, {self.alignment.size}, C), "
                             f"got {stacks.shape}")
        n, t = stacks.shape[:2]
        frames = self._normalise(stacks.reshape(n * t, *stacks.shape[2:]))
        return self._run(frames.reshape(n, t, *self.input_shape()[1:]))


class AUAffectPredictor(AUPredictor):
    """18 AU probabilities, then valence and arousal (20 columns); ``decide`` takes the AU part."""

    task = "au_affect"
    outputs_name = "AUs, valence and arousal"
    module_class = "lightning_modules.au_affect.AUAffectModel"

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[..., :len(self.thresholds)] >= self.thresholds

    def output_names(self):
        return super().output_names() + tuple(DIMENSIONS)

    def fields(self, row):
        return {**super().fields(row), **affect_fields(row[len(self.thresholds):])}

    def column_names(self):
        return super().column_names() + tuple(DIMENSIONS)

    def columns(self, row):
        return super().columns(row) + [round(float(v), 4) for v in row[len(self.thresholds):]]

    def summary(self, row):
        return f"{super().summary(row)}, {affect_summary(row[len(self.thresholds):])}"

