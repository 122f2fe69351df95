"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019), folded into the FP32 weights.

For a pair Conv1 -> [Relu | LeakyRelu | PRelu | nothing] -> Conv2 where Conv1's output feeds only that path,
output channel i of Conv1 is divided by s_i and input channel i of Conv2 multiplied by s_i: the activation
between them is positively homogeneous, so the FP32 function is unchanged (up to float32 rounding) while
the per-tensor activation between them, and the weights on both sides, see balanced channel ranges.
s_i = sqrt(r1_i / r2_i), with r1_i the max |w| of Conv1's output channel i and r2_i the max |w| of Conv2's
input channel i (both become sqrt(r1_i * r2_i)). Depthwise convolutions (group = channels) take part on
either side; other grouped convolutions are left alone. Pure numpy on the graph; no data needed.
"""
from __future__ import annotations

import numpy as np

from quant.core.lazy import require
from quant.core.onnx_model import initializers, to_array
from quant.qdq.placement import _attr

HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu")  # f(s * x) = s * f(x) for s > 0 (PRelu: a per-channel slope too)
ITERATIONS = 4  # sweeps over all pairs: a chain of convolutions converges in a few
MIN_RANGE = 1e-12  # a channel whose weights are (almost) all zero is left as it is


def equalization_pairs(model) -> list[tuple[str, str, str | None]]:
    """(conv1, conv2, activation node or None) for every pair that can be equalized, in graph order."""
    graph = model.graph
    constants = initializers(model)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    outputs = {o.name for o in graph.output}

    def only_reader(tensor):
        readers = consumers.get(tensor, [])
        return readers[0] if len(readers) == 1 and tensor not in outputs else None

    pairs = []
    for node in graph.node:
        if not _equalizable_conv(node, constants):
            continue
        reader, activation = only_reader(node.output[0]), None
        if reader is not None and reader.op_type in HOMOGENEOUS and reader.domain in ("", "ai.onnx"):
            if reader.op_type == "PRelu" and not _per_channel_slope(reader, constants, _channels(node, constants)):
                continue
            activation, reader = reader, only_reader(reader.output[0])
        if reader is None or not _equalizable_conv(reader, constants) or reader.input[0] != (
                activation.output[0] if activation is not None else node.output[0]):
            continue
        if _in_channels(reader, constants) != _channels(node, constants):
            continue
        pairs.append((node.name, reader.name, activation.name if activation is not None else None))
    return pairs


def _equalizable_conv(node, constants) -> bool:
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return False
    if node.input[1] not in constants or (len(node.input) > 2 and node.input[2] and node.input[2] not in constants):
        return False
    weight = constants[node.input[1]]
    if weight.data_type != 1:  # float32 weights only
        return False
    group = _attr(node, "group", 1)
    return group == 1 or (weight.dims[1] == 1 and group == weight.dims[0])  # dense or depthwise


def _depthwise(node, constants) -> bool:
    return _attr(node, "group", 1) != 1


def _channels(node, constants) -> int:
    return int(constants[node.input[1]].dims[0])


def _in_channels(node, constants) -> int:
    dims = constants[node.input[1]].dims
    return int(dims[0]) if _depthwise(node, constants) else int(dims[1])


def _per_channel_slope(node, constants, channels: int) -> bool:
    slope = node.input[1]
    return slope in constants and int(np.prod(constants[slope].dims)) in (1, channels)


def equalize(model, iterations: int = ITERATIONS):
    """(a copy of ``model`` with every equalization pair balanced, [{"conv1", "conv2", "max_scale", "min_scale"}]).

    Each touched weight or bias gets a new initializer (``<name>_equalized``) so a tensor shared elsewhere is
    left as it was; the layers keep their names.
    """
    onnx = require("onnx")
    from quant.qdq.insert import drop_unused_initializers, name_allocator

    out = onnx.ModelProto()
    out.CopyFrom(model)
    pairs = equalization_pairs(out)
    if not pairs:
        return out, []
    graph = out.graph
    nodes = {n.name: n for n in graph.node}
    constants = initializers(out)
    values: dict[tuple[str, int], np.ndarray] = {}  # (node, input index) -> current float64 array

    def value(node_name, index):
        key = (node_name, index)
        if key not in values:
            values[key] = to_array(constants[nodes[node_name].input[index]]).astype(np.float64)
        return values[key]

    totals = {pair[:2]: None for pair in pairs}
    for _ in range(iterations):
        for first, second, _activation in pairs:
            w1, w2 = value(first, 1), value(second, 1)
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = (np.abs(w2).reshape(w2.shape[0], -1).max(axis=1) if _depthwise(nodes[second], constants)
                  else np.abs(np.moveaxis(w2, 1, 0)).reshape(w2.shape[1], -1).max(axis=1))
            usable = (r1 > MIN_RANGE) & (r2 > MIN_RANGE)
            scale = np.ones_like(r1)
            scale[usable] = np.sqrt(r1[usable] / r2[usable])
            w1 /= scale.reshape(-1, *([1] * (w1.ndim - 1)))
            if len(nodes[first].input) > 2 and nodes[first].input[2]:
                bias = value(first, 2)
                bias /= scale
            if _depthwise(nodes[second], constants):
                w2 *= scale.reshape(-1, *([1] * (w2.ndim - 1)))
            else:
                w2 *= scale.reshape(1, -1, *([1] * (w2.ndim - 2)))
            totals[(first, second)] = scale if totals[(first, second)] is None else totals[(first, second)] * scale
    fresh = name_allocator(graph)
    replaced = set()
    for (node_name, index), array in values.items():
        node = nodes[node_name]
        old = node.input[index]
        name = fresh(f"{old}_equalized")
        graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
        node.input[index] = name
        replaced.add(old)
    drop_unused_initializers(graph, replaced)  # a weight another node (or an If/Loop body) reads stays
    report = [{"conv1": a, "conv2": b, "max_scale": float(totals[(a, b)].max()), "min_scale": float(totals[(a, b)].min())}
              for a, b, _ in pairs]
    return out, report
