"""Fold ``constant -> QuantizeLinear -> DequantizeLinear`` into the constant's dequantized values.

Emulating a Q/DQ model exactly (ONNX Runtime with graph optimizations off) would otherwise quantize and
dequantize every FP32 weight again on every run: on a BERT-style encoder that costs far more than the
MatMuls themselves. The folded constant is computed as ONNX Runtime computes it, in float32:
q = saturate(round_half_to_even(w / scale) + zero_point), then (q - zero_point) * scale, so the graph the
emulation runs feeds its weighted ops the same float32 tensors, and its outputs are bit-identical
(tests/integration/test_fold_qdq.py). Only the model given to the emulation session changes; the written
Q/DQ model keeps its Q/DQ pairs for TensorRT.

Folded: a DequantizeLinear of a constant integer weight (quant's default INT8 weight storage), and a
DequantizeLinear whose input comes from a QuantizeLinear whose input, scales and zero points are all constants (initializers or Constant nodes), per tensor or per axis, int8/uint8/int16/uint16
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


def fold_constant_qdq(model, cache: dict | None = None):
    """A copy of ``model`` with every constant weight's Q -> DQ replaced by its dequantized values.

    Returns (model, number of folded pairs). The input model is not modified. ``cache`` (a dict the caller
    keeps for variants of one model, e.g. the layer subsets of a fallback search) reuses folded values.
    """
    from onnx import numpy_helper

    out, folded = _fold(model, cache)
    out.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in folded.items())
    return out, len(folded)


def fold_for_session(model, cache: dict | None = None):
    """Like :func:`fold_constant_qdq`, but the folded tensors stay out of the protobuf: returns
    (model with data-less external placeholders, {name: float32 array}) for ONNX Runtime's
    ``add_external_initializers``, so neither the folding nor the serialization is paid again per session."""
    onnx = require("onnx")

    out, folded = _fold(model, cache)
    renamed = {}
    nodes = []
    taken = {init.name for init in out.graph.initializer} | {n.name for n in out.graph.node} | \
        {o for n in out.graph.node for o in n.output} | {i.name for i in out.graph.input} | set(folded)
    for name, value in folded.items():
        # Through an Identity (which aliases its input: no copy), so the weighted op sees a computed tensor,
        # as it saw the DequantizeLinear output: ONNX Runtime pre-packs constant weights for another GEMM
        # path, which would change the float rounding. Float layers keep their constants and pre-packing.
        stored = _fresh(f"{name}_folded", taken)
        nodes.append(onnx.helper.make_node("Identity", [stored], [name], name=_fresh(f"{name}_Identity", taken)))
        renamed[stored] = value
        tensor = onnx.TensorProto()
        tensor.name = stored
        tensor.data_type = onnx.TensorProto.FLOAT
        tensor.dims.extend(value.shape)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", f"quant-folded/{name}"
        out.graph.initializer.append(tensor)
    graph_nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes + graph_nodes)
    return out, renamed


def _fresh(name: str, taken: set) -> str:
    candidate, k = name, 0
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate


def _fold(model, cache: dict | None):
    """(copy of ``model`` without the folded DQs, their Qs and unused constants; {DQ output: folded array})."""
    onnx = require("onnx")
    from onnx import numpy_helper

    cache = {} if cache is None else cache
    graph = model.graph
    constants = _constants(graph, numpy_helper)
    producers = {out: node for node in graph.node for out in node.output}
    graph_outputs = {o.name for o in graph.output}
    for value in graph.input:  # an initializer that is also a graph input can be overridden at run time
        constants.pop(value.name, None)
    folded: dict[str, np.ndarray] = {}
    drop: set[int] = set()
    arrays: dict[str, np.ndarray] = {}

    def small(name):  # scales and zero points (the cache key); a weight is only read on a cache miss
        tensor = constants[name]
        if np.prod(tensor.dims, dtype=np.int64) > 1 << 16:
            return None
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(tensor)
        return arrays[name]

    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] in graph_outputs:
            continue
        quant = producers.get(node.input[0])
        if quant is None:  # DequantizeLinear of a stored integer weight (--weight-storage int8)
            value = _dequantize_constant(node, constants, small, onnx, numpy_helper, cache)
            if value is not None:
                folded[node.output[0]] = value
                drop.add(id(node))
            continue
        if quant.op_type != "QuantizeLinear":
            continue
        names = list(quant.input) + list(node.input[1:])
        if not all(n in constants for n in names if n) or _attribute(quant, "block_size", 0) or \
                _attribute(node, "block_size", 0):
            continue
        q_scale, dq_scale = small(quant.input[1]), small(node.input[1])
        q_zero = small(quant.input[2]) if len(quant.input) > 2 and quant.input[2] else None
        dq_zero = small(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        weight_tensor = constants[quant.input[0]]
        if q_scale is None or dq_scale is None or weight_tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        if q_scale.dtype != np.float32 or dq_scale.dtype != np.float32:
            continue
        if q_zero is not None and q_zero.dtype.name not in _INTEGER or \
                (dq_zero is not None and dq_zero.dtype.name not in _INTEGER):
            continue
        axis = _attribute(quant, "axis", 1)
        same = (np.array_equal(q_scale, dq_scale) and axis == _attribute(node, "axis", 1)
                and ((q_zero is None and dq_zero is None) or (q_zero is not None and dq_zero is not None
                                                               and q_zero.dtype == dq_zero.dtype
                                                               and np.array_equal(q_zero, dq_zero))))
        if not same:  # Q and DQ with different parameters: not the pairs quant writes; leave them
            continue
        if not np.all(np.isfinite(q_scale)) or np.any(q_scale == 0):  # left to ONNX Runtime's own handling
            continue
        key = (quant.input[0], tuple(weight_tensor.dims), q_scale.tobytes(), axis,
               None if q_zero is None else (q_zero.dtype.str, q_zero.tobytes()))
        if key not in cache:
            cache[key] = quantize_dequantize(numpy_helper.to_array(weight_tensor), q_scale, q_zero, axis)
        folded[node.output[0]] = cache[key]
        drop.add(id(node))

    if not folded:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out, folded
    out = _copy_without_initializers(model)  # the folded weights are never copied
    graph = out.graph
    quantizers = {id(producers[n.input[0]]) for n in model.graph.node if id(n) in drop and n.input[0] in producers}
    pairs = list(zip(graph.node, model.graph.node))
    keep = [(n, original) for n, original in pairs if id(original) not in drop]
    from quant.qdq.insert import subgraph_reads

    inner = subgraph_reads(n for n, _ in keep)  # an If/Loop body reads outer names without listing them
    used = {name for n, _ in keep for name in n.input} | graph_outputs | inner
    keep = [(n, o) for n, o in keep if id(o) not in quantizers or any(name in used for name in n.output)]
    used = {name for n, _ in keep for name in n.input} | graph_outputs | inner
    keep = [n for n, _ in keep if n.op_type != "Constant" or any(name in used for name in n.output)]
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(init for init in model.graph.initializer if init.name in used)
    return out, folded


def _dequantize_constant(node, constants, small, onnx, numpy_helper, cache: dict):
    """The float32 values ONNX Runtime's DequantizeLinear computes from a constant integer weight,
    (q - zero_point) * scale, or None where it is not such a node."""
    stored = constants.get(node.input[0])
    types = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16}
    if stored is None or stored.data_type not in types or _attribute(node, "block_size", 0):
        return None
    if not all(n in constants for n in node.input[1:] if n):
        return None
    scale = small(node.input[1])
    zero = small(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or scale.dtype != np.float32 or not np.all(np.isfinite(scale)):
        return None
    axis = _attribute(node, "axis", 1)
    key = ("dq", node.input[0], tuple(stored.dims), scale.tobytes(), axis,
           None if zero is None else (zero.dtype.str, zero.tobytes()))
    if key not in cache:
        q = numpy_helper.to_array(stored).astype(np.int32)
        zp = np.zeros((), np.int32) if zero is None else np.asarray(zero).astype(np.int32)
        sc = scale
        if scale.ndim == 1 and q.ndim > 0:
            shape = [1] * q.ndim
            shape[axis % q.ndim] = scale.size
            sc = scale.reshape(shape)
            zp = zp.reshape(shape) if zp.ndim == 1 else zp
        cache[key] = ((q - zp).astype(np.float32) * sc).astype(np.float32)
    return cache[key]


def _copy_fields(source, target, skip: str) -> None:
    for desc, value in source.ListFields():
        if desc.name == skip:
            continue
        if desc.is_repeated:
            getattr(target, desc.name).extend(value)
        elif desc.message_type is not None:
            getattr(target, desc.name).CopyFrom(value)
        else:
            setattr(target, desc.name, value)


def _copy_without_initializers(model):
    onnx = require("onnx")
    out = onnx.ModelProto()
    _copy_fields(model, out, skip="graph")
    _copy_fields(model.graph, out.graph, skip="initializer")
    return out
