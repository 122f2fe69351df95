"""``--smooth``: per-channel input scaling of depthwise convolutions, folded into their weights.

A depthwise convolution (group = input channels: each output channel reads one input channel) computes the
same function on ``x / s`` with its weight's output channels multiplied by the ``s`` of the input channel
they read. With ``s_c = amax_c / max(amax)`` (``amax_c`` the largest |x| of channel c on the calibration
data) every channel of the convolution's input spans the same range, so its one per-tensor INT8 scale
serves the quiet channels as well as the loud one, as a per-channel activation scale would; the weights are
quantized per output channel, so their scales absorb ``s`` exactly and the weight error does not change.
This is SmoothQuant's migration (Xiao et al., 2023) with all of it moved to the weights, which a depthwise
convolution takes for free.

What the model gets: a ``Mul`` by ``1/s`` (a per-channel constant, in float) before each such convolution's
Q/DQ, and a new weight initializer. TensorRT runs the ``Mul`` as a pointwise layer that it fuses with the
pointwise op before it; the FP32 function is unchanged up to float rounding. Channels whose max is 0 keep
``s = 1``; ``s`` is kept >= ``MIN_SCALE`` so that a nearly dead channel is not scaled up by more than that.

Pure numpy on the graph; the statistics are maxima over every calibration sample, each run alone, so they
are the same whatever the batch size or the order of the data.
"""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.core.onnx_model import initializers, to_array
from quant.qdq.placement import _attr

MIN_SCALE = 1e-4  # s = amax_c / max(amax) is kept at or above this
FLOAT_TYPES = (1, 10)  # float32, float16 weights
WHAT = ("per-channel scaling of depthwise convolutions' inputs folded into their weights (quant.qdq.smooth): "
        "x -> Mul(x, 1/s) -> Conv(W * s), s_c = max|x_c| / max over channels, on the calibration data; the FP32 "
        "function is unchanged")


def smoothable(model, plan) -> list[tuple[str, str]]:
    """(node, input tensor) of each quantized depthwise Conv that can be smoothed, in graph order."""
    constants = initializers(model)
    quantized = {layer.node: layer for layer in plan.layers if layer.op_type == "Conv"}
    out = []
    for node in model.graph.node:
        layer = quantized.get(node.name)
        if layer is None or node.domain not in ("", "ai.onnx") or len(node.input) < 2 or not node.input[0]:
            continue
        weight = constants.get(node.input[1])
        group = _attr(node, "group", 1)
        if weight is None or weight.data_type not in FLOAT_TYPES or len(weight.dims) < 3:
            continue
        if group < 2 or weight.dims[1] != 1 or weight.dims[0] % group or node.input[0] in constants:
            continue
        if node.input[0] not in layer.activations:
            continue
        out.append((node.name, node.input[0]))
    return out


