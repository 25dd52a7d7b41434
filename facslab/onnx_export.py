"""The network of a task model as ONNX: exported with torch's exporter and checked against
PyTorch when written, and run with ONNX Runtime (several times faster than eager PyTorch for one
small face on a CPU). The graph gives the logits and the task's outputs (``outputs_from_logits``),
so a saved model runs on ONNX Runtime without torch being imported (the apps start faster)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_TOLERANCE = 1e-4  # largest |logit difference| accepted between the export and PyTorch
#: the graph's outputs: raw logits (checked against PyTorch) and the task's outputs computed from them
OUTPUT_NAMES = ("logits", "outputs")


class ExportError(RuntimeError):
    """The ONNX export does not reproduce the PyTorch model."""


def export_onnx(model, path: str | Path, image_size: int, samples=None, channels: int = 3,
                input_shape: tuple[int, ...] | None = None) -> float:
    """Write the network of a task model (normalised NCHW float input, and the (N, 68, 2) landmarks
    for a model that reads face parts -> logits and outputs, any batch size) to ``path`` and return
    the largest absolute logit difference from PyTorch on ``samples``; above ``ONNX_TOLERANCE`` the
    file is removed and ExportError raised."""
    import onnxruntime as ort
    import torch

    class _LogitsAndOutputs(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            logits = self.module(x)
            return logits, self.module.outputs_from_logits(logits)

    path = Path(path)
    model = model.eval().cpu()
    input_shape = input_shape or (channels, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    generator = torch.Generator().manual_seed(0)
    if samples is None:
        samples = torch.randn(4, *input_shape, generator=generator)
    if model.takes_landmarks:  # a second input: the crops' 68 landmarks (pixels)
        landmarks = image_size * (0.2 + 0.6 * torch.rand(len(samples), 68, 2, generator=generator))
        example, inputs, names, dims = (torch.zeros(2, *input_shape), torch.full((2, 68, 2), image_size / 2)), \
            (samples, landmarks), ["image", "landmarks"], ({0: batch}, {0: batch})
    else:
        example, inputs, names, dims = torch.zeros(2, *input_shape), samples, ["image"], {0: batch}
    with torch.no_grad():  # torch.export-based exporter (onnxscript), any batch size
        torch.onnx.export(_LogitsAndOutputs(model).eval(), (example,), str(path), input_names=names,
                          output_names=list(OUTPUT_NAMES), dynamic_shapes={"x": dims}, dynamo=True, verbose=False)
    with torch.no_grad():
        expected = model(inputs)
        expected_outputs = model.outputs_from_logits(expected).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = dict(zip(names, [t.numpy() for t in (inputs if model.takes_landmarks else (inputs,))]))
    got, got_outputs = session.run(list(OUTPUT_NAMES), feed)
    difference = float(np.abs(got - expected.numpy()).max())
    outputs_difference = float(np.abs(got_outputs - expected_outputs).max())
    if not difference <= ONNX_TOLERANCE or not outputs_difference <= ONNX_TOLERANCE:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: ONNX logits differ from PyTorch by {difference:.2e} (> {ONNX_TOLERANCE}), or "
                          f"its outputs by {outputs_difference:.2e}")
    return difference


def onnx_session(path: Path, threads: int | None):
    """An ONNX Runtime session on the CPU with ``threads`` (None: torch's count where torch is
    loaded, else ``OMP_NUM_THREADS``, else ONNX Runtime's default: one per physical core, as
    torch's), one inter-op thread."""
    import sys

    import onnxruntime as ort

    if threads is None:  # torch's count without importing torch for it (a second of start-up)
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else _openmp_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _openmp_threads() -> int:
    """The first level of ``OMP_NUM_THREADS`` (``4`` or ``4,2``), as torch takes it; 0 (ONNX
    Runtime's default) when it is unset or unreadable."""
    import os

    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    except ValueError:
        return 0
