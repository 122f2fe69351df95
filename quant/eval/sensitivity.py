"""Per-layer sensitivity in both directions, plus a cheap one-pass local score.

* only-this: the metric with only this layer quantized (how much it hurts on its own);
* all-but-this: the metric with every other layer quantized (how much keeping it in float recovers);
* local SQNR: the layer's output with its inputs and weights quantized against its FP32 output, from the
  FP32 activations of a single forward pass (no full-model evaluations).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from quant.core.io import to_jsonable
from quant.core.numbers import with_infinities
from quant.core.text import csv_field, printable
from quant.core.lazy import require
from quant.eval.heldout import HeldOut
from quant.eval.metrics import sqnr_db
from quant.eval.scoring import Metric


LAYER_NUMBERS = ("only_this", "all_but_this", "local_sqnr_db", "recovery", "harm")  # an SQNR metric can be inf


@dataclass
class LayerScore:
    node: str
    op_type: str
    only_this: float
    all_but_this: float
    local_sqnr_db: float
    recovery: float = 0.0  # metric gain from keeping this layer in float (all-but-this vs all quantized)
    harm: float = 0.0  # metric loss from quantizing only this layer (FP32 vs only-this)


@dataclass
class SensitivityReport:
    metric: str
    higher_is_better: bool
    fp32: float
    all_quantized: float
    layers: list[LayerScore]  # ranked, most sensitive first
    rank_correlation: float  # Spearman: one-pass score vs exhaustive (only-this harm)
    notes: list[str] = field(default_factory=list)
    output: str | None = None  # the output the metric scored (None: a user metric given every output)
    output_basis: str = ""
    unit: str = ""

    def to_json(self) -> dict:
        from quant.schemas import stamp

        return to_jsonable(stamp("sensitivity", {"metric": self.metric, "output": self.output,
                "output_basis": self.output_basis, "unit": self.unit, "higher_is_better": self.higher_is_better,
                **with_infinities({"fp32": self.fp32, "all_quantized": self.all_quantized}, ("fp32", "all_quantized")),
                "rank_correlation_one_pass_vs_exhaustive": self.rank_correlation,
                "layers": [with_infinities(vars(l), LAYER_NUMBERS) for l in self.layers], "notes": self.notes}))

    def to_csv(self) -> str:
        """RFC 4180 CSV (quoted where needed); node names that a spreadsheet would run as a formula get a
        leading apostrophe and control characters are shown as escapes (exact names: sensitivity.json)."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rank", "node", "op_type", "only_this", "all_but_this", "recovery", "harm", "local_sqnr_db"])
        for rank, l in enumerate(self.layers, start=1):
            writer.writerow([rank, csv_field(l.node), csv_field(l.op_type), f"{l.only_this:.6g}", f"{l.all_but_this:.6g}",
                             f"{l.recovery:.6g}", f"{l.harm:.6g}", f"{l.local_sqnr_db:.4g}"])
        return buffer.getvalue()

    def format_text(self, limit: int | None = None) -> str:
        from quant.eval.gate import format_value

        unit = f" ({self.unit})" if self.unit else ""  # the unit of every value in the table
        lines = [f"metric {self.metric}{unit}: FP32 {format_value(self.fp32, '')}, all layers INT8 "
                 f"{format_value(self.all_quantized, '', self.fp32)}",
                 f"{'rank':>4}  {'layer':<40} {'op':<8} {'only this':>10} {'all but this':>12} {'local SQNR':>10}"]
        for rank, l in enumerate(self.layers[:limit], start=1):
            shown = printable(l.node)
            name = shown if len(shown) <= 40 else "..." + shown[-37:]
            lines.append(f"{rank:>4}  {name:<40} {l.op_type:<8} {l.only_this:>10.4f} {l.all_but_this:>12.4f} "
                         f"{l.local_sqnr_db:>8.2f}dB")
        correlation = (f"{self.rank_correlation:.3f}" if np.isfinite(self.rank_correlation) else
                       "n/a (undefined: fewer than 3 layers, or every layer scores the same)")
        lines.append(f"rank correlation (Spearman) of the one-pass score with the exhaustive one: {correlation}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _better(metric: Metric, a: float, b: float) -> float:
    """How much better a is than b (positive = better)."""
    return (a - b) if metric.higher_is_better else (b - a)


def serial_scores(heldout: HeldOut, metric: Metric, make_runner: Callable[[frozenset], object], progress=None):
    """``score_many(candidates) -> [metric of each keep-float set]``, one evaluation after the other."""

    def score_many(candidates: Sequence[frozenset]) -> list[float]:
        values = []
        for keep_float in candidates:
            values.append(heldout.score(make_runner(keep_float), metric))
            if progress is not None:
                progress.update(1)
        return values

    return score_many


def sensitivity(heldout: HeldOut, metric: Metric, layers: Sequence[tuple[str, str]],
                make_runner: Callable[[frozenset], object], local_sqnr: dict[str, float],
                progress=None, score_many: Callable[[Sequence[frozenset]], list[float]] | None = None,
                ) -> SensitivityReport:
    """Score every layer both ways; ``make_runner(keep_float)`` gives a runner of the Q/DQ model.

    ``score_many`` evaluates a list of keep-float sets (all independent: a Ray cluster runs them at once);
    default: one after the other in this process. The report does not depend on which.
    """
    names = [node for node, _ in layers]
    fp32 = heldout.fp32_score(metric)  # also binds the metric to its output here, where Ray's workers score remotely
    if not metric.has_reference_value:
        fp32 = float("nan")  # SQNR: n/a, as in the gate
    candidates = [frozenset()]
    for node, _ in layers:
        candidates += [frozenset(n for n in names if n != node), frozenset([node])]
    values = (score_many or serial_scores(heldout, metric, make_runner, progress))(candidates)
    everything = values[0]
    scores = []
    for index, (node, op_type) in enumerate(layers):
        only, all_but = values[1 + 2 * index], values[2 + 2 * index]
        # Without an FP32 value (SQNR vs FP32 is infinite for FP32) the harm is the metric itself, negated.
        harm = _better(metric, fp32, only) if metric.has_reference_value else -_better(metric, only, 0.0)
        scores.append(LayerScore(node, op_type, only, all_but, local_sqnr.get(node, float("nan")),
                                 recovery=_better(metric, all_but, everything), harm=harm))
    scores.sort(key=lambda s: (-s.recovery, -s.harm, s.local_sqnr_db))
    return SensitivityReport(metric.name, metric.higher_is_better, fp32, everything, scores,
                             spearman([-s.local_sqnr_db for s in scores], [s.harm for s in scores]))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    values_a, values_b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(values_a) & np.isfinite(values_b)
    if keep.sum() < 3 or np.ptp(values_a[keep]) == 0 or np.ptp(values_b[keep]) == 0:
        return float("nan")
    stats = require("scipy.stats")
    return float(stats.spearmanr(values_a[keep], values_b[keep]).statistic)


def fake_quantize(x: np.ndarray, scale: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Symmetric INT8 Q/DQ in float, as TensorRT computes it: clip(round_half_even(x / s), -128, 127) * s."""
    scale = np.asarray(scale, np.float32)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(x.dtype)


def local_sqnr(model, plan, activation_amax: dict[str, float], weight_amax: dict[str, np.ndarray],
               batches: Sequence[tuple[list[int], dict[str, np.ndarray]]], max_samples: int = 64) -> dict[str, float]:
    """Output SQNR (dB) of each layer run alone with quantized inputs and weights, from one FP32 pass."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.core.onnx_model import initializers, with_outputs
    from quant.qdq.insert import scale_from_amax

    nodes = {n.name: n for n in model.graph.node}
    inits = initializers(model)
    wanted = []
    for layer in plan.layers:
        node = nodes[layer.node]
        wanted += [t for t in node.input if t and t not in inits] + [node.output[0]]
    wanted = list(dict.fromkeys(wanted))
    feeds_seen = set(batches[0][1]) if batches else set()
    runner = OrtRunner(with_outputs(model, [t for t in wanted if t not in feeds_seen]), mode="fp32")
    captured: dict[str, list[np.ndarray]] = {t: [] for t in wanted}
    taken = 0
    for _, feeds in batches:
        if taken >= max_samples:
            break
        names = [t for t in wanted if t not in feeds]
        values = dict(zip(names, runner.run(feeds, names)))
        values.update({t: feeds[t] for t in wanted if t in feeds})
        for t in wanted:
            captured[t].append(values[t])
        taken += len(next(iter(feeds.values())))
    scores = {}
    for layer in plan.layers:
        node = nodes[layer.node]
        dtypes = {t: captured[t][0].dtype for t in wanted if captured[t]}
        single, graph_inputs = quantized_layer_model(model, node, layer, inits, weight_amax, dtypes)
        layer_runner = OrtRunner(single, mode="emulate")
        signal = noise = 0.0
        for batch in range(len(captured[node.output[0]])):
            feeds = {}
            for name in graph_inputs:
                x = captured[name][batch]
                feeds[name] = fake_quantize(x, scale_from_amax(activation_amax[name])) \
                    if name in activation_amax and name in layer.activations else x
            out = layer_runner.run(feeds, [node.output[0]])[0].astype(np.float64)
            ref = captured[node.output[0]][batch].astype(np.float64)
            signal += float(np.sum(ref * ref))
            noise += float(np.sum((out - ref) ** 2))
        scores[layer.node] = sqnr_db(signal, noise)
    return scores


def quantized_layer_model(model, node, layer, inits: dict, weight_amax: dict[str, np.ndarray], dtypes: dict):
    """(a one-node ONNX model of ``node`` with its weight fake-quantized as the Q/DQ model holds it, the names
    of its graph inputs). Constant inputs (weight, bias) are initializers; every other input is a graph input
    of the type in ``dtypes`` (the captured tensor's numpy dtype; float32 where unknown)."""
    onnx = require("onnx")
    from quant.core.onnx_model import to_array
    from quant.qdq.insert import scale_from_amax

    def elem(tensor: str) -> int:
        return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtypes[tensor])) if tensor in dtypes \
            else onnx.TensorProto.FLOAT

    graph_inputs, node_inits = [], []
    for tensor in node.input:
        if not tensor:
            continue
        if tensor in inits:
            array = to_array(inits[tensor])
            if layer.weight is not None and tensor == layer.weight.tensor:
                array = fake_quantize(array, scale_from_amax(weight_amax[tensor]), layer.weight.axis)
            node_inits.append(onnx.numpy_helper.from_array(array, tensor))
        elif tensor not in graph_inputs:
            graph_inputs.append(tensor)
    single = onnx.helper.make_model(
        onnx.helper.make_graph([node], "layer", [onnx.helper.make_tensor_value_info(t, elem(t), None)
                                                 for t in graph_inputs],
                               [onnx.helper.make_tensor_value_info(node.output[0], elem(node.output[0]), None)],
                               node_inits),
        opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    return single, graph_inputs
