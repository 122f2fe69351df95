"""ONNX graph -> torch.fx GraphModule, through onnx2torch, with the pre-passes and fixes quant owns.

Why this route: onnx2torch (pure Python, FX output) converts each ONNX node into one module whose name is
the node's name and which records the ONNX tensor names it reads and writes (``onnx_mapping``), so the
tensors a Q/DQ plan names are reachable by their ONNX names without a second naming scheme. It was measured
on the GPU machine (FACTS.md): ResNet-50 within 7e-5 of ONNX Runtime and as fast as the native module once
Identity nodes feeding Conv biases are folded; BERT within 1e-6 relative once GreaterOrEqual is registered
for opset 16 and Flatten handles 1-D inputs. The other converters we know either go the other way
(torch -> ONNX) or keep no tensor names. What onnx2torch 1.5.15 lacks is added here, not patched into it:

* ``fold_constants``: Identity of a constant becomes the constant (onnx2torch's Conv/Gemm converters read
  weights and biases from initializers only), and a QuantizeLinear -> DequantizeLinear chain on a constant
  becomes the dequantized constant, computed in NumPy exactly as ONNX Runtime computes it.
* converters registered through onnx2torch's own ``add_converter`` for what its registry lacks:
  GreaterOrEqual/LessOrEqual at opset 16, QuantizeLinear/DequantizeLinear (``quant.backends.torch.modules``).
* ``fix_flatten``: onnx2torch's Flatten calls ``torch.flatten(start_dim=1)``, which fails on a 1-D input;
  ONNX defines Flatten of any rank (the output is always 2-D).

A model with an op onnx2torch cannot convert fails with one QuantError line naming the op.
"""
from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require

ONNX2TORCH_VERSION = "1.5.15"
INSTALL_HINT = ("install the torch build you want, then pip install --no-deps onnx2torch==1.5.15 (with its "
                "dependencies it pulls torchvision, and pip would swap a CPU torch for a CUDA build)")

_loaded = None


