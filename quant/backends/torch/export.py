"""PyTorch modules as input: exported to ONNX first, so the ONNX graph stays the one source of tensor names."""
from __future__ import annotations

import inspect
import logging
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
    try:
        module = module.eval()
    except NotImplementedError:  # torch.export's unlifted module refuses eval(): it runs as it was exported
        pass
    with torch.no_grad():
        sample = module(*args)
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


PROGRAM_SUFFIX = ".pt2"


def is_program_path(model) -> bool:
    """Whether ``model`` is a path to a torch.export program file (``.pt2``, written by torch.export.save)."""
    return isinstance(model, (str, Path)) and Path(model).suffix.lower() == PROGRAM_SUFFIX


def export_program(path):
    """The onnx.ModelProto of a torch.export program file, exported as ``export_module`` exports a module.

    ``torch.export.load`` gives an ExportedProgram; its module (copied into a plain fx GraphModule, since the
    program's own refuses eval()/train(), which torch.onnx.export calls) goes through ``export_module`` with the
    program's stored example inputs, so the batch axis is dynamic and the names are ``forward``'s.
    """
    path = Path(path)
    if not path.is_file():
        raise QuantError(f"model file '{path}' does not exist" if not path.exists() else
                         f"model path '{path}' is not a file", hint="pass the .pt2 file written by torch.export.save")
    try:
        import torch
    except ImportError:
        raise QuantError(f"'{path}' is a torch.export program: reading it needs torch, which is not installed",
                         hint="install the torch build you want (pip install torch==2.13.0 is the CPU wheel), "
                              "or pass an .onnx model") from None
    log = logging.getLogger("torch.export")  # torch logs a traceback before it raises on a file it cannot read
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
    except Exception as exc:  # a zip error, a pickle error, a version mismatch ... all mean: not a program we read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuantError(f"'{path}' is not a torch.export program (ExportedProgram) that this torch "
                         f"({torch.__version__}) can load: {first}",
                         hint="write it with torch.export.save(torch.export.export(module, args), 'model.pt2'), "
                              "or pass an .onnx model") from None
    finally:
        log.setLevel(level)
    if not isinstance(program, torch.export.ExportedProgram):
        raise QuantError(f"'{path}' holds a {type(program).__name__}, not a torch.export ExportedProgram",
                         hint="write it with torch.export.save(torch.export.export(module, args), 'model.pt2')")
    examples = program.example_inputs
    if examples is None or examples[1]:
        raise QuantError(f"'{path}' stores no positional example inputs (needed to export it to ONNX)",
                         hint="export with positional args: torch.export.export(module, (x,)), then save again")
    inner = program.module()
    module = torch.fx.GraphModule(inner, inner.graph)
    with warnings.catch_warnings():  # tracing the program's input guards warns; torch.export checked them already
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return export_module(module, tuple(examples[0]))
