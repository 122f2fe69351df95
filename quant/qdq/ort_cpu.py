"""The Q/DQ form ONNX Runtime's CPU integer kernels run fastest: u8 activations, s8 per-channel weights.

TensorRT's form (symmetric s8 activations, Q/DQ on the inputs of weighted ops only) runs no faster than
FP32 on ONNX Runtime's CPU provider: its QDQ fusions need a QuantizeLinear on the output of every
integer op, and its u8 x s8 kernels are the fast ones on x86. This form:

* puts one Q/DQ pair on every activation tensor between ops ORT has integer kernels for (Conv, Gemm,
  MatMul; Add, Concat, average pools; MaxPool and shape ops, which pass u8 through unchanged), so ORT
  fuses them into QLinearConv / QGemm / QLinearAdd ... and keeps the data in u8 between them;
* quantizes activations to uint8 with a zero point: the range is the tensor's [min, max] clipped to the
  calibration method's amax (so entropy/percentile/mse clip as they do for TensorRT) and widened to
  include 0; a tensor after ReLU gets all 256 levels over [0, amax];
* folds a ReLU that follows an integer op into that op's output quantization (Q with zero point 0
  clamps at 0, which is what ReLU does), as ORT's own quantizer does;
* quantizes weights per output channel, symmetric int8, and biases to int32 with scale
  x_scale * w_scale, as QLinearConv needs;
* with ``reduce_range`` (x86 without VNNI) uses 7-bit weights [-64, 64]: ORT's AVX2 u8 x s8 kernel adds
  pairs of u8 * s8 products in saturating 16-bit registers, and 2 * 255 * 64 still fits.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant.core.lazy import require
from quant.core.onnx_model import initializers, to_array
from quant.qdq.insert import name_allocator
from quant.qdq.placement import QuantPlan, _float_tensors

# Ops ORT runs on u8 data when their inputs come through DQ and their output goes to Q.
COMPUTE_OPS = {"Add", "Concat", "AveragePool", "GlobalAveragePool"}
# Ops whose output has the same quantization as their input (ORT drops the Q/DQ around them).
PASS_THROUGH_OPS = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"}
FOLDABLE_ACTIVATIONS = {"Relu"}

U8_MAX = 255


@dataclass
class OrtCpuPlan:
    """Which nodes run on integer kernels, and which tensor's range each Q/DQ pair uses."""

    nodes: list[str] = field(default_factory=list)  # nodes that run on integer kernels, graph order
    pairs: dict[str, str] = field(default_factory=dict)  # tensor with a Q/DQ pair -> tensor whose range it takes
    rewired: dict[str, str] = field(default_factory=dict)  # folded ReLU output -> tensor whose DQ replaces it
    folded: list[str] = field(default_factory=list)  # ReLU nodes folded into the Q of the op before them
    weights: dict[str, tuple[str, int]] = field(default_factory=dict)  # weight -> (node, axis)
    biases: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # bias -> (node, activation, weight)

    @property
    def range_tensors(self) -> list[str]:
        """Tensors whose histograms the pairs need (to collect)."""
        return list(dict.fromkeys(self.pairs.values()))

    def to_json(self) -> dict:
        return {"integer_nodes": self.nodes, "folded_relus": self.folded,
                "pairs": [{"tensor": t, "range_of": s} for t, s in self.pairs.items()]}


