"""PyTorch modules as input: exported to ONNX first, so the ONNX graph stays the one source of tensor names."""
from __future__ import annotations

import inspect
import tempfile
import warnings
from pathlib import Path

from quant.core.errors import QuantError
from quant.core.lazy import require

OPSET = 17


def export_module(module, example_inputs, opset: int = OPSET):
    """An onnx.ModelProto of ``module`` (eval mode, batch axis 0 dynamic), via torch.onnx.export(dynamo=False).

    The legacy (TorchScript) exporter keeps the weights inside the file and names every node; inputs are
    named after ``forward``'s parameters, outputs ``output`` (or ``output_0``, ``output_1`` ...).
    """
    torch = require("torch")
    onnx = require("onnx")
    if example_inputs is None:
        raise QuantError("a torch.nn.Module needs example inputs to be exported to ONNX",
                         hint="pass example_inputs=(tensor, ...) shaped like one batch of the data")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not all(isinstance(a, torch.Tensor) for a in args):
        raise QuantError("example_inputs must be a torch.Tensor or a tuple of tensors",
                         hint="e.g. example_inputs=torch.zeros(1, 3, 224, 224)")
    names = [p for p in inspect.signature(module.forward).parameters if p not in ("self",)][: len(args)]
    if len(names) < len(args):
        names = [f"input_{i}" for i in range(len(args))]
    with torch.no_grad():
        sample = module.eval()(*args)
    outputs = len(sample) if isinstance(sample, (tuple, list)) else 1
    output_names = ["output"] if outputs == 1 else [f"output_{i}" for i in range(outputs)]
    axes = {name: {0: "batch"} for name in names + output_names}
    with tempfile.TemporaryDirectory(prefix="quant-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings():  # the legacy exporter's deprecation notice: dynamo=False is deliberate
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                                  output_names=output_names, dynamic_axes=axes, do_constant_folding=True)
        except Exception as exc:  # the exporter raises many types for unsupported code
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantError(f"torch.onnx.export cannot export this module: {first}",
                             hint="export it to ONNX yourself and pass the .onnx file") from None
        return onnx.load(str(path))
