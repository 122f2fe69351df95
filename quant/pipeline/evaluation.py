"""Evaluation: FP32 vs INT8 on held-out data, the release gate, per-layer sensitivity and the fallback."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from quant.backends.onnxruntime import MODES as ORT_MODES
from quant.core.errors import QuantError
from quant.core.onnx_model import input_specs, load_model
from quant.datasets import DataSource, Preprocess, iter_batches, open_source, resolve_input_map, select
from quant.pipeline.calibration import LABEL_KEYS, CalibrationResult, load_calibration

RUNTIMES = {"emulate": ORT_MODES["emulate"], "ort-int8": ORT_MODES["ort-int8"],
            "openvino": "OpenVINO's CPU runtime (its own INT8 kernels; pip install 'quant[openvino]')",
            "tensorrt": "a TensorRT engine on the GPU (INT8_MODEL is the .engine file)"}


TORCH_EMULATE = ("Q/DQ computed exactly in float with PyTorch, as ONNX Runtime's emulate path computes it (round half "
                 "to even, saturation): the arithmetic TensorRT's INT8 kernels perform")


def int8_runner(int8_model, runtime: str, device: str | None = None):
    """The runner of an INT8 model (path or ModelProto; an engine for tensorrt) on ``runtime``.

    ``device``: a checked torch device (see ``_torch``) runs ``emulate`` with PyTorch; None: ONNX Runtime.
    """
    if runtime not in RUNTIMES:
        raise QuantError(f"unknown INT8 runtime '{runtime}'", hint=f"choose from: {', '.join(RUNTIMES)}")
    if runtime == "tensorrt":
        return _tensorrt_runner(int8_model)
    proto = int8_model if not isinstance(int8_model, (str, Path)) else load_model(int8_model)
    if device is not None and runtime == "emulate":
        from quant.backends.torch.pipeline import emulate_runner

        return emulate_runner(proto, device)
    if runtime == "openvino":
        from quant.backends.openvino import OpenVinoRunner

        return OpenVinoRunner(proto)
    from quant.backends.onnxruntime import OrtRunner

    return OrtRunner(proto, mode=runtime)


def _torch(device: str | None) -> str | None:
    """A checked torch device for ``device`` ('cuda', 'cuda:N', 'cpu'), or None for 'ort' (ONNX Runtime)."""
    if device in (None, "ort"):
        return None
    from quant.backends.torch import device_name

    device_name(device)  # a typo fails before torch is imported
    from quant.backends.torch.pipeline import parse_device

    return parse_device(device)


def fp32_runner(proto, device: str | None):
    """The FP32 reference: ONNX Runtime, or PyTorch on a checked torch ``device`` (IEEE fp32)."""
    if device is None:
        from quant.backends.onnxruntime import OrtRunner

        return OrtRunner(proto, mode="fp32")
    from quant.backends.torch.pipeline import fp32_runner as torch_fp32

    return torch_fp32(proto, device)


def find_labels(source: DataSource, labels, inputs, integer: bool = True) -> tuple[np.ndarray | None, str | None]:
    """Labels from a .npy path, a column name, an array, or (when None) a 'label'/'labels' column if there is one.

    ``integer``: class indices are required (top-k); otherwise strings are accepted too (user metrics)."""
    input_names = {spec.name for spec in inputs}
    if labels is None:
        key = next((k for k in LABEL_KEYS if k in source.keys and k not in input_names), None)
        if key is None:
            return None, None
        labels = key
    if isinstance(labels, np.ndarray):
        array, name = labels, "array"
    elif isinstance(labels, (str, Path)) and str(labels).endswith(".npy"):
        path = Path(labels)
        if not path.exists():
            raise QuantError(f"labels file '{path}' does not exist", hint="pass a .npy array or a column of the data")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise QuantError(f"cannot read labels '{path}': {exc}", hint="save labels with numpy.save") from None
        name = str(path)
    else:
        array = source.column(str(labels))
        if array is None:
            raise QuantError(f"the data has no labels column '{labels}' (keys: {', '.join(source.keys)})",
                             hint="pass --labels with a .npy file or the name of the data's label column")
        name = str(labels)
    array = np.asarray(array)
    if array.ndim != 1 or array.dtype.kind not in ("iu" if integer else "iuUSb"):
        kind = "integer (class index)" if integer else "integer or string"
        raise QuantError(f"labels '{name}' must be a 1-D {kind} array, got shape {list(array.shape)} {array.dtype}",
                         hint="store one label per sample" + (" as a class index" if integer else ""))
    if len(array) != len(source):
        raise QuantError(f"labels '{name}' has {len(array)} entries but the data has {len(source)} samples",
                         hint="give exactly one label per sample")
    return (array.astype(np.int64) if array.dtype.kind in "iub" else array), name


def _tensorrt_runner(engine):
    from quant.backends import tensorrt as trt_backend
    from quant.core.lazy import require

    engine = Path(engine)
    if engine.is_dir():
        engine = engine / "model.engine"
    if not engine.exists():
        raise QuantError(f"engine '{engine}' does not exist", hint="build it first: quant build DIR --output model.engine")
    if not trt_backend.detect().python:
        raise QuantError("--runtime tensorrt needs the 'tensorrt' Python module, which is not installed",
                         hint=f"install it with {trt_backend.INSTALL_HINT} on a machine with an NVIDIA GPU")
    require("torch")
    from quant.backends.tensorrt._runner import TensorRTRunner

    return TensorRTRunner(engine)


@dataclass
class _HeldOutSource:
    source: DataSource
    inputs: list
    mapping: dict[str, str]
    indices: np.ndarray
    labels: np.ndarray | None
    label_name: str | None

    def batches(self, batch_size: int):
        return iter_batches(self.source, self.indices, self.inputs, self.mapping, batch_size)


def _held_out_source(proto, data, labels, num_samples, seed, input_map, preprocess, split,
                     integer: bool) -> _HeldOutSource:
    """Open held-out data for a model: its labels, the input mapping (label columns excluded), the samples."""
    source = open_source(data, preprocess, split)
    inputs = input_specs(proto)
    label_array, label_name = find_labels(source, labels, inputs, integer=integer)
    exclude_keys = [k for k in LABEL_KEYS if k in source.keys] + ([label_name] if label_name in source.keys else [])
    mapping = resolve_input_map(inputs, source, input_map, exclude=exclude_keys)
    return _HeldOutSource(source, inputs, mapping, select(len(source), num_samples, seed), label_array, label_name)


def evaluate(fp32_model, int8_model, data, labels=None, runtime: str = "emulate", batch_size: int = 32,
             num_samples: int | None = None, seed: int = 0, input_map: dict[str, str] | None = None,
             preprocess: Preprocess | None = None, split: str | None = None, topk: Sequence[int] = (1,),
             progress: bool = False, device: str | None = "ort"):
    """Run FP32 and INT8 models over held-out data; returns an :class:`quant.eval.EvalReport`.

    ``device``: 'ort' (ONNX Runtime) or a torch device for the FP32 reference and ``emulate``."""
    from quant.eval import compare

    device = _torch(device)
    fp32_proto = fp32_model if not isinstance(fp32_model, (str, Path)) else load_model(fp32_model)
    candidate = int8_runner(int8_model, runtime, device)  # checks the runtime name
    held = _held_out_source(fp32_proto, data, labels, num_samples, seed, input_map, preprocess, split, integer=True)
    reference = fp32_runner(fp32_proto, device)
    bar = _bar(len(held.indices), "evaluating") if progress else None
    try:
        description = RUNTIMES[runtime] if device is None or runtime != "emulate" else TORCH_EMULATE
        report = compare(reference, candidate, held.batches(batch_size), labels=held.labels, topk=topk,
                         runtime=runtime, runtime_description=description, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    report.labels_source = held.label_name
    if device is not None:
        report.notes.append(f"FP32{' and emulated INT8' if runtime == 'emulate' else ''} ran on "
                            f"{reference.description}")
    if runtime in ("ort-int8", "openvino"):
        report.notes.append(candidate.integer_kernel_note())
    return report


def load_heldout(fp32_model, data, labels=None, batch_size: int = 32, num_samples: int | None = None, seed: int = 0,
                 input_map: dict[str, str] | None = None, preprocess: Preprocess | None = None,
                 split: str | None = None, need_labels: bool = False, integer_labels: bool = False,
                 device: str | None = "ort"):
    """Held-out batches with labels and cached FP32 outputs (see :class:`quant.eval.heldout.HeldOut`)."""
    from quant.eval.heldout import HeldOut

    proto = fp32_model if not isinstance(fp32_model, (str, Path)) else load_model(fp32_model)
    held = _held_out_source(proto, data, labels, num_samples, seed, input_map, preprocess, split, integer_labels)
    if need_labels and held.labels is None:
        raise QuantError("this metric needs labels and the data has none",
                         hint="pass --labels with a .npy file or the data's label column")
    reference = fp32_runner(proto, _torch(device))
    batches = list(held.batches(batch_size))
    outputs = [reference.run(feeds) for _, feeds in batches]
    return HeldOut(batches, outputs, held.labels, reference.output_names, held.source.description)


def gate(fp32_model, int8_model, data, metric: str = "top1", max_drop: float | None = None, relative: bool = False,
         min_value: float | None = None, labels=None, runtime: str = "emulate", lower_is_better: bool | None = None,
         device: str | None = "ort", **data_options):
    """Score FP32 and INT8 on held-out data and decide pass/fail; returns a truthy-when-passing GateResult."""
    from quant.eval.gate import GateResult, decide
    from quant.eval.scoring import get_metric

    gated = get_metric(metric, None if lower_is_better is None else not lower_is_better)
    decide(gated, 0.0, 0.0, max_drop, relative, min_value) if not gated.has_reference_value else None
    device = _torch(device)
    heldout = load_heldout(fp32_model, data, labels, need_labels=gated.needs_labels,
                           integer_labels=gated.needs_labels, device=device or "ort", **data_options)
    candidate = int8_runner(int8_model, runtime, device)
    integer_labels = heldout.labels is not None and heldout.labels.dtype.kind in "iu"
    report_names = [m for m in (["top1"] if integer_labels else []) + ["agreement", "cosine", "sqnr"]
                    if m != gated.name]
    fp32 = heldout.fp32_score(gated) if gated.has_reference_value else float("nan")
    int8 = heldout.score(candidate, gated)
    passed, drop, criterion = decide(gated, fp32, int8, max_drop, relative, min_value)
    others = {}
    for name in report_names:
        other = get_metric(name)
        try:
            others[name] = {"fp32": heldout.fp32_score(other) if other.has_reference_value else float("nan"),
                            "int8": heldout.score(candidate, other)}
        except QuantError:
            continue  # e.g. agreement on a non-classification output
    return GateResult(gated.name, gated.unit, fp32, int8, drop, passed, criterion, max_drop, relative, min_value,
                      runtime, heldout.samples, others)


SEARCH_RUNTIMES = ("emulate", "ort-int8", "openvino")


def _check_search_runtime(runtime: str) -> None:
    if runtime not in SEARCH_RUNTIMES:
        raise QuantError(f"runtime '{runtime}' cannot be used for sensitivity and fallback",
                         hint=f"choose from: {', '.join(SEARCH_RUNTIMES)}")


def qdq_runner_factory(result: CalibrationResult, method: str, runtime: str = "emulate", device: str | None = "ort"):
    """``make(keep_float) -> runner`` of the Q/DQ model with those layers in float (one session alive).

    ``runtime``: emulate (exact Q/DQ in float, TensorRT's arithmetic), ort-int8 or openvino. With a torch
    ``device``, emulate runs on one converted graph whose Q/DQ pairs are switched per variant.
    """
    _check_search_runtime(runtime)
    device = _torch(device)
    if device is not None and runtime == "emulate":
        from quant.backends.torch.pipeline import qdq_switch

        return qdq_switch(result, method, device)
    cache: dict[frozenset, object] = {}

    def make(keep_float: frozenset):
        if keep_float not in cache:
            cache.clear()  # one session at a time keeps memory flat
            cache[keep_float] = int8_runner(result.qdq_model(method, keep_float=keep_float), runtime)
        return cache[keep_float]

    return make


def sensitivity(fp32_model, calibration: str | Path, data, metric: str = "top1", labels=None,
                lower_is_better: bool | None = None, progress: bool = False, runtime: str = "emulate",
                device: str | None = "ort", **data_options):
    """Per-layer sensitivity (both directions) and the one-pass local SQNR, ranked."""
    from quant.eval.scoring import get_metric
    from quant.eval.sensitivity import local_sqnr, sensitivity as run_sensitivity

    _check_search_runtime(runtime)
    result = load_calibration(calibration, model=fp32_model)
    method = result.methods[0]
    scorer = get_metric(metric, None if lower_is_better is None else not lower_is_better)
    heldout = load_heldout(result.model, data, labels, need_labels=scorer.needs_labels,
                           integer_labels=scorer.needs_labels, device=device, **data_options)
    local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax, heldout.batches)
    layers = [(layer.node, layer.op_type) for layer in result.plan.layers]
    bar = _bar(2 * len(layers) + 1, "sensitivity") if progress else None
    try:
        return run_sensitivity(heldout, scorer, layers, qdq_runner_factory(result, method, runtime, device), local,
                               progress=bar)
    finally:
        if bar is not None:
            bar.close()


def fallback(fp32_model, calibration: str | Path, data, metric: str = "top1", max_drop: float | None = None,
             relative: bool = False, min_value: float | None = None, labels=None, lower_is_better: bool | None = None,
             ranking: Sequence[str] | None = None, naive: bool = False, max_float: int | None = None,
             progress: bool = False, device: str | None = "ort", **data_options):
    """Greedy mixed-precision fallback; returns (CalibrationResult, FallbackResult)."""
    from quant.eval.fallback import fallback as run_fallback, naive_first_last
    from quant.eval.scoring import get_metric
    from quant.eval.sensitivity import local_sqnr

    result = load_calibration(calibration, model=fp32_model)
    method = result.methods[0]
    scorer = get_metric(metric, None if lower_is_better is None else not lower_is_better)
    heldout = load_heldout(result.model, data, labels, need_labels=scorer.needs_labels,
                           integer_labels=scorer.needs_labels, device=device, **data_options)
    names = [layer.node for layer in result.plan.layers]
    if ranking is None:  # cheap first guess: worst local SQNR first; re-ranked by the search where it misleads
        local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax, heldout.batches)
        ranking = sorted(names, key=lambda n: local[n])
    make = qdq_runner_factory(result, method, device=device)
    bar = _bar(None, "fallback") if progress else None
    try:
        outcome = run_fallback(heldout, scorer, ranking, make, max_drop, relative, min_value, max_float, progress=bar)
        if naive:
            outcome.naive = naive_first_last(heldout, scorer, names, make, max_drop, relative, min_value, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return result, outcome


def _bar(total, description):
    from quant.collect.collector import _progress

    bar = _progress(total, True)
    if bar is not None:
        bar.set_description(description)
    return bar
