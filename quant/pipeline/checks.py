"""Checks on what calibration quantizes: weights that cannot be quantized, ranges that give a guessed scale.

* A NaN or Inf weight (or bias) of a layer quant quantizes is refused before the pass: its per-channel
  scale would be NaN, or Inf would be clipped silently.
* A range that cannot be a float32 scale (NaN, Inf, beyond float32) is refused, naming the tensor.
* A tensor whose histogram holds nothing but zeros (or no value at all) gets amax 1, i.e. scale 1/127:
  a guess, not a measurement. That is legitimate (a branch the calibration data never excites, a dead
  ReLU), so it is not refused, but it is warned about with the tensor's name and recorded in quant.json
  under ``warnings``; the user decides whether the data is representative. The same holds for an amax
  so small that amax / 127 is not a normal float32: the scale is raised to 2**-126 (it still covers the
  whole range, so nothing is clipped) rather than written as a denormal TensorRT flushes to zero.
"""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.onnx_model import initializers, to_array
from quant.core.text import printable
from quant.qdq.insert import INT8_MAX, SMALLEST_SCALE, tiny_amax

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_weights(model, plan) -> None:
    """QuantError naming the first initializer of a quantized layer that holds NaN or Inf."""
    constants = initializers(model)
    layers = {layer.node for layer in plan.layers}
    for node in model.graph.node:
        if node.name not in layers:
            continue
        for tensor in node.input:
            if tensor not in constants:
                continue
            values = to_array(constants[tensor])
            if values.dtype.kind != "f" or values.size == 0:
                continue
            finite = np.isfinite(values)
            if finite.all():
                continue
            bad = values[~finite]
            kind = "NaN" if np.isnan(bad).any() else "Inf"
            raise QuantError(f"initializer '{printable(tensor, 120)}' of node '{printable(node.name, 120)}' holds "
                             f"{kind} ({bad.size} of {values.size} values): a weight with NaN or Inf cannot be "
                             "quantized", hint="fix the model (NaN/Inf weights usually come from a diverged training run)")


def check_ranges(activation_amax: dict[str, dict[str, float]], weight_amax: dict[str, np.ndarray]) -> None:
    """QuantError naming the first tensor whose amax cannot give a float32 scale."""
    for method, table in activation_amax.items():
        for tensor, value in table.items():
            if not (np.isfinite(value) and 0 <= value <= FLOAT32_MAX):
                raise QuantError(f"tensor '{printable(tensor, 120)}' gets amax {value!r} with --method {method}: a "
                                 "scale must be a finite float32", hint="check the model and data for values "
                                 "beyond float32 (e.g. float64 activations above 3.4e38)")
    for tensor, values in weight_amax.items():
        values = np.asarray(values, dtype=np.float64)
        if not (np.isfinite(values).all() and (values >= 0).all() and (values <= FLOAT32_MAX).all()):
            raise QuantError(f"weight '{printable(tensor, 120)}' has a channel range beyond float32",
                             hint="check the model's weights")


def range_warnings(histograms: dict, amax: dict[str, float], weight_amax: dict[str, np.ndarray]) -> list[dict]:
    """One entry {tensor, problem, scale} per tensor whose scale is a guess or was raised (see the module doc)."""
    warnings = []
    for tensor, value in amax.items():
        hist = histograms.get(tensor)
        if hist is not None and hist.count == 0:
            problem = "received no values from the calibration data: its scale 1/127 (amax 1) is a guess"
        elif hist is not None and hist.exponent is None:
            problem = (f"was all zeros on the {hist.count} calibration values: its scale 1/127 (amax 1) is a guess; "
                       "check that the calibration data reaches it")
        elif tiny_amax(value):
            problem = (f"has amax {float(value):.3g}, too small for a normal float32 scale: the scale is raised to "
                       f"2**-126 ({SMALLEST_SCALE:.4g}), which still covers the range")
        else:
            continue
        warnings.append({"tensor": tensor, "problem": problem})
    for tensor, values in weight_amax.items():
        values = np.asarray(values, dtype=np.float64)
        tiny = int(np.sum((values > 0) & (values.astype(np.float32).astype(np.float64) / INT8_MAX < SMALLEST_SCALE)))
        if tiny:
            warnings.append({"tensor": tensor, "problem": f"weight with {tiny} channel(s) of max |w| below "
                             f"127 * 2**-126: their scales are raised to 2**-126"})
    return warnings


def warning_lines(warnings: list[dict], limit: int = 10) -> list[str]:
    """The 'warning: ...' lines to print on stderr (at most ``limit``, then a count)."""
    lines = [f"warning: tensor '{printable(w['tensor'], 120)}' {w['problem']}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"warning: {len(warnings) - limit} more such tensors are listed in quant.json (warnings)")
    return lines
