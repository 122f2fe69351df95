"""ONNX graph -> quant's own torch executor (``quant.backends.torch.graph.OnnxGraph``), after constant folding.

The GPU path needs torch alone: no converter package (onnx2torch's metadata names torchvision, and pip would
then swap a CPU torch for a CUDA build; see ``graph.py`` for why the executor is ours). ``fold_constants``
turns Identity of a constant into the constant and a QuantizeLinear -> DequantizeLinear chain on a constant
(a Q/DQ model's weights) into the dequantized constant, computed once in NumPy exactly as ONNX Runtime
computes it, instead of on every batch.

A model with an op the executor does not implement fails with one QuantError line naming the op and the node.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.core.lazy import require


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
    """ONNX DequantizeLinear in NumPy: (q - zero_point) * scale in float32, returned in the scale's type."""
    s = _broadcast(np.asarray(scale, np.float32), q.ndim, axis)
    zp = 0 if zero_point is None else _broadcast(zero_point.astype(np.int32), q.ndim, axis)
    kind = np.asarray(scale).dtype
    return ((q.astype(np.int32) - zp).astype(np.float32) * s).astype(kind if kind.kind == "f" else np.float32)


# ------------------------------------------------------------------ conversion
@dataclass
class Converted:
    """The executor of a graph and where each ONNX tensor comes from."""

    module: object  # quant.backends.torch.graph.OnnxGraph
    inputs: list[str]  # ONNX graph inputs, in the module's positional order
    producers: dict[str, str]  # ONNX tensor -> the node that computes it


def convert(model) -> Converted:
    """An OnnxGraph of ``model`` (raised to opset 13 first if older; Identity and Q -> DQ of constants folded)."""
    from quant.core.onnx_model import MIN_OPSET, normalize, opset_version

    require("torch")
    from quant.backends.torch.graph import OnnxGraph

    if opset_version(model) < MIN_OPSET:
        model = normalize(model)
    module = OnnxGraph(fold_constants(model))
    return Converted(module, list(module.input_names), dict(module.producers))
