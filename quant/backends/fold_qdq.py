"""Fold ``constant -> QuantizeLinear -> DequantizeLinear`` into the constant's dequantized values.

Emulating a Q/DQ model exactly (ONNX Runtime with graph optimizations off) would otherwise quantize and
dequantize every FP32 weight again on every run: on a BERT-style encoder that costs far more than the
MatMuls themselves. The folded constant is computed as ONNX Runtime computes it, in float32:
q = saturate(round_half_to_even(w / scale) + zero_point), then (q - zero_point) * scale, so the graph the
emulation runs feeds its weighted ops the same float32 tensors, and its outputs are bit-identical
(tests/integration/test_fold_qdq.py). Only the model given to the emulation session changes; the written
Q/DQ model keeps its Q/DQ pairs for TensorRT.

Folded: a DequantizeLinear whose input comes from a QuantizeLinear whose input, scales and zero points
are all constants (initializers or Constant nodes), per tensor or per axis, int8/uint8/int16/uint16
outputs, float32 scales, no ``block_size``. Anything else is left as it is.
"""
from __future__ import annotations

import numpy as np

from quant.core.lazy import require

_INTEGER = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16}


def _constants(graph, numpy_helper) -> dict[str, np.ndarray]:
    values = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.output) == 1:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def _attribute(node, name, default):
    for attr in node.attribute:
        if attr.name == name:
            return attr.i
    return default


def quantize_dequantize(weight: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
                        axis: int = 1) -> np.ndarray:
    """ONNX Runtime's QuantizeLinear followed by DequantizeLinear, in float32 (round half to even, saturate)."""
    weight = np.asarray(weight, dtype=np.float32)
    dtype = np.uint8 if zero_point is None else zero_point.dtype.type  # ONNX: no zero point means uint8
    zero = np.zeros((), np.int32) if zero_point is None else np.asarray(zero_point).astype(np.int32)
    scale = np.asarray(scale, dtype=np.float32)
    if scale.ndim == 1 and weight.ndim > 0:  # per axis: one scale (and zero point) per slice along ``axis``
        shape = [1] * weight.ndim
        shape[axis % weight.ndim] = scale.size
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if zero.ndim == 1 else zero
    info = np.iinfo(dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scaled = np.rint(weight / scale)  # float32 division, then round half to even
        q = np.clip(scaled.astype(np.float64) + zero, info.min, info.max).astype(np.int32)
        return ((q - zero).astype(np.float32) * scale).astype(np.float32)


def fold_constant_qdq(model):
    """A copy of ``model`` with every constant weight's Q -> DQ replaced by its dequantized values.

    Returns (model, number of folded pairs). The input model is not modified.
    """
    onnx = require("onnx")
    from onnx import numpy_helper

    graph = model.graph
    constants = _constants(graph, numpy_helper)
    producers = {out: node for node in graph.node for out in node.output}
    graph_outputs = {o.name for o in graph.output}
    for value in graph.input:  # an initializer that is also a graph input can be overridden at run time
        constants.pop(value.name, None)
    folded: dict[str, np.ndarray] = {}
    drop: set[int] = set()
    cache: dict[str, np.ndarray] = {}

    def array(name):
        if name not in cache:
            cache[name] = numpy_helper.to_array(constants[name])
        return cache[name]

    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] in graph_outputs:
            continue
        quant = producers.get(node.input[0])
        if quant is None or quant.op_type != "QuantizeLinear":
            continue
        names = list(quant.input) + list(node.input[1:])
        if not all(n in constants for n in names if n) or _attribute(quant, "block_size", 0) or \
                _attribute(node, "block_size", 0):
            continue
        weight, q_scale = array(quant.input[0]), array(quant.input[1])
        q_zero = array(quant.input[2]) if len(quant.input) > 2 and quant.input[2] else None
        dq_scale = array(node.input[1])
        dq_zero = array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight.dtype != np.float32 or q_scale.dtype != np.float32 or dq_scale.dtype != np.float32:
            continue
        if q_zero is not None and q_zero.dtype.name not in _INTEGER or \
                (dq_zero is not None and dq_zero.dtype.name not in _INTEGER):
            continue
        same = (np.array_equal(q_scale, dq_scale) and _attribute(quant, "axis", 1) == _attribute(node, "axis", 1)
                and ((q_zero is None and dq_zero is None) or (q_zero is not None and dq_zero is not None
                                                               and q_zero.dtype == dq_zero.dtype
                                                               and np.array_equal(q_zero, dq_zero))))
        if not same:  # Q and DQ with different parameters: not the pairs quant writes; leave them
            continue
        if not np.all(np.isfinite(q_scale)) or np.any(q_scale == 0):  # left to ONNX Runtime's own handling
            continue
        folded[node.output[0]] = quantize_dequantize(weight, q_scale, q_zero, _attribute(quant, "axis", 1))
        drop.add(id(node))
    if not folded:
        return model, 0

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    quantizers = {id(producers[n.input[0]]) for n in model.graph.node if id(n) in drop}
    pairs = list(zip(graph.node, model.graph.node))
    keep = [(n, original) for n, original in pairs if id(original) not in drop]
    used = {name for n, _ in keep for name in n.input} | graph_outputs
    keep = [(n, o) for n, o in keep if id(o) not in quantizers or any(out_name in used for out_name in n.output)]
    used = {name for n, _ in keep for name in n.input} | graph_outputs
    keep = [n for n, _ in keep if n.op_type != "Constant" or any(out_name in used for out_name in n.output)]
    del graph.node[:]
    graph.node.extend(keep)
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in folded.items())
    return out, len(folded)