def channel_amax(model, tensors: list[str], batches, total: int | None = None, progress: bool = False
                 ) -> dict[str, np.ndarray]:
    """The largest |x| per channel (axis 1) of each tensor over ``batches`` (FP32, ONNX Runtime)."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.collect.collector import _progress
    from quant.core.onnx_model import with_outputs

    inputs = {v.name for v in model.graph.input}
    runner = OrtRunner(with_outputs(model, [t for t in tensors if t not in inputs]), mode="fp32", spin=False)
    amax: dict[str, np.ndarray | None] = {t: None for t in tensors}
    bar = _progress(total, progress, "smooth: channel ranges")
    for _indices, feeds in batches:
        if bar is not None:
            bar.update(len(next(iter(feeds.values()))))
        names = [t for t in tensors if t not in feeds]
        values = dict(zip(names, runner.run(feeds, names)))
        values.update({t: feeds[t] for t in tensors if t in feeds})
        for tensor in tensors:
            value = np.asarray(values[tensor])
            if value.ndim < 2 or value.dtype.kind != "f":
                raise QuantError(f"--smooth: the input '{tensor}' of a depthwise convolution is not a float tensor "
                                 "with a channel axis", hint="calibrate without --smooth")
            if not np.isfinite(value).all():
                raise QuantError(f"--smooth: the input '{tensor}' of a depthwise convolution holds NaN or inf on the "
                                 "calibration data", hint="check the data and the model in FP32 first")
            axes = tuple(i for i in range(value.ndim) if i != 1)
            channel = np.abs(value.astype(np.float64)).max(axis=axes)
            amax[tensor] = channel if amax[tensor] is None else np.maximum(amax[tensor], channel)
    if bar is not None:
        bar.close()
    return {t: a for t, a in amax.items() if a is not None}


def scales_from(amax: np.ndarray) -> np.ndarray:
    """s per channel (float32): amax_c / max(amax), at least MIN_SCALE; 1 where the channel is all zero."""
    amax = np.asarray(amax, np.float64)
    top = float(amax.max()) if amax.size else 0.0
    if top <= 0.0:
        return np.ones(amax.shape, np.float32)
    scales = np.where(amax > 0.0, np.maximum(amax / top, MIN_SCALE), 1.0)
    return scales.astype(np.float32)


def apply(model, scales: dict[str, np.ndarray]):
    """A copy of ``model`` with each named depthwise Conv's input scaled by 1/s and its weight by s.

    ``scales``: node name -> s (one value per input channel). New names (deterministic, from the graph): the
    Mul ``<node>/smooth``, its output ``<input>_smoothed``, its constant ``<node>_smooth_scale`` and the weight
    ``<weight>_smoothed`` (a weight shared with another node is left as it was for that node).
    """
    onnx = require("onnx")
    from quant.qdq.insert import drop_unused_initializers, name_allocator

    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not scales:
        return out
    graph = out.graph
    constants = initializers(out)
    fresh = name_allocator(graph)
    by_name = {n.name: n for n in graph.node}
    unknown = sorted(set(scales) - set(by_name))
    if unknown:
        raise QuantError(f"--smooth names nodes the model does not have: {', '.join(unknown[:3])}",
                         hint="calibrate again: the scales were measured on another model")
    inserted: dict[str, object] = {}  # conv name -> its Mul node
    replaced = set()
    for name, scale in scales.items():
        node = by_name[name]
        weight = constants[node.input[1]]
        w = to_array(weight)
        s = np.asarray(scale, np.float64)
        if s.shape != (int(_attr(node, "group", 1)),) or w.shape[0] % s.size:
            raise QuantError(f"--smooth: {s.size} scales do not fit the depthwise convolution '{name}' "
                             f"(weight {list(w.shape)}, group {_attr(node, 'group', 1)})",
                             hint="calibrate again: the scales were measured on another model")
        per_output = np.repeat(s, w.shape[0] // s.size).reshape(-1, *([1] * (w.ndim - 1)))
        new_weight = fresh(f"{node.input[1]}_smoothed")
        graph.initializer.append(onnx.numpy_helper.from_array((w.astype(np.float64) * per_output).astype(w.dtype),
                                                              new_weight))
        scale_name = fresh(f"{name}_smooth_scale")
        inverse = (1.0 / s).astype(w.dtype).reshape(1, -1, *([1] * (w.ndim - 2)))
        graph.initializer.append(onnx.numpy_helper.from_array(inverse, scale_name))
        source = node.input[0]
        smoothed = fresh(f"{source}_smoothed")
        inserted[name] = onnx.helper.make_node("Mul", [source, scale_name], [smoothed], name=fresh(f"{name}/smooth"))
        graph.value_info.append(onnx.helper.make_tensor_value_info(smoothed, weight.data_type, None))
        replaced.add(node.input[1])
        node.input[0] = smoothed
        node.input[1] = new_weight
    nodes = []
    for node in graph.node:
        if node.name in inserted:
            nodes.append(inserted[node.name])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(graph, replaced)  # a weight another node (or an If/Loop body) reads stays
    return out


def record(scales: dict[str, np.ndarray], tensors: dict[str, str], amax: dict[str, np.ndarray]) -> dict:
    """quant.json "smoothing": what was done and the scales (the same model is rebuilt from them)."""
    layers = []
    for name, scale in scales.items():
        tensor = tensors[name]
        channel = amax[tensor]
        layers.append({"node": name, "tensor": tensor, "channels": int(scale.size),
                       "amax": float(np.float32(channel.max())),
                       "max_to_min_range": (float(np.float32(channel.max() / channel[channel > 0].min()))
                                            if (channel > 0).any() else None),
                       "scales": [float(v) for v in scale]})
    return {"applied": bool(layers), "what": WHAT, "min_scale": MIN_SCALE, "layers": layers}


def scales_of_record(entry, where: str) -> dict[str, np.ndarray]:
    """node -> s from a quant.json "smoothing" record (QuantError when it is missing or malformed)."""
    layers = entry.get("layers") if isinstance(entry, dict) else None
    if not isinstance(layers, list):
        raise QuantError(f"the manifest '{where}' is malformed: field 'smoothing' is missing or has no 'layers'",
                         hint="calibrate again: quant.json is quant's own record")
    out = {}
    for layer in layers:
        values = layer.get("scales") if isinstance(layer, dict) else None
        if (not isinstance(layer, dict) or not isinstance(layer.get("node"), str) or not isinstance(values, list)
                or not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                or not all(np.isfinite(v) and v > 0 for v in values)):
            raise QuantError(f"the manifest '{where}' is malformed: field 'smoothing.layers' has an entry without "
                             "positive finite scales", hint="calibrate again: quant.json is quant's own record")
        out[layer["node"]] = np.asarray(values, np.float32)
    return out