def load_onnx2torch():
    """Import onnx2torch once, registering quant's converters.

    onnx2torch imports torchvision at import time, for NonMaxSuppression and RoiAlign alone. torchvision costs
    a second or more to import on the GPU machine, and the torchvision wheel on PyPI does not load beside the
    CPU torch wheel ('operator torchvision::nms does not exist'). So during that import a stand-in module is
    visible whose functions import the real torchvision.ops when first called; a model with those ops then
    runs where torchvision works and fails with one clear error where it does not.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    require("torch")
    stand_in = None
    if "torchvision" not in sys.modules:
        stand_in = types.ModuleType("torchvision")
        stand_in.__path__ = []  # type: ignore[attr-defined]  (a package, so 'torchvision.ops' imports)
        ops = types.ModuleType("torchvision.ops")
        ops.__getattr__ = _torchvision_op  # type: ignore[attr-defined]  (PEP 562)
        stand_in.ops = ops  # type: ignore[attr-defined]
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, ops
    try:
        onnx2torch = require("onnx2torch")
    except QuantError:
        raise QuantError("--device cpu/cuda needs the Python package 'onnx2torch', which is not installed",
                         hint=f"install it with: {INSTALL_HINT}") from None
    finally:
        if stand_in is not None:
            for name in ("torchvision", "torchvision.ops"):
                if sys.modules.get(name) in (stand_in, stand_in.ops):
                    del sys.modules[name]
    from quant.backends.torch.modules import register_qdq_converters

    register_qdq_converters()
    _register_comparisons()
    _loaded = onnx2torch
    return onnx2torch


def _torchvision_op(name: str):
    """torchvision.ops.<name>, imported when first called."""
    if name.startswith("__"):
        raise AttributeError(name)

    def call(*args, **kwargs):
        try:
            real = importlib.import_module("torchvision.ops")
        except Exception:  # ImportError, or RuntimeError from a torchvision built for another torch
            raise QuantError(f"this model needs torchvision.ops.{name} (NonMaxSuppression/RoiAlign), and torchvision "
                             "does not load beside this torch", hint="install the torchvision that matches your "
                                                                     "torch, or use --device ort") from None
        return getattr(real, name)(*args, **kwargs)
    return call


def _register_comparisons() -> None:
    """GreaterOrEqual/LessOrEqual changed version at opset 16 (bfloat16 added); onnx2torch registers 12 only."""
    from onnx2torch.node_converters import comparisons
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter

    for op in ("GreaterOrEqual", "LessOrEqual"):
        if OperationDescription("", op, 16) not in _CONVERTER_REGISTRY:
            add_converter(operation_type=op, version=16)(_CONVERTER_REGISTRY[OperationDescription("", op, 12)])
    del comparisons


# ------------------------------------------------------------------ pre-passes on the ONNX graph
def fold_constants(model):
    """A copy where Identity of a constant, and Q -> DQ of a constant, are replaced by constants.

    The dequantized value is ``(clip(round_half_even(w / scale) + zp, qmin, qmax) - zp) * scale`` in float32,
    ONNX Runtime's arithmetic for QuantizeLinear then DequantizeLinear.
    """
    onnx = require("onnx")
    numpy_helper = onnx.numpy_helper
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants = {init.name: init for init in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    arrays: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(constants[name])
        return arrays[name]

    kept = []
    for node in graph.node:
        inputs = [n for n in node.input if n]
        folded = None
        if node.op_type == "Identity" and inputs and inputs[0] in constants:
            folded = value(inputs[0])
        elif node.op_type == "QuantizeLinear" and inputs and all(n in constants for n in inputs):
            folded = quantize_array(value(inputs[0]), value(inputs[1]),
                                    value(inputs[2]) if len(inputs) > 2 else None, _axis(node))
        elif node.op_type == "DequantizeLinear" and inputs and all(n in constants for n in inputs):
            folded = dequantize_array(value(inputs[0]), value(inputs[1]),
                                      value(inputs[2]) if len(inputs) > 2 else None, _axis(node))
        if folded is None or node.output[0] in outputs:
            kept.append(node)
            continue
        tensor = numpy_helper.from_array(np.asarray(folded), node.output[0])
        constants[node.output[0]] = tensor
        arrays[node.output[0]] = np.asarray(folded)
        graph.initializer.append(tensor)
    del graph.node[:]
    graph.node.extend(kept)
    used = {n for node in graph.node for n in node.input} | outputs
    survivors = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(survivors)
    return out


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _broadcast(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return param.reshape(shape)


def quantize_array(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear in NumPy: saturate(round_half_even(x / scale) + zero_point)."""
    dtype = np.dtype(np.uint8) if zero_point is None else zero_point.dtype
    info = np.iinfo(dtype)
    s = _broadcast(np.asarray(scale, np.float32), x.ndim, axis)
    zp = 0 if zero_point is None else _broadcast(zero_point.astype(np.float32), x.ndim, axis)
    q = np.round(x.astype(np.float32) / s) + zp
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_array(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    """ONNX DequantizeLinear in NumPy: (q - zero_point) * scale in float32."""
    s = _broadcast(np.asarray(scale, np.float32), q.ndim, axis)
    zp = 0 if zero_point is None else _broadcast(zero_point.astype(np.int32), q.ndim, axis)
    return ((q.astype(np.int32) - zp).astype(np.float32) * s).astype(np.float32)


# ------------------------------------------------------------------ conversion
@dataclass
class Converted:
    """A converted graph and where each ONNX tensor comes from."""

    module: object  # torch.fx.GraphModule
    inputs: list[str]  # ONNX graph inputs, in the module's positional order
    producers: dict[str, tuple[str, int]]  # ONNX tensor -> (module name, output index)
    multi_output: set[str]  # module names that return a tuple


def convert(model) -> Converted:
    """Convert a normalized ONNX ModelProto (pre-passes applied here) into a GraphModule."""
    onnx2torch = load_onnx2torch()
    prepared = fold_constants(model)
    try:
        module = onnx2torch.convert(prepared, attach_onnx_mapping=True)
    except NotImplementedError as exc:
        raise QuantError(f"the PyTorch backend cannot convert this model: {_describe(exc)}",
                         hint="run it on ONNX Runtime instead: --device ort") from None
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise QuantError(f"the PyTorch backend (onnx2torch {ONNX2TORCH_VERSION}) cannot convert this model: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                         hint="run it on ONNX Runtime instead: --device ort") from None
    fix_flatten(module)
    initializer_names = {init.name for init in prepared.graph.initializer}
    inputs = [v.name for v in prepared.graph.input if v.name not in initializer_names]
    producers: dict[str, tuple[str, int]] = {}
    multi: set[str] = set()
    for name, child in module.named_children():
        mapping = getattr(child, "onnx_mapping", None)
        if mapping is None:
            continue
        if len(mapping.outputs) > 1:
            multi.add(name)
        for index, tensor in enumerate(mapping.outputs):
            if tensor:
                producers[tensor] = (name, index)
    return Converted(module, inputs, producers, multi)


def _describe(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    marker = "operation_type='"
    if marker in text:  # "Converter is not implemented (OperationDescription(domain='', operation_type='X', version=N))"
        op = text.split(marker, 1)[1].split("'", 1)[0]
        version = text.rsplit("version=", 1)[1].rstrip(")") if "version=" in text else "?"
        return f"onnx2torch {ONNX2TORCH_VERSION} has no converter for the op {op} (opset {version})"
    return text


def fix_flatten(module) -> None:
    """Replace onnx2torch's Flatten modules by one that follows ONNX for every input rank."""
    import torch
    from onnx2torch.node_converters.flatten import OnnxFlatten

    from quant.backends.torch.modules import FlattenAnyRank

    for name, child in list(module.named_children()):
        if isinstance(child, (torch.nn.Flatten, OnnxFlatten)):
            axis = child.start_dim if isinstance(child, torch.nn.Flatten) else child.axis
            replacement = FlattenAnyRank(axis)
            replacement.onnx_mapping = getattr(child, "onnx_mapping", None)
            setattr(module, name, replacement)
