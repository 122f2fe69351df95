"""Bias correction, the measuring side: one more pass over the calibration data after the ranges are known.

For every quantized layer with a per-channel bias (see :mod:`quant.qdq.bias`) the pass measures the mean of
(the layer on its Q/DQ'd FP32 input with its Q/DQ'd weight) - (the layer in FP32) per output channel, for
every method at once, and the written Q/DQ model's biases absorb it. Sums are per sample in float64, then
exact across samples (:class:`quant.qdq.bias.ExactSum`), and the pass runs one sample at a time (ONNX
Runtime's Conv can round differently with the batch size), so the correction is the same bits whatever the
batch size, the batch order or the order of the samples.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quant.collect.collector import _progress
from quant.core.errors import QuantError
from quant.qdq.bias import BiasTarget, ExactSum, bias_targets, channel_sums, corrected_model, shift_model

SHIFTS_FILE = "bias_correction.npz"


def measure(result, batches, total: int | None = None, progress: bool = False) -> None:
    """Fill ``result.bias_correction`` (method -> {"targets", "shifts", "rms", "skipped", "samples"})."""
    from quant.backends.onnxruntime import OrtRunner

    targets, skipped = bias_targets(result.model, result.plan)
    if not targets:
        for method in result.methods:
            result.bias_correction[method] = {"targets": [], "shifts": {}, "rms": {}, "skipped": skipped, "samples": 0}
        return
    amax = {method: result.activation_amax[method] for method in result.methods}
    model, outputs, float_outputs = shift_model(result.model, result.plan, targets, amax, result.weight_amax,
                                                result.config.weight_storage)
    runner = OrtRunner(model, mode="emulate", spin=False)  # Q/DQ in float, exactly as the emulated model
    names = [name for method in result.methods for name in outputs[method].values()]
    floats = list(float_outputs.values())
    shift_sums = {name: None for name in names}
    square_sums = {name: ExactSum(1) for name in floats}
    axes = {}
    for method in result.methods:
        for target in targets:
            axes[outputs[method][target.node]] = target.axis
    for target in targets:
        axes[float_outputs[target.node]] = target.axis
    samples = 0
    bar = _progress(total, progress, "bias correction")
    for _indices, feeds in batches:
        values = runner.run(feeds, names + floats)
        for name, value in zip(names + floats, values):
            if value.dtype.kind != "f" or value.ndim < 2:
                raise QuantError(f"bias correction: the layer output '{name}' is not a float tensor with a batch "
                                 "axis", hint="calibrate without --bias-correction")
            if name in square_sums:
                squares = np.square(value.astype(np.float64)).reshape(value.shape[0], 1, -1).sum(axis=2)
                square_sums[name].add(squares, value[0].size)
                continue
            sums, count = channel_sums(value, axes[name])
            if shift_sums[name] is None:
                shift_sums[name] = ExactSum(sums.shape[1])
            shift_sums[name].add(sums, count)
        samples += len(next(iter(feeds.values())))
        if bar is not None:
            bar.update(len(next(iter(feeds.values()))))
    if bar is not None:
        bar.close()
    rms = {target.node: float(np.sqrt(square_sums[float_outputs[target.node]].mean()[0])) for target in targets}
    for method in result.methods:
        shifts = {t.node: shift_sums[outputs[method][t.node]].mean() for t in targets}
        result.bias_correction[method] = {"targets": targets, "shifts": shifts, "rms": rms, "skipped": skipped,
                                          "samples": samples}


CHECK_SAMPLES = 256  # calibration samples (the first) on which the corrected model must beat the uncorrected one


def check(result, batches, total: int | None = None, progress: bool = False) -> None:
    """Keep each method's correction only if it raises the output SQNR (vs FP32) of the whole Q/DQ model on the
    first calibration samples; otherwise record why it was not applied.

    The correction is local (each layer on its own FP32 input); where a method clips hard (entropy) the errors
    downstream interact with it and the corrected model can be worse (PP-OCRv4 det: 71.5 -> 0 map IoU), so the
    whole model decides.
    """
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.metrics import sqnr_db

    pending = [m for m in result.methods if result.bias_correction.get(m, {}).get("targets")]
    if not pending:
        return
    fp32 = OrtRunner(result.model, mode="fp32", spin=False)
    runners = {}
    for method in pending:
        for applied in (False, True):
            runners[(method, applied)] = OrtRunner(_qdq(result, method, applied), mode="emulate", spin=False)
    signal, noise = ExactSum(1), {key: ExactSum(1) for key in runners}
    bar = _progress(total, progress, "bias correction check")
    for _indices, feeds in batches:
        if bar is not None:
            bar.update(len(next(iter(feeds.values()))))
        reference = [np.asarray(v, np.float64) for v in fp32.run(feeds) if np.asarray(v).dtype.kind == "f"]
        signal.add(np.array([[sum(float(np.sum(r * r)) for r in reference)]]), 1)
        for key, runner in runners.items():
            outputs = [np.asarray(v, np.float64) for v in runner.run(feeds) if np.asarray(v).dtype.kind == "f"]
            noise[key].add(np.array([[sum(float(np.sum((o - r) ** 2)) for o, r in zip(outputs, reference))]]), 1)
    if bar is not None:
        bar.close()
    power = float(signal.mean()[0])
    for method in pending:
        before, after = (sqnr_db(power, float(noise[(method, a)].mean()[0])) for a in (False, True))
        entry = result.bias_correction[method]
        entry["check"] = {"samples": signal.count, "output_sqnr_db_without": round(before, 3),
                          "output_sqnr_db_with": round(after, 3)}
        if not after > before:
            entry["not_applied"] = (f"the corrected model's output SQNR on {signal.count} calibration samples is "
                                    f"{after:.2f} dB, not above the uncorrected {before:.2f} dB")


def _qdq(result, method: str, applied: bool):
    from quant.qdq import build_qdq_model

    base = corrected_model(result.model, result.bias_correction[method]["targets"],
                           result.bias_correction[method]["shifts"]) if applied else result.model
    return build_qdq_model(base, result.plan, result.activation_amax[method], result.weight_amax,
                           weight_storage=result.config.weight_storage)


def applies(result, method: str) -> bool:
    """Whether ``method``'s Q/DQ models carry corrected biases (measured, kept by the check)."""
    entry = result.bias_correction.get(method)
    return bool(entry and entry["targets"] and not entry.get("not_applied"))


