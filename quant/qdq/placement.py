"""Where Q/DQ goes for TensorRT's explicit quantization, and what is left in float and why.

Rules (DESIGN.md): quantize the activation and weight inputs of Conv, ConvTranspose, Gemm and MatMul
(weights per output channel, activations per tensor), never their outputs or biases; put a Q/DQ pair on
the residual input of an Add that follows a quantized Conv (directly or through a BatchNormalization) so
TensorRT fuses conv + add in INT8 (its fusion is for convolutions, so an Add after MatMul gets none); leave out
GEMV-shaped MatMul/Gemm, convolutions with very few output channels or with few channels that TensorRT's
INT8 kernels cannot vectorize (fewer than 16 on one side and neither count a multiple of 4), and what the
user excludes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.onnx_model import initializers

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MIN_CONV_CHANNELS = 4
# TensorRT's INT8 convolutions read channels in vectors of 4 or 32 (NC/4HW4, NC/32HW32); a conv with fewer
# than SMALL_CONV_CHANNELS channels on one side and neither count a multiple of the smaller vector is padded
# on both, so INT8 costs accuracy without paying off (Model Optimizer's int8 rule, with 8, is stricter).
SMALL_CONV_CHANNELS = 16
CONV_CHANNEL_ALIGN = 4


@dataclass
class WeightSpec:
    """A weight's Q/DQ: per channel along ``axis`` (its output-channel axis), or per tensor when ``axis`` is None."""

    tensor: str
    axis: int | None
    channels: int


@dataclass
class Layer:
    """A weighted op with its Q/DQ group: the activations and the weight it quantizes."""

    node: str
    op_type: str
    activations: list[str]
    weight: WeightSpec | None


@dataclass
class QuantPlan:
    layers: list[Layer] = field(default_factory=list)
    residuals: list[dict] = field(default_factory=list)  # {"node": Add, "tensor": residual input, "layer": its conv}
    excluded: list[dict] = field(default_factory=list)  # {"node", "op_type", "reason"}
    # tensor -> [(node name, input index)] whose input is replaced by the tensor's DQ output
    consumers: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    per_tensor_weights: dict[str, str] = field(default_factory=dict)  # weight -> why it is quantized per tensor
    tensor_types: dict[str, int] = field(default_factory=dict)  # quantized tensor -> ONNX element type (cached)

    @property
    def activations(self) -> list[str]:
        """Activation tensors to calibrate, in graph order."""
        return list(self.consumers)

    @property
    def weights(self) -> dict[str, WeightSpec]:
        return {layer.weight.tensor: layer.weight for layer in self.layers if layer.weight is not None}

    def to_json(self) -> dict:
        return {
            "layers": [{"node": l.node, "op_type": l.op_type, "activations": l.activations,
                        "weight": None if l.weight is None else {"tensor": l.weight.tensor, "axis": l.weight.axis}}
                       for l in self.layers],
            "residual_adds": self.residuals,
            "excluded": self.excluded,
            **({"per_tensor_weights": self.per_tensor_weights} if self.per_tensor_weights else {}),
        }