def plan_ort_cpu(model, plan: QuantPlan, keep_float: frozenset[str] = frozenset()) -> OrtCpuPlan:
    """The ORT CPU placement for a normalized model, built on the TensorRT plan's weighted layers."""
    constants = initializers(model)
    float_tensors = _float_tensors(model)
    graph_outputs = {o.name for o in model.graph.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    producers = {out: node for node in model.graph.node for out in node.output}
    layers = {layer.node: layer for layer in plan.layers if layer.node not in keep_float}
    out = OrtCpuPlan()
    source: dict[str, str] = {}  # tensor on the integer path -> tensor whose range quantizes it
    integer = set()

    def activations(node) -> list[str]:
        return [t for t in node.input if t and t in float_tensors and t not in constants]

    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        op = node.op_type
        if op in FOLDABLE_ACTIVATIONS:
            (x,), (y,) = node.input, node.output
            before = producers.get(x)
            if (before is not None and before.name in integer and x in source and source[x] == x
                    and len(consumers.get(x, [])) == 1 and x not in graph_outputs and y not in graph_outputs):
                source[x] = y  # the pair on x takes the ReLU output's range, [0, max]
                source[y] = y
                out.rewired[y] = x
                out.folded.append(node.name)
            continue
        if node.name in layers:
            layer = layers[node.name]
            inputs = list(layer.activations)
        elif op in COMPUTE_OPS | PASS_THROUGH_OPS:
            inputs = activations(node)
            if not inputs or any(t not in source for t in inputs):
                continue  # only where the data already arrives as u8: otherwise it is an island of Q/DQ
            if any(t in constants for t in node.input if t in float_tensors) and op in COMPUTE_OPS:
                continue
        else:
            continue
        integer.add(node.name)
        out.nodes.append(node.name)
        for tensor in inputs:
            source.setdefault(tensor, tensor)
        for tensor in node.output:
            if tensor in graph_outputs or tensor not in float_tensors:
                continue
            source[tensor] = source[inputs[0]] if op in PASS_THROUGH_OPS else tensor
        if node.name in layers and layers[node.name].weight is not None:
            weight = layers[node.name].weight
            out.weights[weight.tensor] = (node.name, weight.axis)
            bias = _bias(node, constants, weight)
            if bias is not None:
                out.biases[bias] = (node.name, inputs[0], weight.tensor)
    # Every tensor on the integer path gets a pair, except folded ReLU outputs (they become their input's DQ).
    for tensor, src in source.items():
        if tensor in out.rewired:
            continue
        out.pairs[tensor] = _root(src, source)
    return out


def _root(tensor: str, source: dict[str, str]) -> str:
    while source.get(tensor, tensor) != tensor:
        tensor = source[tensor]
    return tensor


def _bias(node, constants, weight) -> str | None:
    """The constant 1-D bias of a Conv, or of a Gemm whose weight is B, one value per output channel."""
    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
        return None
    if node.input[1] != weight.tensor:  # Gemm with a constant A: the bias runs along another axis
        return None
    bias = node.input[2]
    if bias not in constants or tuple(constants[bias].dims) != (weight.channels,):
        return None
    return bias


def u8_params(low: float, high: float, amax: float) -> tuple[np.float32, np.uint8]:
    """(scale, zero point) for the range [low, high] clipped to [-amax, amax] and widened to include 0."""
    low, high = max(float(low), -float(amax)), min(float(high), float(amax))
    low, high = min(low, 0.0), max(high, 0.0)
    scale = np.float32((high - low) / U8_MAX)
    if not scale > np.finfo(np.float32).tiny:  # all zeros: any scale; 1 keeps DQ exact
        return np.float32(1.0), np.uint8(0)
    zero = int(np.clip(np.round(-low / np.float64(scale)), 0, U8_MAX))
    return scale, np.uint8(zero)


def weight_levels(reduce_range: bool) -> int:
    return 64 if reduce_range else 127


def cpu_has_vnni() -> bool | None:
    """True/False on x86 Linux (from /proc/cpuinfo), None where it cannot be told."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), None)
    except OSError:
        return None
    if flags is None:
        return None
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


_PROBE: list[bool] = []


def u8s8_kernels_saturate() -> bool | None:
    """Whether ONNX Runtime's u8 x s8 integer GEMM saturates on this machine (None: ORT not available).

    Runs MatMulInteger on 255 x 127 over K = 256 (exact: 8,290,560). Kernels that add pairs of u8 * s8
    products in 16-bit registers (AVX2 without VNNI) return 4,194,176. The CPU flags alone do not tell:
    a virtual machine may list VNNI that ORT's dispatch does not use.
    """
    if _PROBE:
        return _PROBE[0]
    try:
        import onnxruntime as ort
        onnx = require("onnx")
    except Exception:  # no runtime: cannot tell
        return None
    helper, k = onnx.helper, 256
    weight = onnx.numpy_helper.from_array(np.full((k, 16), 127, np.int8), "B")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
                              [helper.make_tensor_value_info("A", onnx.TensorProto.UINT8, [64, k])],
                              [helper.make_tensor_value_info("Y", onnx.TensorProto.INT32, [64, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    result = session.run(None, {"A": np.full((64, k), 255, np.uint8)})[0]
    _PROBE.append(bool(np.any(result != 255 * 127 * k)))
    return _PROBE[0]


def default_reduce_range() -> tuple[bool, str]:
    """(reduce_range, why) for the machine at hand, measured by running ORT's integer GEMM."""
    saturates = u8s8_kernels_saturate()
    if saturates is True:
        return True, "ONNX Runtime's u8 x s8 kernels saturate on this CPU (probe): 7-bit weights"
    if saturates is False:
        return False, ("ONNX Runtime's u8 x s8 kernels are exact on this CPU (probe): full 8-bit weights; "
                       "use --reduce-range on for x86 targets without VNNI")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return False, f"{machine}: integer kernels there do not saturate, full 8-bit weights"
    if cpu_has_vnni():
        return False, "x86 with VNNI (CPU flags): full 8-bit weights"
    return True, "x86 without VNNI known (CPU flags): 7-bit weights to be safe from 16-bit saturation"


def build_ort_cpu_model(model, plan: OrtCpuPlan, ranges: dict[str, tuple[float, float, float]],
                        weight_amax: dict[str, np.ndarray], reduce_range: bool):
    """A copy of ``model`` in ORT's CPU form. ``ranges[tensor] = (min, max, amax)`` of each range tensor."""
    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants = initializers(out)
    fresh = name_allocator(graph)

    params = {t: u8_params(*ranges[src]) for t, src in plan.pairs.items()}
    levels = weight_levels(reduce_range)
    weight_scales = {w: np.maximum((np.where(np.asarray(weight_amax[w]) > 0, np.asarray(weight_amax[w], np.float64), 1.0)
                                    / levels).astype(np.float32), np.finfo(np.float32).tiny)  # never denormal
                     for w in plan.weights}

    after: dict[str, list] = {}  # tensor -> nodes to emit right after its producer (or at the top)
    dq_of: dict[str, str] = {}
    for tensor in plan.pairs:
        scale, zero = params[tensor]
        s_name, z_name = fresh(f"{tensor}_scale"), fresh(f"{tensor}_zero_point")
        graph.initializer.append(numpy_helper.from_array(np.asarray(scale, np.float32), s_name))
        graph.initializer.append(numpy_helper.from_array(np.asarray(zero, np.uint8), z_name))
        q, dq = fresh(f"{tensor}_quantized"), fresh(f"{tensor}_dequantized")
        after[tensor] = [helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q], name=fresh(f"{tensor}_Q")),
                         helper.make_node("DequantizeLinear", [q, s_name, z_name], [dq], name=fresh(f"{tensor}_DQ"))]
        dq_of[tensor] = dq
    for relu_out, tensor in plan.rewired.items():
        dq_of[relu_out] = dq_of[tensor]

    replaced: dict[tuple[str, str], str] = {}  # (node, input tensor) -> new input
    top: list = []
    for weight, (node_name, axis) in plan.weights.items():
        scale = weight_scales[weight]
        values = to_array(constants[weight])
        shape = [1] * values.ndim
        if axis is not None:  # None: a per-tensor weight (shared by layers with different channel axes)
            shape[axis] = -1
        quantized = np.clip(np.round(values / scale.reshape(shape)), -levels, levels).astype(np.int8)
        q_name, s_name, z_name = fresh(f"{weight}_quantized"), fresh(f"{weight}_scale"), fresh(f"{weight}_zero_point")
        graph.initializer.extend([numpy_helper.from_array(quantized, q_name), numpy_helper.from_array(scale, s_name),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), z_name)])
        dq = fresh(f"{weight}_dequantized")
        top.append(helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [dq], name=fresh(f"{weight}_DQ"),
                                    **({} if axis is None else {"axis": axis})))
        replaced[(node_name, weight)] = dq
    for bias, (node_name, activation, weight) in plan.biases.items():
        x_scale = np.float64(params[plan.rewired.get(activation, activation)][0])
        scale = (x_scale * weight_scales[weight].astype(np.float64)).astype(np.float32)
        safe = np.where(scale > 0, scale.astype(np.float64), 1.0)
        values = np.clip(np.round(to_array(constants[bias]).astype(np.float64) / safe), -2**31, 2**31 - 1).astype(np.int32)
        q_name, s_name, z_name = fresh(f"{bias}_quantized"), fresh(f"{bias}_scale"), fresh(f"{bias}_zero_point")
        graph.initializer.extend([numpy_helper.from_array(values, q_name), numpy_helper.from_array(scale, s_name),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int32), z_name)])
        dq = fresh(f"{bias}_dequantized")
        top.append(helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [dq], name=fresh(f"{bias}_DQ"), axis=0))
        replaced[(node_name, bias)] = dq

    folded = set(plan.folded)
    graph_inputs = [v.name for v in graph.input]
    new_nodes = list(top)
    for tensor in graph_inputs:
        new_nodes += after.get(tensor, [])
    for node in graph.node:
        if node.name in folded:
            continue
        for index, tensor in enumerate(node.input):
            if (node.name, tensor) in replaced:
                node.input[index] = replaced[(node.name, tensor)]
            elif tensor in dq_of:
                node.input[index] = dq_of[tensor]
        new_nodes.append(node)
        for tensor in node.output:
            new_nodes += after.get(tensor, [])
    # A folded ReLU's output that was a graph output is never folded (plan_ort_cpu), so outputs stay intact.
    del graph.node[:]
    graph.node.extend(new_nodes)
    unused = {w for w in plan.weights} | set(plan.biases)
    still_used = {t for node in graph.node for t in node.input}
    keep = [init for init in graph.initializer if init.name not in unused or init.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out