def corrected(result, method: str, keep_float=()) -> object:
    """The FP32 model whose biases absorb ``method``'s measured shifts (layers in ``keep_float`` untouched)."""
    if not applies(result, method):
        return result.model
    entry = result.bias_correction[method]
    return corrected_model(result.model, entry["targets"], entry["shifts"], skip=frozenset(keep_float))


def manifest(result, method: str, keep_float=()) -> dict:
    """quant.json's ``bias_correction``: that it was applied, how, and per layer the correction's size."""
    entry = result.bias_correction.get(method)
    if entry is None:
        return {"applied": False}
    if entry.get("not_applied"):
        return {"applied": False, "why": entry["not_applied"], "check": entry.get("check"),
                "not_corrected": entry["skipped"]}
    if not entry["targets"]:  # nothing was measured: "applied to 0 layers" would claim a correction
        return {"applied": False, "why": "no quantized layer has a bias to absorb a shift (see not_corrected)",
                "not_corrected": entry["skipped"]}
    layers = {}
    for target in entry["targets"]:
        if target.node in set(keep_float):
            continue
        shift = np.asarray(entry["shifts"][target.node], np.float64)
        rms = entry["rms"].get(target.node)
        layers[target.node] = {
            "bias": target.tensor if target.tensor is not None else "added (the layer had none)",
            "where": "input C of the Gemm" if target.op_type == "Gemm" else
                     f"constant of the Add {target.add_node}" if target.kind == "add" else "bias input of the layer",
            "channels": target.channels,
            "max_abs": float(np.max(np.abs(shift))), "mean_abs": float(np.mean(np.abs(shift))),
            "mean_abs_over_output_rms": None if not rms else float(np.mean(np.abs(shift)) / rms)}
    return {"applied": True, "samples": entry["samples"], **({"check": entry["check"]} if "check" in entry else {}),
            "measured": "per output channel, mean of (layer on its Q/DQ input and Q/DQ weight) - (layer in FP32) "
                        "over the calibration data; subtracted from the FP32 bias of model.int8.onnx",
            "applies_to": "model.int8.onnx only: calibration.cache holds ranges, and TensorRT builds it with the "
                          "model's own biases; the ort-cpu model is not corrected",
            "file": SHIFTS_FILE, "layers": layers, "not_corrected": entry["skipped"]}