def _attr(node, name, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute.i if attribute.type == attribute.INT else attribute
    return default


class Heuristic(str):
    """A reason to keep a layer in float that is a performance heuristic, not a limit: --include overrides it."""


def plan_qdq(model, exclude: set[str] | frozenset[str] = frozenset(), float_types: set[str] | None = None,
             exclude_op_types: Sequence[str] = (), exclude_patterns: Sequence[str] = (),
             include: Sequence[str] = ()) -> QuantPlan:
    """The Q/DQ placement for a normalized model (Constant nodes already turned into initializers).

    ``exclude`` names nodes, ``exclude_op_types`` op types and ``exclude_patterns`` regular expressions
    (``re.search`` on the node name) kept in float; ``include`` names layers quantized although a heuristic
    (few channels, GEMV shape) or an op-type/regex exclusion would keep them in float (the more specific
    selection wins; a node both included and excluded by name is refused by the config).
    """
    excluded_by = _exclusion(exclude, exclude_op_types, exclude_patterns)
    include = set(include)
    constants = initializers(model)
    float_tensors = _float_tensors(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    plan = QuantPlan()

    def add_consumer(tensor: str, node, index: int) -> None:
        plan.consumers.setdefault(tensor, [])
        if (node.name, index) not in plan.consumers[tensor]:
            plan.consumers[tensor].append((node.name, index))

    def skip(node, reason: str) -> None:
        plan.excluded.append({"node": node.name, "op_type": node.op_type, "reason": reason})

    quantized_nodes: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS or node.domain not in ("", "ai.onnx"):
            continue
        why = excluded_by(node)
        if why and node.name in include:  # a node named by --include beats an op-type or regex exclusion
            why = ""
        if why:
            skip(node, why)
            continue
        decision = _weighted_inputs(node, constants, float_tensors)
        if isinstance(decision, Heuristic) and node.name in include:
            decision = _weighted_inputs(node, constants, float_tensors, heuristics=False)
        if isinstance(decision, str):
            if node.name in include:
                raise QuantError(f"--include {node.name}: this {node.op_type} cannot be quantized: {decision}",
                                 hint="--include overrides the speed heuristics only (few channels, GEMV shape)")
            skip(node, decision)
            continue
        activations, weight = decision
        for index, tensor in activations:
            add_consumer(tensor, node, index)
        plan.layers.append(Layer(node.name, node.op_type, [t for _, t in activations], weight))
        quantized_nodes.add(node.name)
    for node, holder in subgraph_weighted_ops(model.graph):
        skip(node, f"inside a subgraph of {holder}: quant places Q/DQ in the main graph only, so this layer "
                   "runs in float")
    _per_tensor_where_axes_differ(plan)

    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or excluded_by(node):
            continue
        convs = [_conv_before(t, producers, quantized_nodes) for t in node.input]
        if not any(convs):
            continue
        index = 1 if all(convs) else convs.index(None)
        tensor = node.input[index]
        if tensor in constants or tensor not in float_tensors:
            continue
        add_consumer(tensor, node, index)
        # The residual Q/DQ belongs to the conv TensorRT fuses the Add into: it goes to float with it.
        plan.residuals.append({"node": node.name, "tensor": tensor, "layer": convs[1 - index]})
    return plan


def subgraph_weighted_ops(graph):
    """(node, "If 'name'") for every weighted op inside the subgraphs (If, Loop, Scan bodies, any depth) of ``graph``."""
    from quant.qdq.insert import _node_subgraphs  # insert imports this module

    for node in graph.node:
        for subgraph in _node_subgraphs([node]):
            for inner in subgraph.node:
                if inner.op_type in WEIGHTED_OPS and inner.domain in ("", "ai.onnx"):
                    yield inner, f"{node.op_type} '{node.name}'"


def _per_tensor_where_axes_differ(plan: QuantPlan) -> None:
    """A weight shared by layers whose output channels lie on different axes gets one per-tensor scale.

    E.g. W in MatMul(x, W) (channels on W's last axis) and MatMul(W, a) (channels on its first): one Q/DQ
    per weight tensor serves every use, and no single axis is right for both.
    """
    axes: dict[str, set] = {}
    for layer in plan.layers:
        if layer.weight is not None:
            axes.setdefault(layer.weight.tensor, set()).add(layer.weight.axis)
    for layer in plan.layers:
        if layer.weight is not None and len(axes[layer.weight.tensor]) > 1:
            layer.weight = WeightSpec(layer.weight.tensor, None, 1)
            plan.per_tensor_weights[layer.weight.tensor] = (
                f"shared by layers whose output channels lie on different axes {sorted(axes[layer.weight.tensor])}: "
                "one per-tensor scale")


def _conv_before(tensor: str, producers: dict, quantized: set[str]) -> str | None:
    """The quantized Conv/ConvTranspose producing ``tensor`` (directly or through a BatchNormalization)."""
    node = producers.get(tensor)
    if node is not None and node.op_type == "BatchNormalization":
        node = producers.get(node.input[0])
    if node is not None and node.name in quantized and node.op_type in ("Conv", "ConvTranspose"):
        return node.name
    return None


def _exclusion(names, op_types, patterns):
    """node -> why the user keeps it in float ('' when not)."""
    import re

    names, op_types = set(names), set(op_types)
    compiled = [(p, re.compile(p)) for p in patterns]

    def excluded_by(node) -> str:
        if node.name in names:
            return "excluded by the user (--exclude)"
        if node.op_type in op_types:
            return f"excluded by the user (--exclude-op-type {node.op_type})"
        for pattern, regex in compiled:
            if regex.search(node.name):
                return f"excluded by the user (--exclude-regex {pattern})"
        return ""

    return excluded_by


def _unaligned_small_conv(out_channels: int, in_channels: int) -> bool:
    """Few channels on one side and neither side a multiple of the INT8 kernels' vector width."""
    small = out_channels < SMALL_CONV_CHANNELS or in_channels < SMALL_CONV_CHANNELS
    return small and out_channels % CONV_CHANNEL_ALIGN != 0 and in_channels % CONV_CHANNEL_ALIGN != 0


def _weighted_inputs(node, constants, float_tensors, heuristics: bool = True):
    """([(input index, activation tensor)], WeightSpec | None), or a reason to leave the node in float.

    A reason that is a :class:`Heuristic` goes away with ``heuristics=False`` (the user's --include).
    """
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        if len(node.input) < 2 or node.input[1] not in constants:
            return "weight is not a constant"
        if node.input[0] not in float_tensors:
            return "input is not a float tensor"
        shape = tuple(constants[node.input[1]].dims)
        group = _attr(node, "group", 1)
        if op == "ConvTranspose":
            if group != 1:
                return "grouped ConvTranspose: its output channels do not lie on one weight axis"
            axis, channels = 1, shape[1]
        else:
            axis, channels = 0, shape[0]
        if channels < MIN_CONV_CHANNELS and heuristics:
            return Heuristic(f"{channels} output channel(s): too few for TensorRT's INT8 kernels to pay off, "
                             "kept in float (--include quantizes it)")
        if op == "Conv" and heuristics and _unaligned_small_conv(channels, shape[1]):
            return Heuristic(f"{channels} output and {shape[1]} input channel(s) per group: fewer than "
                             f"{SMALL_CONV_CHANNELS} on one side and neither a multiple of {CONV_CHANNEL_ALIGN}, "
                             "so TensorRT's INT8 kernels pad them and do not pay off; kept in float "
                             "(--include quantizes it)")
        return [(0, node.input[0])], WeightSpec(node.input[1], axis, channels)
    # Gemm / MatMul
    a, b = node.input[0], node.input[1]
    if a in constants and b in constants:
        return "both inputs are constants (folded at build time)"
    if op == "Gemm":
        trans_a, trans_b = _attr(node, "transA", 0), _attr(node, "transB", 0)
    else:
        trans_a = trans_b = 0
    gemv = Heuristic("1-D weight (GEMV-shaped): kept in float (--include quantizes it)")
    if b in constants:
        shape = tuple(constants[b].dims)
        if len(shape) < 2 and heuristics:
            return gemv
        axis = None if len(shape) < 2 else 0 if trans_b else len(shape) - 1  # 1-D: no channel axis, per tensor
        weight, activations = WeightSpec(b, axis, 1 if axis is None else shape[axis]), [(0, a)]
    elif a in constants:
        shape = tuple(constants[a].dims)
        if len(shape) < 2 and heuristics:
            return gemv
        axis = None if len(shape) < 2 else len(shape) - 1 if trans_a else len(shape) - 2
        weight, activations = WeightSpec(a, axis, 1 if axis is None else shape[axis]), [(1, b)]
    else:
        weight, activations = None, [(0, a), (1, b)]
    if weight is not None and weight.channels == 1 and heuristics:
        return Heuristic("GEMV-shaped (a single output channel): kept in float (--include quantizes it)")
    if any(t not in float_tensors for _, t in activations):
        return "input is not a float tensor"
    return activations, weight


def _float_tensors(model) -> set[str]:
    """Names of tensors known or presumed to be float (unknown intermediate types count as float)."""
    onnx_float = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
    typed = {}
    for value in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        typed[value.name] = value.type.tensor_type.elem_type
    for init in model.graph.initializer:
        typed[init.name] = init.data_type
    names = set()
    for node in model.graph.node:
        for tensor in list(node.input) + list(node.output):
            if tensor and typed.get(tensor, 1) in onnx_float:
                names.add(tensor)
    for tensor, elem in typed.items():
        if elem in onnx_float:
            names.add(tensor)
    return names


def weight_array(model, spec: WeightSpec) -> np.ndarray:
    from quant.core.onnx_model import to_array

    return to_array(initializers(model)[spec.tensor])
