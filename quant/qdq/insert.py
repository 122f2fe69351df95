"""Build the TensorRT-ready Q/DQ model: symmetric INT8, zero point 0, scale = amax / 127."""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.qdq.placement import QuantPlan

INT8_MAX = 127


SMALLEST_SCALE = float(np.finfo(np.float32).tiny)
"""The smallest normal float32 (2**-126): TensorRT needs a finite positive scale, and a denormal one is
flushed to zero on the GPU. An amax below 127 * 2**-126 gets this scale (it still covers the whole range)."""


def scale_from_amax(amax) -> np.ndarray:
    """float32 scale(s) = amax / 127, always finite, positive and normal.

    An amax of 0 (a tensor that was all zeros) gets amax 1; an amax so small that amax / 127 is not a normal
    float32 gets :data:`SMALLEST_SCALE` (``tiny_amax`` finds these, to warn). NaN, Inf, a negative amax or
    one beyond float32 is refused: such a scale would be written to the model and the cache.
    """
    amax = np.asarray(amax, dtype=np.float64)
    bad = ~np.isfinite(amax) | (amax < 0) | (amax > np.finfo(np.float32).max)
    if np.any(bad):
        raise QuantError(f"cannot quantize with amax {amax[bad].flat[0]!r}: an amax must be finite, >= 0 and "
                         "within float32", hint="check the model's weights and the calibration data for NaN/Inf")
    amax = np.where(amax > 0, amax, 1.0)
    scale = (amax.astype(np.float32).astype(np.float64) / INT8_MAX).astype(np.float32)
    return np.maximum(scale, np.float32(SMALLEST_SCALE))


def tiny_amax(amax) -> bool:
    """True where ``amax`` is positive but too small for a normal float32 scale (scale_from_amax raises it)."""
    amax = np.asarray(amax, dtype=np.float64)
    return bool(np.any((amax > 0) & (amax.astype(np.float32).astype(np.float64) / INT8_MAX < SMALLEST_SCALE)))


INT8_WEIGHT_MAX = 127  # TensorRT takes pre-quantized INT8 weights in [-127, 127]