def save(result, method: str, folder: Path) -> None:
    """The measured shifts, so that eval/sensitivity/fallback rebuild the same model from the folder."""
    entry = result.bias_correction[method]
    arrays = {"nodes": np.array([t.node for t in entry["targets"]], dtype=str),
              "rms": np.array([entry["rms"][t.node] for t in entry["targets"]], dtype=np.float64),
              "samples": np.array(entry["samples"]), "not_applied": np.array(entry.get("not_applied", "")),
              "check": np.array(json.dumps(entry.get("check")))}
    for index, target in enumerate(entry["targets"]):
        arrays[f"shift_{index}"] = np.asarray(entry["shifts"][target.node], np.float64)
    with open(folder / SHIFTS_FILE, "wb") as handle:
        np.savez(handle, **arrays)


def load(result, method: str, folder: Path) -> None:
    """Read back what :func:`save` wrote for ``method`` (refusing a file that does not fit the model)."""
    path = Path(folder) / SHIFTS_FILE
    targets, skipped = bias_targets(result.model, result.plan)
    by_node = {t.node: t for t in targets}
    try:
        with np.load(path, allow_pickle=False) as data:
            nodes = [str(n) for n in data["nodes"]]
            shifts = {node: np.asarray(data[f"shift_{i}"], np.float64) for i, node in enumerate(nodes)}
            rms = dict(zip(nodes, (float(v) for v in data["rms"])))
            samples = int(data["samples"])
            not_applied, checked = str(data["not_applied"]), json.loads(str(data["check"]))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise QuantError(f"cannot read the bias correction '{path}': {exc}",
                         hint="calibrate again with --bias-correction (the folder is quant's own record)") from None
    if set(nodes) != set(by_node) or any(shifts[n].shape != (by_node[n].channels,) for n in nodes):
        raise QuantError(f"the bias correction '{path}' does not fit the model's layers",
                         hint="calibrate again with --bias-correction")
    result.bias_correction[method] = {"targets": [by_node[n] for n in nodes], "shifts": shifts, "rms": rms,
                                      "skipped": skipped, "samples": samples}
    if checked is not None:
        result.bias_correction[method]["check"] = checked
    if not_applied:
        result.bias_correction[method]["not_applied"] = not_applied


def check_recalibration(old_method: str, methods, old_config, config) -> None:
    """Ranges other than the measured ones would need the data again: refuse (the correction depends on them)."""
    same = tuple(methods) == (old_method,) and all(
        getattr(old_config, key) == getattr(config, key) for key in ("weight_method", "percentile", "bins"))
    if not same:
        raise QuantError("this folder's bias correction was measured with its own ranges; other ranges need a new "
                         "pass over the calibration data",
                         hint="run quant calibrate again with --bias-correction and the method you want")


__all__ = ["BiasTarget", "SHIFTS_FILE", "corrected", "load", "manifest", "measure", "save"]
