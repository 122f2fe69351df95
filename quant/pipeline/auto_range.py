"""``--method auto``: each activation tensor takes the range, among candidates, that its consuming layers like best.

Candidates per tensor: the amax of entropy, minmax, percentile and mse (all from the same histograms), and,
where they disagree, a geometric grid between the smallest and the largest of them plus one point below
(``search``). Each candidate is scored by the error of the layer(s) that consume the tensor: the layer is
run alone (ONNX Runtime, exact Q/DQ in float) with that input fake-quantized at the candidate's scale and
its weight quantized as the Q/DQ model stores it; its other inputs stay FP32; the error is
``sum ||y_q - y||^2 / sum ||y||^2`` over a fixed subset of the calibration samples, summed over the
consumers. A tensor that feeds no weighted op (the residual input of an Add, an ort-cpu range) is scored
by its own quantization error. The candidate with the lowest error wins (ties: the first in candidate
order, the four methods before the grid), so the per-tensor range is never worse on this error than any
single method's.

That score is local: it cannot see errors compounding downstream (a clipped residual input that each conv
likes can triple a recognizer's CER). So the whole model decides last: the per-tensor choice, the same
restricted to the four methods, and each method alone are written as Q/DQ models and scored on the model's
outputs over the same subset (the mean over float outputs of ``sum ||y_q - y||^2 / sum ||y||^2``); the
lowest wins (ties: the per-tensor choices first). auto is therefore never worse than any single method on
the whole model's output error over that subset.

Deterministic: the subset is drawn by content (the samples with the smallest seeded hash), each sample is run
alone (batch 1) whatever ``--batch-size`` the collection pass used, and the sums are taken in hash order, so
neither the order nor the batching of the data changes a range.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from quant.calibrators import get as get_calibrator
from quant.collect.collector import _progress
from quant.core.errors import QuantError

BASE_METHODS = ("entropy", "minmax", "percentile", "mse")
AUTO_SAMPLES = 64  # calibration samples the candidates are scored on (a fixed subset, chosen by content)
GRID_POINTS = 6  # geometric points strictly between the smallest and the largest method amax
BELOW = 0.8  # one more candidate at this fraction of the smallest method amax
SEARCH = "search"
SCORE = ("relative output error of each consuming Conv/ConvTranspose/Gemm/MatMul (sum ||y_q - y||^2 / sum "
         "||y||^2, that input fake-quantized at the candidate scale, its weight quantized as stored, other inputs "
         "FP32; summed over consumers; a tensor with no weighted consumer: its own relative quantization error)")


@dataclass
class Candidate:
    label: str  # a method name, or "search" for a grid point
    amax: float  # float32-representable
    error: float = 0.0


@dataclass
class TensorChoice:
    """The winner for one tensor and every candidate it was scored against."""

    tensor: str
    candidates: list[Candidate]
    consumers: list[str] = field(default_factory=list)
    index: int = 0  # of the lowest local error in ``candidates``
    chosen: int | None = None  # of the range the whole-model check kept (None: the local winner)

    @property
    def winner(self) -> Candidate:
        return self.candidates[self.index if self.chosen is None else self.chosen]

    def to_json(self) -> dict:
        best = self.winner
        methods = {c.label: {"amax": c.amax, "error": c.error} for c in self.candidates if c.label != SEARCH}
        grid = [{"amax": c.amax, "error": c.error} for c in self.candidates if c.label == SEARCH]
        local = self.candidates[self.index]
        return {"method": best.label, "amax": best.amax, "error": best.error, "sqnr_db": error_db(best.error,
                len(self.consumers)), "consumers": self.consumers, "methods": methods, "search": grid,
                **({"local_best": {"method": local.label, "amax": local.amax, "error": local.error}}
                   if best is not local else {})}

    def method_index(self, method: str) -> int:
        return next(k for k, c in enumerate(self.candidates) if c.label == method)

    def best_method_index(self) -> int:
        """Of the lowest local error among the four methods' own amax (no grid point)."""
        first = [k for k, c in enumerate(self.candidates) if c.label != SEARCH]
        return first[int(np.argmin([self.candidates[k].error for k in first]))]


def error_db(error: float, consumers: int) -> float | None:
    """The mean relative error over the consumers as an SQNR in dB (None: no error at all)."""
    mean = error / max(consumers, 1)
    return None if mean <= 0 else round(float(-10.0 * np.log10(mean)), 4)