def quantize_weight(weight: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """INT8 weight = clip(round_half_even(w / scale), -127, 127), computed in float32 as QuantizeLinear does."""
    scale = np.asarray(scale, np.float32)
    if axis is not None:
        shape = [1] * weight.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    q = np.round(np.asarray(weight, np.float32) / scale)
    return np.clip(q, -INT8_WEIGHT_MAX, INT8_WEIGHT_MAX).astype(np.int8)


def build_qdq_model(model, plan: QuantPlan, activation_amax: dict[str, float],
                    weight_amax: dict[str, np.ndarray], keep_float: frozenset[str] = frozenset(),
                    weight_storage: str = "int8"):
    """A copy of ``model`` with Q/DQ pairs inserted per ``plan``.

    Layers named in ``keep_float`` stay float: their activation and weight Q/DQ, and the residual Q/DQ of
    the Add fused into them, are left out (a tensor still shared with a quantized layer keeps its pair there).
    ``weight_storage="int8"`` stores each quantized weight as an INT8 initializer read by a DequantizeLinear
    alone (Model Optimizer's dq_only form; a quarter of the float weight's size); ``"float"`` keeps the float
    weight with a QuantizeLinear/DequantizeLinear pair. Both give the same dequantized weights whenever no
    weight value rounds to -128 (never with max-|w| weight ranges).
    """
    from quant.qdq.float_types import check_quantizable_types, quantized_types, raise_versions, required_opset, scale_array

    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    if not plan.tensor_types:  # type inference once per plan (sensitivity/fallback build many models)
        plan.tensor_types = quantized_types(model, plan)
    types = plan.tensor_types
    check_quantizable_types(types)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out = raise_versions(out, required_opset(types))  # float16 scales need opset 19; IR version to match
    graph = out.graph
    fresh = name_allocator(graph)

    # Which (node, input index) pairs are rewired to which tensor's DQ output.
    rewire: dict[tuple[str, int], str] = {}
    float_layers = {layer.node for layer in plan.layers if layer.node in keep_float}
    float_nodes = float_layers | {r["node"] for r in plan.residuals if r["layer"] in float_layers}
    for tensor, consumers in plan.consumers.items():
        for node_name, index in consumers:
            if node_name not in float_nodes:
                rewire[(node_name, index)] = tensor
    weight_consumers: dict[tuple[str, int], str] = {}
    for layer in plan.layers:
        if layer.weight is not None and layer.node not in float_layers:
            index = _input_index(model, layer.node, layer.weight.tensor)
            weight_consumers[(layer.node, index)] = layer.weight.tensor

    new_nodes = []
    dq_output: dict[str, str] = {}

    def emit_pair(tensor: str, scale: np.ndarray, axis: int | None) -> str:
        key = tensor
        if key in dq_output:
            return dq_output[key]
        scale_name, zero_name = fresh(f"{tensor}_scale"), fresh(f"{tensor}_zero_point")
        # QuantizeLinear's scale has its input's type, and DequantizeLinear returns the scale's type
        graph.initializer.append(numpy_helper.from_array(scale_array(scale, types[tensor]), scale_name))
        graph.initializer.append(numpy_helper.from_array(np.zeros(np.shape(scale), dtype=np.int8), zero_name))
        quantized, dequantized = fresh(f"{tensor}_quantized"), fresh(f"{tensor}_dequantized")
        extra = {} if axis is None else {"axis": axis}
        new_nodes.append(helper.make_node("QuantizeLinear", [tensor, scale_name, zero_name], [quantized],
                                          name=fresh(f"{tensor}_QuantizeLinear"), **extra))
        new_nodes.append(helper.make_node("DequantizeLinear", [quantized, scale_name, zero_name], [dequantized],
                                          name=fresh(f"{tensor}_DequantizeLinear"), **extra))
        dq_output[key] = dequantized
        return dequantized

    constants = {init.name: init for init in graph.initializer}

    def emit_weight_dq(tensor: str, scale: np.ndarray, axis: int | None) -> str:
        if tensor in dq_output:
            return dq_output[tensor]
        scale = scale_array(scale, types[tensor])
        values = quantize_weight(numpy_helper.to_array(constants[tensor]), scale, axis)
        names = [fresh(f"{tensor}_quantized"), fresh(f"{tensor}_scale"), fresh(f"{tensor}_zero_point")]
        graph.initializer.extend([numpy_helper.from_array(values, names[0]), numpy_helper.from_array(scale, names[1]),
                                  numpy_helper.from_array(np.zeros(np.shape(scale), dtype=np.int8), names[2])])
        dequantized = fresh(f"{tensor}_dequantized")
        extra = {} if axis is None else {"axis": axis}
        new_nodes.append(helper.make_node("DequantizeLinear", names, [dequantized],
                                          name=fresh(f"{tensor}_DequantizeLinear"), **extra))
        dq_output[tensor] = dequantized
        return dequantized

    weights = plan.weights
    emit_weight = emit_weight_dq if weight_storage == "int8" else emit_pair
    for node in graph.node:
        for index, tensor in enumerate(node.input):
            if (node.name, index) in rewire:
                node.input[index] = emit_pair(tensor, scale_from_amax(activation_amax[tensor]), None)
            elif (node.name, index) in weight_consumers:
                spec = weights[tensor]
                node.input[index] = emit_weight(tensor, scale_from_amax(weight_amax[tensor]), spec.axis)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    if weight_storage == "int8":
        drop_unused_initializers(graph, set(weight_consumers.values()))
    return out


def drop_unused_initializers(graph, candidates: set[str]) -> None:
    """Remove the initializers in ``candidates`` that no node reads any more (a subgraph included), nor a graph
    input/output names."""
    used = {t for node in graph.node for t in node.input}
    used |= {v.name for v in graph.input} | {v.name for v in graph.output}
    for attribute_graph in _subgraphs(graph):
        used |= {t for node in attribute_graph.node for t in node.input}
    kept = [init for init in graph.initializer if init.name not in candidates or init.name in used]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


def _subgraphs(graph):
    yield from _node_subgraphs(graph.node)


def _node_subgraphs(nodes):
    for node in nodes:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield sub
                yield from _subgraphs(sub)


def subgraph_reads(nodes) -> set[str]:
    """Every name the subgraphs of ``nodes`` (If branches, Loop/Scan bodies, at any depth) read: outer-scope
    tensors a node uses without listing them as its inputs."""
    return {t for g in _node_subgraphs(nodes) for n in g.node for t in n.input}


def name_allocator(graph):
    """``fresh(name)``: ``name``, or ``name_1``, ``name_2`` ... whichever no tensor or node of ``graph`` uses yet."""
    taken = {t for node in graph.node for t in list(node.input) + list(node.output)}
    taken |= {init.name for init in graph.initializer} | {v.name for v in graph.input} | {n.name for n in graph.node}

    def fresh(name: str) -> str:
        candidate, suffix = name, 1
        while candidate in taken:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        taken.add(candidate)
        return candidate

    return fresh


def _input_index(model, node_name: str, tensor: str) -> int:
    node = next(n for n in model.graph.node if n.name == node_name)
    return list(node.input).index(tensor)
