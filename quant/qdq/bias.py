"""Bias correction, the graph side: where each quantized layer's bias lives, the model that measures the mean
output shift quantization causes, and the FP32 model with the shift folded into its biases.

A quantized layer computes ``y_q = W_q * Q(x)`` where the FP32 model computes ``y = W * x``. The mean of
``y_q - y`` per output channel, over the calibration data, is a constant the layer's bias can absorb:
``b' = b - mean(y_q - y)``. Only FP32 values change (a Conv/Gemm without a bias gets one, a MatMul's bias
is the constant of the Add that follows it), so the written model stays TensorRT's Q/DQ form.

The shift is measured locally: each layer's twin runs on the FP32 input of that layer, quantized with the
layer's own Q/DQ (the same QuantizeLinear/DequantizeLinear the written model has, built by
:func:`quant.qdq.insert.build_qdq_model`), so one pass measures every layer and a layer kept in float by the
fallback simply keeps its FP32 bias.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.core.lazy import require
from quant.core.onnx_model import initializers, to_array
from quant.qdq.placement import Layer, QuantPlan, _attr


@dataclass(frozen=True)
class BiasTarget:
    """Where a quantized layer's per-channel bias lives.

    ``kind``: 'input' (Conv/ConvTranspose input 2, Gemm input C; ``tensor`` None when the layer has none yet)
    or 'add' (a constant added by the Add node ``add_node`` right after a MatMul). ``axis`` is the channel
    axis of the layer's output (1 for convolutions, -1 for Gemm/MatMul); ``scale`` divides the shift before
    it is added to the stored value (Gemm's beta).
    """

    node: str
    op_type: str
    output: str
    channels: int
    axis: int
    kind: str
    tensor: str | None
    add_node: str | None = None
    scale: float = 1.0


def bias_targets(model, plan: QuantPlan) -> tuple[list[BiasTarget], list[dict]]:
    """(layers whose bias can absorb a per-channel shift, [{"node", "reason"}] for those that cannot)."""
    nodes = {n.name: n for n in model.graph.node}
    constants = initializers(model)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    outputs = {o.name for o in model.graph.output}
    targets, skipped = [], []
    for layer in plan.layers:
        if layer.weight is None:
            skipped.append({"node": layer.node, "reason": "no constant weight (both inputs are activations)"})
            continue
        target = _target(nodes[layer.node], layer, constants, consumers, outputs)
        if isinstance(target, str):
            skipped.append({"node": layer.node, "reason": target})
        else:
            targets.append(target)
    return targets, skipped


def _target(node, layer: Layer, constants: dict, consumers: dict, outputs: set[str]) -> "BiasTarget | str":
    spec, out = layer.weight, node.output[0]
    if spec.axis is None:
        return "per-tensor weight (no output-channel axis)"
    if node.op_type in ("Conv", "ConvTranspose"):
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if bias is not None and (bias not in constants or tuple(constants[bias].dims) != (spec.channels,)):
            return "its bias is not a constant of one value per output channel"
        return BiasTarget(node.name, node.op_type, out, spec.channels, 1, "input", bias)
    if node.op_type == "Gemm":
        beta = _attr(node, "beta", None)
        beta = 1.0 if beta is None else float(beta.f)
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if bias is not None and (bias not in constants or tuple(d for d in constants[bias].dims if d != 1)
                                 not in ((), (spec.channels,))):
            return "its C input is not a constant broadcast along the output channels"
        if beta == 0.0:
            return "Gemm with beta 0: its C input is ignored"
        if layer.weight.tensor != node.input[1]:
            return "a Gemm whose constant is A: its output channels are not a bias axis"
        return BiasTarget(node.name, "Gemm", out, spec.channels, -1, "input", bias, scale=beta)
    # MatMul with a constant weight: the bias is the constant of the one Add that reads its output
    readers = consumers.get(out, [])
    if out in outputs or len(readers) != 1 or readers[0].op_type != "Add":
        return "a MatMul not followed by an Add of a constant: no bias to absorb the shift"
    add = readers[0]
    other = add.input[1] if add.input[0] == out else add.input[0]
    if other not in constants or tuple(d for d in constants[other].dims if d != 1) not in ((spec.channels,),) \
            or (constants[other].dims and constants[other].dims[-1] != spec.channels):
        return "a MatMul whose following Add is not a per-channel constant bias"
    if spec.axis != len(constants[layer.weight.tensor].dims) - 1:
        return "a MatMul whose output channels are not its last axis"
    return BiasTarget(node.name, "MatMul", out, spec.channels, -1, "add", other, add_node=add.name)


def shift_model(model, plan: QuantPlan, targets: list[BiasTarget], activation_amax: dict[str, dict[str, float]],
                weight_amax: dict[str, np.ndarray], weight_storage: str = "int8"):
    """The FP32 model plus, per target, its output without bias in FP32 and, per method of ``activation_amax``
    (method -> tensor -> amax), ``shift`` = (the layer on its Q/DQ'd input with its Q/DQ'd weight) - (the
    layer in FP32), both without bias, as graph outputs.

    Returns (model, {method: {node: shift output}}, {node: FP32 output without bias}). Each method quantizes
    its own alias (Identity) of the layer's input, so one pass measures every method.
    """
    onnx = require("onnx")
    from quant.core.onnx_model import with_outputs
    from quant.qdq.insert import build_qdq_model, name_allocator

    base = onnx.ModelProto()
    base.CopyFrom(model)
    graph = base.graph
    fresh = name_allocator(graph)
    nodes = {n.name: n for n in graph.node}
    layers = {layer.node: layer for layer in plan.layers}
    twin_plan = QuantPlan()
    amax, types = {}, {}
    added, aliases = [], {}
    shifts: dict[str, dict[str, str]] = {method: {} for method in activation_amax}
    floats: dict[str, str] = {}

    def twin_of(original, role: str, inputs: list[str]) -> str:
        twin = onnx.NodeProto()
        twin.CopyFrom(original)
        del twin.input[:]
        twin.input.extend(inputs[:2])  # no bias: the shift is measured on W * x alone
        twin.name = fresh(f"{original.name}_bias_{role}")
        del twin.output[:]
        twin.output.append(fresh(f"{original.output[0]}_bias_{role}"))
        added.append(twin)
        return twin.output[0]

    for target in targets:
        original, layer = nodes[target.node], layers[target.node]
        floats[target.node] = reference = twin_of(original, "float", list(original.input))
        types[layer.weight.tensor] = plan.tensor_types.get(layer.weight.tensor, 1)
        for method, ranges in activation_amax.items():
            inputs = list(original.input)
            for tensor in layer.activations:
                if (tensor, method) not in aliases:
                    alias = aliases[(tensor, method)] = fresh(f"{tensor}_bias_{method}")
                    added.append(onnx.helper.make_node("Identity", [tensor], [alias], name=fresh(f"{alias}_Identity")))
                    amax[alias], types[alias] = ranges[tensor], plan.tensor_types.get(tensor, 1)
                inputs[inputs.index(tensor)] = aliases[(tensor, method)]
            quantized = twin_of(original, f"{method}_quantized", inputs)
            twin = added[-1]
            for index, tensor in enumerate(twin.input):
                if tensor in amax:
                    twin_plan.consumers.setdefault(tensor, []).append((twin.name, index))
            twin_plan.layers.append(Layer(twin.name, layer.op_type, [t for t in twin.input if t in amax], layer.weight))
            shift = shifts[method][target.node] = fresh(f"{original.output[0]}_bias_shift_{method}")
            added.append(onnx.helper.make_node("Sub", [quantized, reference], [shift], name=fresh(f"{shift}_Sub")))
    graph.node.extend(added)
    twin_plan.tensor_types = types
    measured = build_qdq_model(base, twin_plan, amax, weight_amax, weight_storage=weight_storage)
    names = [n for per_method in shifts.values() for n in per_method.values()] + list(floats.values())
    return with_outputs(measured, names), shifts, floats


def corrected_model(model, targets: list[BiasTarget], shifts: dict[str, np.ndarray], skip=frozenset()):
    """A copy of ``model`` whose biases absorb ``shifts`` (node -> mean (quantized - FP32) output per channel).

    Each corrected layer reads a new initializer (``<bias>_corrected``), so a bias shared with another layer
    is left as it was; a Conv/Gemm without a bias gets one. Layers in ``skip`` (kept in float) are unchanged.
    """
    onnx = require("onnx")
    from quant.qdq.insert import name_allocator

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    fresh = name_allocator(graph)
    constants = initializers(out)
    nodes = {n.name: n for n in graph.node}
    dtype = _float_dtype(model)
    replaced = set()
    for target in targets:
        if target.node in skip or target.node not in shifts:
            continue
        correction = -np.asarray(shifts[target.node], np.float64) / target.scale
        if target.tensor is not None:
            old = to_array(constants[target.tensor])
            values = (np.broadcast_to(old.astype(np.float64).reshape(-1), (target.channels,)) + correction)
            values, name = values.astype(old.dtype), fresh(f"{target.tensor}_corrected")
            shape = tuple(constants[target.tensor].dims) if old.size == target.channels else (target.channels,)
            values = values.reshape(shape)
            replaced.add(target.tensor)
        else:
            values, name = correction.astype(dtype), fresh(f"{target.node}_bias_corrected")
        graph.initializer.append(onnx.numpy_helper.from_array(values, name))
        reader = nodes[target.add_node] if target.kind == "add" else nodes[target.node]
        if target.kind == "add":
            reader.input[list(reader.input).index(target.tensor)] = name
        elif target.tensor is not None:
            reader.input[2] = name
        elif len(reader.input) > 2:  # an empty optional bias input ""
            reader.input[2] = name
        else:
            reader.input.append(name)
    used = {t for n in graph.node for t in n.input} | {v.name for v in graph.input} | {v.name for v in graph.output}
    kept = [init for init in graph.initializer if init.name not in replaced or init.name in used]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return out


def _float_dtype(model):
    from quant.qdq.float_types import FLOAT16, model_float_type

    return np.float16 if model_float_type(model) == FLOAT16 else np.float32


def channel_sums(delta: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """(per sample and channel: sum of ``delta`` in float64 [N, C], values per channel per sample).

    ``delta`` is [N, ...] with channels on ``axis``; each sample's sum is computed from that sample alone, so it
    does not depend on the batch it came in.
    """
    delta = np.moveaxis(np.asarray(delta), axis if axis >= 0 else delta.ndim + axis, -1)
    rows = delta.reshape(delta.shape[0], -1, delta.shape[-1])
    sums = np.stack([row.astype(np.float64).sum(axis=0) for row in rows]) if len(rows) else \
        np.zeros((0, delta.shape[-1]))
    return sums, rows.shape[1]


class ExactSum:
    """Sum of float64 values per channel, exact (Python integers on the 2**-1074 grid): independent of the
    order and grouping in which the values arrive; ``mean`` rounds once, at the end."""

    _ONE = 1 << 1074

    def __init__(self, channels: int) -> None:
        self.totals = [0] * channels
        self.count = 0

    def add(self, sums: np.ndarray, count: int) -> None:
        """``sums`` [N, C] (one row per sample), each row the sum of ``count`` values."""
        one = self._ONE
        totals = self.totals
        for row in np.asarray(sums, np.float64).tolist():
            for channel, value in enumerate(row):
                numerator, denominator = value.as_integer_ratio()
                totals[channel] += numerator * (one // denominator)
            self.count += count

    def mean(self) -> np.ndarray:
        if not self.count:
            return np.zeros(len(self.totals))
        scale = self._ONE * self.count
        return np.array([total / scale for total in self.totals], dtype=np.float64)