def candidates_for(base: dict[str, float]) -> list[Candidate]:
    """The four methods' amax (in BASE_METHODS order, duplicates kept so each method is named) and the grid."""
    out = [Candidate(m, float(np.float32(base[m]))) for m in BASE_METHODS]
    low, high = min(c.amax for c in out), max(c.amax for c in out)
    if low <= 0.0 or high <= 0.0:
        return out
    points = [] if high / low < 1.01 else list(np.geomspace(low, high, GRID_POINTS + 2)[1:-1])
    points.append(low * BELOW)
    seen = {c.amax for c in out}
    for value in (float(np.float32(p)) for p in points):
        if value > 0.0 and value not in seen:
            seen.add(value)
            out.append(Candidate(SEARCH, value))
    return out


def pick(candidates: list[Candidate]) -> int:
    """Index of the lowest error; the first one on a tie."""
    return int(np.argmin([c.error for c in candidates]))


def auto_subset(indices, digests, seed: int, samples: int | None = None) -> list[int]:
    """A fixed, seeded subset of the calibration samples, chosen by content, never by position or batch.

    ``digests[i]`` identifies sample ``indices[i]`` by content (see ``quant.collect.sample_digests_of``); the
    ``samples`` with the smallest sha256(seed, digest) are taken, in that order, so the subset and the order
    in which it is scored are the same however the data is ordered or batched.
    """
    samples = AUTO_SAMPLES if samples is None else samples
    salt = int(seed).to_bytes(8, "little")
    keys = [hashlib.sha256(salt + bytes(d)).digest() for d in digests]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    return [int(indices[i]) for i in order[:samples]]


def digests_of(source, indices, inputs, mapping) -> list[bytes]:
    """Per-sample digests by reading the data (when the collection pass did not record them)."""
    from quant.collect.collector import sample_digests_of
    from quant.datasets import iter_batches

    out = []
    for _, feeds in iter_batches(source, indices, inputs, mapping, 1):
        out += sample_digests_of(feeds, 1)
    return out


def base_amax(result, tensor: str) -> dict[str, float]:
    """The four methods' amax for ``tensor`` (reusing what the result already computed)."""
    out = {}
    for method in BASE_METHODS:
        known = result.activation_amax.get(method)
        out[method] = known[tensor] if known and tensor in known else get_calibrator(
            method, **result.config.params(method)).fit(result.histograms[tensor]).amax_
    return out


def choose_auto(result, source, indices, inputs, mapping, digests=None, progress: bool = False
                ) -> dict[str, TensorChoice]:
    """Score every tensor's candidates on the subset; fill ``result.activation_amax['auto']`` and ``result.auto``."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.core.onnx_model import initializers, with_outputs
    from quant.datasets import iter_batches

    model, plan = result.model, result.plan
    nodes = {n.name: n for n in model.graph.node}
    inits = initializers(model)
    layers = {layer.node: layer for layer in plan.layers}
    choices: dict[str, TensorChoice] = {}
    for tensor in result.histograms:
        # the consuming layers; the tensor itself stands for a consumer that is no weighted op (a residual Add)
        consumers = [node if node in layers else tensor for node, _ in plan.consumers.get(tensor, [])] or [tensor]
        choices[tensor] = TensorChoice(tensor, candidates_for(base_amax(result, tensor)), list(dict.fromkeys(consumers)))
    scored = [t for t, c in choices.items() if any(x.amax > 0 for x in c.candidates)]  # all-zero tensors: nothing to score
    wanted = list(scored)
    for choice in choices.values():
        for name in choice.consumers:
            if name == choice.tensor:
                continue
            node = nodes[name]
            wanted += [t for t in node.input if t and t not in inits] + [node.output[0]]
    wanted = list(dict.fromkeys(wanted))
    if digests is None or len(digests) != len(indices):
        digests = digests_of(source, indices, inputs, mapping)
    subset = auto_subset(indices, digests, result.config.seed)
    if scored:
        runner = OrtRunner(with_outputs(model, [t for t in wanted if t not in mapping]), mode="fp32", spin=False)
        layer_runners: dict[str, tuple] = {}
        signal = {(t, n): 0.0 for t in scored for n in choices[t].consumers}
        noise = {(t, n, k): 0.0 for t in scored for n in choices[t].consumers
                 for k in range(len(choices[t].candidates))}
        bar = _progress(len(subset), progress, "auto: scoring candidates")
        for _, feeds in iter_batches(source, subset, inputs, mapping, 1):  # one sample at a time, subset order
            if bar is not None:
                bar.update(1)
            names = [t for t in wanted if t not in feeds]
            values = dict(zip(names, runner.run(feeds, names)))
            values.update({t: feeds[t] for t in wanted if t in feeds})
            for tensor in scored:
                _score_sample(choices[tensor], values, nodes, layers, inits, result.weight_amax, layer_runners,
                              model, signal, noise)
        if bar is not None:
            bar.close()
        for tensor in scored:
            choice = choices[tensor]
            for k, candidate in enumerate(choice.candidates):
                candidate.error = float(sum(_relative(noise[(tensor, n, k)], signal[(tensor, n)])
                                            for n in choice.consumers))
            choice.index = pick(choice.candidates)
    whole = confirm_whole_model(result, choices, source, subset, inputs, mapping, progress) if scored else None
    result.activation_amax["auto"] = {t: c.winner.amax for t, c in choices.items()}
    result.auto = {"samples": len(subset), "subset": f"the {len(subset)} calibration samples with the smallest "
                   f"sha256(seed {result.config.seed}, sample); order and batching of the data do not change it",
                   "score": SCORE,
                   "candidates": f"the amax of {', '.join(BASE_METHODS)}; where they differ by >= 1%, "
                                 f"{GRID_POINTS} geometric points between the smallest and the largest; "
                                 f"{BELOW:g} x the smallest",
                   "summary": summary(choices), **({"whole_model": whole} if whole else {}),
                   "tensors": {t: c.to_json() for t, c in choices.items()}}
    return choices


PER_TENSOR = "per tensor"
PER_TENSOR_METHODS = "per tensor, methods only"
WHOLE_SCORE = ("mean over the model's float outputs of sum ||y_q - y||^2 / sum ||y||^2 (the Q/DQ model with exact "
               "Q/DQ in float vs FP32, one sample per run), as an SQNR in dB")


def whole_model_candidates(choices: dict[str, TensorChoice]
                           ) -> tuple[list[tuple[str, dict[str, int]]], dict[str, str]]:
    """(label, tensor -> candidate index) for the per-tensor choice, the same among the methods only, and each
    method alone; a configuration equal to an earlier one is left out (its label would only repeat it) and
    named in the second value, label -> the earlier label with the same ranges."""
    configs = [(PER_TENSOR, {t: c.index for t, c in choices.items()}),
               (PER_TENSOR_METHODS, {t: c.best_method_index() for t, c in choices.items()})]
    configs += [(m, {t: c.method_index(m) for t, c in choices.items()}) for m in BASE_METHODS]
    out, seen, same_as = [], {}, {}
    for label, config in configs:
        key = tuple(choices[t].candidates[k].amax for t, k in config.items())
        if key in seen:
            same_as[label] = seen[key]
        else:
            seen[key] = label
            out.append((label, config))
    return out, same_as


def confirm_whole_model(result, choices: dict[str, TensorChoice], source, subset, inputs, mapping,
                        progress: bool = False) -> dict | None:
    """Score each whole-model configuration on the subset's outputs; set every ``TensorChoice.chosen``.

    Returns the record for quant.json (None: the model has no float output to score, the local choice stays).
    """
    from quant.backends.onnxruntime import OrtRunner
    from quant.datasets import iter_batches
    from quant.eval.metrics import sqnr_db
    from quant.qdq import build_qdq_model

    configs, same_as = whole_model_candidates(choices)
    if len(configs) == 1:
        return {"samples": len(subset), "score": WHOLE_SCORE, "chosen": configs[0][0],
                "candidates": {configs[0][0]: None}, "note": "every configuration gives the same ranges"}
    fp32 = OrtRunner(result.model, mode="fp32", spin=False)
    runners = []
    for _label, config in configs:
        amax = {t: choices[t].candidates[k].amax for t, k in config.items()}
        model = build_qdq_model(result.model, result.plan, amax, result.weight_amax,
                                weight_storage=result.config.weight_storage)
        runners.append(OrtRunner(model, mode="emulate", spin=False))
    signal: list[float] | None = None
    noise = [None] * len(configs)
    bar = _progress(len(subset), progress, "auto: whole-model check")
    for _, feeds in iter_batches(source, subset, inputs, mapping, 1):  # one sample at a time, subset order
        if bar is not None:
            bar.update(1)
        raw = [np.asarray(v) for v in fp32.run(feeds)]
        # float outputs only: class indices or masks (int, bool) are not signals (cast first, they would count)
        floats = [i for i, r in enumerate(raw) if r.dtype.kind == "f" and np.isfinite(r).all()]
        reference = [r.astype(np.float64) if i in floats else r for i, r in enumerate(raw)]
        if signal is None:
            signal = [0.0] * len(reference)
        for i in floats:
            signal[i] += float(np.sum(reference[i] ** 2))
        for k, runner in enumerate(runners):
            outputs = runner.run(feeds)
            sums = noise[k] if noise[k] is not None else [0.0] * len(reference)
            for i in floats:
                sums[i] += float(np.sum((np.asarray(outputs[i], np.float64) - reference[i]) ** 2))
            noise[k] = sums
    if bar is not None:
        bar.close()
    scored = [i for i, s in enumerate(signal or []) if s > 0]
    if not scored:
        return None
    errors = [float(np.mean([noise[k][i] / signal[i] for i in scored])) for k in range(len(configs))]
    best = int(np.argmin(errors))  # the first on a tie: the per-tensor choices come first
    for tensor, choice in choices.items():
        choice.chosen = configs[best][1][tensor]
    return {"samples": len(subset), "score": WHOLE_SCORE, "chosen": configs[best][0],
            "outputs": [fp32.output_names[i] for i in scored], "same_ranges_as": same_as,
            "candidates": {label: (round(sqnr_db(1.0, e), 4) if e > 0 else None)  # None: no error at all
                           for (label, _), e in zip(configs, errors)}}


def _relative(noise: float, signal: float) -> float:
    return noise / signal if signal > 0 else noise


def _score_sample(choice: TensorChoice, values, nodes, layers, inits, weight_amax, layer_runners, model,
                  signal, noise) -> None:
    """Add one sample's signal and noise for every candidate of one tensor."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.sensitivity import fake_quantize, quantized_layer_model
    from quant.qdq.insert import scale_from_amax

    x = values[choice.tensor]
    first = {}  # amax -> the first candidate with it: methods that agree are run once
    for k, candidate in enumerate(choice.candidates):
        first.setdefault(candidate.amax, k)
    quantized = {k: fake_quantize(x, scale_from_amax(choice.candidates[k].amax)) for k in first.values()}
    for name in choice.consumers:
        if name == choice.tensor:  # its own quantization error
            reference = x.astype(np.float64)
            signal[(name, name)] += float(np.sum(reference * reference))
            errors = {k: float(np.sum((q.astype(np.float64) - reference) ** 2)) for k, q in quantized.items()}
        else:
            node = nodes[name]
            if name not in layer_runners:
                dtypes = {t: values[t].dtype for t in list(node.input) + [node.output[0]] if t in values}
                single, graph_inputs = quantized_layer_model(model, node, layers[name], inits, weight_amax, dtypes)
                layer_runners[name] = (OrtRunner(single, mode="emulate", spin=False), graph_inputs)
            runner, graph_inputs = layer_runners[name]
            reference = values[node.output[0]].astype(np.float64)
            signal[(choice.tensor, name)] += float(np.sum(reference * reference))
            errors = {}
            for k, q in quantized.items():
                feeds = {t: (q if t == choice.tensor else values[t]) for t in graph_inputs}
                out = runner.run(feeds, [node.output[0]])[0].astype(np.float64)
                errors[k] = float(np.sum((out - reference) ** 2))
        for k, candidate in enumerate(choice.candidates):
            noise[(choice.tensor, name, k)] += errors[first[candidate.amax]]


def summary(choices: dict[str, TensorChoice]) -> dict[str, int]:
    """How many tensors took each method (and the grid)."""
    counts = {label: 0 for label in BASE_METHODS + (SEARCH,)}
    for choice in choices.values():
        counts[choice.winner.label] += 1
    return counts


def recorded_auto(manifest: dict, tensors, where: str) -> tuple[dict[str, float], dict]:
    """(amax per tensor, the auto record) from an auto folder's quant.json: auto needs data, histograms are not enough."""
    record = manifest.get("auto") if manifest.get("method") == "auto" else None
    table = record.get("tensors") if isinstance(record, dict) else None
    if not isinstance(table, dict):
        raise QuantError(f"--method auto scores ranges on the consuming layers with calibration data; '{where}' holds "
                         "histograms only", hint="run quant calibrate --method auto with the data")
    amax = {}
    for tensor in tensors:
        entry = table.get(tensor)
        value = entry.get("amax") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise QuantError(f"the manifest '{where}/quant.json' is malformed: field 'auto.tensors' has no valid amax "
                             f"for tensor {tensor!r}", hint="calibrate again: quant.json is quant's own record")
        amax[tensor] = float(value)
    return amax, record
