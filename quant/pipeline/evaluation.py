"""Evaluation: FP32 vs INT8 on held-out data, the release gate, per-layer sensitivity and the fallback."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from quant.backends.onnxruntime import MODES as ORT_MODES
from quant.core.config import refuse_unknown_keywords
from quant.core.errors import QuantError
from quant.core.numbers import infinite_text
from quant.core.onnx_model import file_hash, input_specs, load_model
from quant.datasets import DataSource, Preprocess, iter_batches, open_source, resolve_input_map, select
from quant.datasets.keyed import fit_to_inputs
from quant.datasets.labels import LABEL_FILES, default_label_key, label_keys, normalize_labels, read_label_file
from quant.datasets.recorded import choose_preprocess
from quant.eval.batch_axis import check_declared_batch_axis
from quant.pipeline.calibration import CalibrationResult, load_calibration
from quant.pipeline.execution import execution, local_device as _torch

RUNTIMES = {"emulate": ORT_MODES["emulate"], "ort-int8": ORT_MODES["ort-int8"],
            "openvino": "OpenVINO's CPU runtime (its own INT8 kernels; pip install 'quant-trt[openvino]')",
            "tensorrt": "a TensorRT engine on the GPU (INT8_MODEL is the .engine file)"}


TORCH_EMULATE = ("Q/DQ computed exactly in float with PyTorch, as ONNX Runtime's emulate path computes it (round half "
                 "to even, saturation): the arithmetic TensorRT's INT8 kernels perform")


def int8_runner(int8_model, runtime: str, fold_cache: dict | None = None, device: str | None = None):
    """The runner of an INT8 model (path or ModelProto; an engine for tensorrt) on ``runtime``.

    ``fold_cache``: shared by the emulate sessions of one model's variants (each folded weight computed once).
    ``device``: a checked torch device (see ``_torch``) runs ``emulate`` with PyTorch; None: ONNX Runtime."""
    if runtime not in RUNTIMES:
        raise QuantError(f"unknown INT8 runtime '{runtime}'", hint=f"choose from: {', '.join(RUNTIMES)}")
    if runtime == "tensorrt":
        return _tensorrt_runner(int8_model)
    if isinstance(int8_model, (str, Path)) and not Path(int8_model).exists():  # load_model's hint asks for FP32
        raise QuantError(f"INT8 model file '{int8_model}' does not exist",
                         hint="pass the model.int8.onnx written by quant calibrate, or its output folder")
    proto = int8_model if not isinstance(int8_model, (str, Path)) else load_model(int8_model)
    if device is not None and runtime == "emulate":
        from quant.backends.torch.pipeline import emulate_runner

        return emulate_runner(proto, device)
    if runtime == "openvino":
        from quant.backends.openvino import OpenVinoRunner

        return OpenVinoRunner(proto)
    from quant.backends.onnxruntime import OrtRunner

    return OrtRunner(proto, mode=runtime, fold_cache=fold_cache)


def check_not_quantized(proto, given) -> None:
    """Refuse a Q/DQ model where the FP32 reference belongs (the two models given in swapped order)."""
    from quant.pipeline.calibration import QDQ_OPS

    found = sorted({n.op_type for n in proto.graph.node if n.op_type in QDQ_OPS or n.op_type.startswith("QLinear")})
    if found:
        where = f"'{given}'" if isinstance(given, (str, Path)) else "given as FP32"
        raise QuantError(f"the FP32 model {where} contains quantization nodes ({', '.join(found)}): it is an INT8 model",
                         hint="give the FP32 model first and the INT8 model second (quant eval FP32_MODEL INT8_MODEL)")


def same_model_note(fp32_model, int8_model) -> str | None:
    """A note when the 'INT8 model' is the FP32 file itself (given twice): every metric passes, measuring nothing.
    A note, not a refusal: comparing a model with itself is also how data and labels are checked."""
    if not all(isinstance(m, (str, Path)) for m in (fp32_model, int8_model)):
        return None
    fp32, int8 = Path(fp32_model), Path(int8_model)
    if not (fp32.is_file() and int8.is_file()):
        return None  # a folder (several methods) or a missing file: reported where it is read
    if os.path.samefile(fp32, int8) or (fp32.stat().st_size == int8.stat().st_size
                                        and file_hash(fp32) == file_hash(int8)):
        return (f"the INT8 model '{int8_model}' is the FP32 model '{fp32_model}' itself (the same bytes): these "
                "numbers compare the FP32 model with itself, not INT8")
    return None


def fp32_runner(proto, device: str | None):
    """The FP32 reference: ONNX Runtime, or PyTorch on a checked torch ``device`` (IEEE fp32)."""
    if device is None:
        from quant.backends.onnxruntime import OrtRunner

        return OrtRunner(proto, mode="fp32")
    from quant.backends.torch.pipeline import fp32_runner as torch_fp32

    return torch_fp32(proto, device)


def find_labels(source: DataSource, labels, inputs, integer: bool = True) -> tuple[np.ndarray | None, str | None]:
    """Labels from a .npy/.txt/.csv path, a column name, an array, or (when None) a 'label'/'labels' column
    or the data's one ClassLabel column. One-hot, [N, 1] and integral float labels become class indices.

    ``integer``: class indices are required (top-k); otherwise strings are accepted too (user metrics)."""
    input_names = {spec.name for spec in inputs}
    if labels is None:
        key = default_label_key(source, sorted(input_names))
        if key is None:
            return None, None
        labels = key
    if isinstance(labels, np.ndarray):
        array, name = labels, "array"
    elif not isinstance(labels, (str, Path)):  # a list, a tensor
        from quant.datasets.feeds import to_array

        array, name = to_array(labels, "labels", numeric=False), "array"
    elif isinstance(labels, (str, Path)) and Path(labels).suffix.lower() in LABEL_FILES:
        array, name = read_label_file(Path(labels), source), str(labels)
    else:
        array = source.column(str(labels))
        if array is None:
            from quant.core.oserrors import check_regular_input

            check_regular_input(labels, "labels file")  # --labels <(...): a pipe, not a column name
            raise QuantError(f"the data has no labels column '{labels}' (keys: {', '.join(source.keys)})",
                             hint="pass --labels with a .npy/.txt/.csv file or the name of the data's label column")
        name = str(labels)
    array = normalize_labels(array, name, integer, classes=getattr(source, "classes", None) or None)
    if len(array) != len(source):
        raise QuantError(f"labels '{name}' has {len(array)} entries but the data has {len(source)} samples",
                         hint="give exactly one label per sample")
    return array, name


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
    inputs = input_specs(proto)
    source = fit_to_inputs(open_source(data, preprocess, split), inputs, input_map)
    label_array, label_name = find_labels(source, labels, inputs, integer=integer)
    names = [spec.name for spec in inputs]  # a model input named 'label' is fed (as calibrate feeds it)
    exclude_keys = label_keys(source, names) + ([label_name] if label_name in source.keys and label_name not in names
                                                else [])
    mapping = resolve_input_map(inputs, source, input_map, exclude=exclude_keys)
    return _HeldOutSource(source, inputs, mapping, select(len(source), num_samples, seed), label_array, label_name)


def evaluate(fp32_model, int8_model, data, labels=None, runtime: str = "emulate", batch_size: int = 32,
             num_samples: int | None = None, seed: int = 0, input_map: dict[str, str] | None = None,
             preprocess: Preprocess | None = None, split: str | None = None, topk: Sequence[int] = (1,),
             progress: bool = False, output_name: str | None = None, class_axis: int | None = None, ray=None,
             device: str | None = "ort", eval_fn=None, lower_is_better: bool | None = None):
    """Run FP32 and INT8 models over held-out data; returns an :class:`quant.eval.EvalReport`.

    ``eval_fn``: also score both models with a user evaluation function (``file.py:function`` or a
    callable ``evaluate(run, data)``, see quant.eval.user_eval): its scores are ``report.user_scores``.
    ``lower_is_better`` says the direction of its scores (default: the function's ``higher_is_better``).

    ``output_name``: the output labels score (default: the one that fits, see quant.eval.outputs);
    ``class_axis``: the axis argmax agreement takes (default 1); ``ray``: run both models as Ray tasks over
    shards of the batches (see quant.distributed); same report. ``device``: 'ort' (ONNX Runtime) or a torch
    device for the FP32 reference and ``emulate`` (with ``ray``: on every worker, see quant.pipeline.execution)."""
    from quant.eval import compare

    context = execution(device, ray)
    device = None if context.ray is not None else context.local_device()  # with Ray, the workers run the models
    fp32_proto = fp32_model if not isinstance(fp32_model, (str, Path)) else load_model(fp32_model)
    check_not_quantized(fp32_proto, fp32_model)
    check_declared_batch_axis(fp32_proto)
    function = None
    if eval_fn is not None:  # loaded and checked before any model runs
        from quant.eval.user_eval import EvalFunction

        function = EvalFunction(eval_fn, None if lower_is_better is None else not lower_is_better)
        if context.ray is not None:
            raise QuantError("--ray does not run an evaluation function (--eval-fn): it runs in this process",
                             hint="drop --ray")
    candidate = kernels = int8_runner(int8_model, runtime, device=device)  # checks the runtime name
    preprocess = choose_preprocess(preprocess, int8_model if isinstance(int8_model, (str, Path)) else None)
    held = _held_out_source(fp32_proto, data, labels, num_samples, seed, input_map, preprocess, split, integer=True)
    bar = _bar(len(held.indices), "evaluating") if progress else None
    try:
        if context.ray is not None:
            from quant.distributed.ray_cluster import evaluate_on_ray

            if runtime == "tensorrt":
                raise QuantError("--ray does not run TensorRT engines", hint="evaluate the engine without --ray")
            int8_proto = int8_model if not isinstance(int8_model, (str, Path)) else load_model(int8_model)
            reference, candidate, batches = evaluate_on_ray(
                context, fp32_proto, int8_proto, runtime, data if isinstance(data, (str, Path)) else
                held.source, preprocess, split, held, batch_size, progress=bar)
            bar = None if bar is None else bar.close()
        else:
            reference, batches = fp32_runner(fp32_proto, device), held.batches(batch_size)
            if function is not None:
                batches = list(batches)  # compared, then handed to the user's function
        description = RUNTIMES[runtime] if context.device is None or runtime != "emulate" else TORCH_EMULATE
        report = compare(reference, candidate, batches, labels=held.labels, topk=topk,
                         runtime=runtime, runtime_description=description, progress=bar,
                         output_name=output_name, class_axis=class_axis)
    finally:
        if bar is not None:
            bar.close()
    report.labels_source = held.label_name
    if function is not None:
        report.user_scores = _user_scores(function, reference, candidate, batches, held, report)
    if context.device is not None:
        report.notes.append(f"FP32{' and emulated INT8' if runtime == 'emulate' else ''} ran on "
                            f"{reference.description}")
    if runtime in ("ort-int8", "openvino"):
        report.notes.append(kernels.integer_kernel_note())
    from quant.pipeline.folder_eval import name_worst_samples

    name_worst_samples(report, held.source)
    same = same_model_note(fp32_model, int8_model)
    if same:
        report.notes.append(same)
    return report


def _user_scores(function, reference, candidate, batches, held, report) -> list[dict]:
    """FP32 and INT8 scores of a user evaluation function, one entry per score it returns."""
    from quant.eval.heldout import HeldOut

    heldout = HeldOut(batches, [], held.labels, list(reference.output_names), held.source.description,
                      source=held.source)
    fp32 = function.scores(reference, heldout, "FP32")
    int8 = function.scores(candidate, heldout, "INT8")
    if set(fp32) != set(int8):
        raise QuantError(f"evaluation function '{function.name}' returned the scores {sorted(map(str, fp32))} for FP32 "
                         f"but {sorted(map(str, int8))} for INT8", hint="return the same named scores for every model")
    rows = []
    for key, value in fp32.items():
        higher = function.higher_is_better(key)
        rows.append({"function": function.name, "score": key, "higher_is_better": higher, "fp32": value,
                     "int8": int8[key], "drop": (value - int8[key]) if higher else (int8[key] - value)})
    return rows


def load_heldout(fp32_model, data, labels=None, batch_size: int = 32, num_samples: int | None = None, seed: int = 0,
                 input_map: dict[str, str] | None = None, preprocess: Preprocess | None = None,
                 split: str | None = None, need_labels: bool = False, integer_labels: bool = False,
                 device: str | None = "ort", keep_runner: bool = False):
    """Held-out batches with labels and cached FP32 outputs (see :class:`quant.eval.heldout.HeldOut`).

    ``keep_runner``: keep the FP32 runner in ``HeldOut.fp32_runner`` (a user evaluation function runs it)."""
    from quant.eval.heldout import HeldOut

    proto = fp32_model if not isinstance(fp32_model, (str, Path)) else load_model(fp32_model)
    check_not_quantized(proto, fp32_model)
    check_declared_batch_axis(proto)
    held = _held_out_source(proto, data, labels, num_samples, seed, input_map, preprocess, split, integer_labels)
    if need_labels and held.labels is None:
        raise QuantError("this metric (top-k; top1 is the default) needs labels and the data has none",
                         hint="pass --labels with a .npy file or the data's label column, or score without labels: "
                              "--metric agreement, cosine or sqnr")
    reference = fp32_runner(proto, _torch(device))
    batches = list(held.batches(batch_size))
    from quant.eval.batch_axis import check_batch_axis

    outputs = [reference.run(feeds) for _, feeds in batches]
    for (indices, _), output in zip(batches, outputs):
        check_batch_axis(reference.output_names, output, len(indices))
    return HeldOut(batches, outputs, held.labels, reference.output_names, held.source.description,
                   fp32_runner=reference if keep_runner else None, source=held.source if keep_runner else None)


def gate(fp32_model, int8_model, data, metric: str = "top1", max_drop: float | None = None, relative: bool = False,
         min_value: float | None = None, labels=None, runtime: str = "emulate", lower_is_better: bool | None = None,
         checks: Sequence[dict] | None = None, output_name: str | None = None, class_axis: int | None = None,
         device: str | None = "ort", eval_fn=None, **data_options):
    """Score FP32 and INT8 on held-out data in one pass each and decide pass/fail; a truthy-when-passing GateResult.

    ``eval_fn``: a user evaluation function (``file.py:function[@score]`` or a callable, see
    quant.eval.user_eval) gated instead of ``metric``; in ``checks``, a dict with ``eval_fn`` instead of
    ``metric`` gates one (each function is called once per model, whatever the number of its scores gated).

    ``checks``: several gated metrics, each a dict ``{metric, max_drop, relative, min_value, lower_is_better}``
    (default: the one given by ``metric`` and its bounds). Every metric names the output it scores
    (``top1@logits``, else ``output_name``, else its default: see quant.eval.outputs). The metrics not
    gated (top-1 with labels, agreement, cosine, SQNR) are reported for each output where they apply.
    """
    import time

    from quant.eval.gate import CheckResult, GateResult, decide
    from quant.eval.scoring import get_metric

    refuse_unknown_keywords(data_options, DATA_OPTIONS, "not a keyword of quant.gate", also=gate)
    checks = list(checks) if checks else [{"metric": None if eval_fn is not None else metric, "eval_fn": eval_fn,
                                           "max_drop": max_drop, "relative": relative, "min_value": min_value,
                                           "lower_is_better": lower_is_better}]
    gated, functions = [], {}
    for check in checks:
        refuse_unknown_keywords(check, CHECK_KEYS, "not a key of a gate check")
        lower = check.get("lower_is_better")
        if check.get("eval_fn") is not None:
            scorer = _eval_score(check["eval_fn"], lower, functions)
        else:
            scorer = get_metric(check.get("metric") or "top1", None if lower is None else not lower,
                                output=output_name, class_axis=class_axis)
        decide(scorer, 1.0, 1.0, check.get("max_drop"), bool(check.get("relative")), check.get("min_value"))
        gated.append((scorer, check))
    needs_labels = any(scorer.needs_labels for scorer, _ in gated)
    data_options["keep_runner"] = any(_whole_model(scorer) for scorer, _ in gated)
    data_options["preprocess"] = choose_preprocess(data_options.get("preprocess"),
                                                   int8_model if isinstance(int8_model, (str, Path)) else None)
    start = time.perf_counter()
    device = _torch(device)
    heldout = load_heldout(fp32_model, data, labels, need_labels=needs_labels, integer_labels=needs_labels,
                           device=device or "ort", **data_options)
    candidate = int8_runner(int8_model, runtime, device=device)
    int8_outputs = heldout.run(candidate)
    results = []
    for scorer, check in gated:
        began = time.perf_counter()
        fp32 = heldout.fp32_score(scorer) if scorer.has_reference_value else float("nan")
        if _whole_model(scorer):  # the user's function runs the INT8 model itself
            int8 = heldout.score(candidate, scorer)
        else:
            int8 = heldout.score_outputs(int8_outputs, scorer)
        relative_drop = bool(check.get("relative"))
        passed, drop, criterion = decide(scorer, fp32, int8, check.get("max_drop"), relative_drop,
                                         check.get("min_value"))
        results.append(CheckResult(scorer.name, scorer.unit, fp32, int8, drop, passed, criterion,
                                   check.get("max_drop"), relative_drop, check.get("min_value"), scorer.output_name,
                                   scorer.axis, scorer.basis, time.perf_counter() - began,
                                   "evaluation function" if _whole_model(scorer) else "metric"))
    reported, notes = _reported_metrics(heldout, int8_outputs, gated, class_axis)
    notes += [same] if (same := same_model_note(fp32_model, int8_model)) else []
    return GateResult(results, runtime, heldout.samples, reported, time.perf_counter() - start, notes)


def _whole_model(metric) -> bool:
    """A user evaluation function (it runs the model itself, see quant.eval.user_eval)."""
    return bool(getattr(metric, "whole_model", False))


def _eval_score(eval_fn, lower_is_better: bool | None = None, functions: dict | None = None):
    """The Metric of a user evaluation function (``file.py:function[@score]`` or a callable)."""
    from quant.eval.user_eval import eval_score

    return eval_score(eval_fn, None if lower_is_better is None else not lower_is_better, functions)


def _refuse_ray_with_eval_fn(ray, metric) -> None:
    if ray is not None and ray is not False and _whole_model(metric):
        raise QuantError("--ray does not run an evaluation function (--eval-fn): it runs in this process",
                         hint="drop --ray")


def _reported_metrics(heldout, int8_outputs, gated, class_axis) -> tuple[list[dict], list[str]]:
    """top-1 (with integer labels), agreement (class-score outputs), cosine and SQNR per output, not gated;
    and a note for each output whose argmax agreement is n/a."""
    from quant.eval.outputs import not_class_scores_note
    from quant.eval.scoring import get_metric

    done = {(scorer.name, scorer.output_name) for scorer, _ in gated}
    integer_labels = heldout.labels is not None and heldout.labels.dtype.kind in "iu"
    reported, notes = [], []
    candidates = [get_metric("top1")] if integer_labels else []
    for name in heldout.output_names:
        candidates += [get_metric(f"agreement@{name}", class_axis=class_axis), get_metric(f"cosine@{name}"),
                       get_metric(f"sqnr@{name}")]
    for other in candidates:
        try:
            heldout.bind(other)
            if (other.name, other.output_name) in done:
                continue
            if other.name == "agreement" and not _holds_class_scores(heldout, other):
                # argmax agreement of an embedding or a regression would look like accuracy
                notes.append("agreement n/a: " + not_class_scores_note(
                    other.output_name, np.shape(heldout.reference[0][other.output_index]), other.axis))
                continue
            int8 = heldout.score_outputs(int8_outputs, other)
            reported.append({"metric": other.name, "output": other.output_name, "class_axis": other.axis,
                             "unit": other.unit,
                             "fp32": heldout.fp32_score(other) if other.has_reference_value else float("nan"),
                             "int8": int8, "int8_infinite": infinite_text(int8)})
        except QuantError:
            continue  # e.g. top-1 when no output fits the labels: nothing to report
    return reported, notes


def _holds_class_scores(heldout, metric) -> bool:
    from quant.eval.outputs import class_scores_reason, label_output

    index = metric.output_index
    if heldout.labels is not None and heldout.labels.dtype.kind in "iu":
        try:
            if label_output(heldout.output_names, [np.shape(r) for r in heldout.reference[0]], heldout.labels,
                            reference=heldout.reference[0])[0] == index:
                return True
        except QuantError:
            pass
    return class_scores_reason(metric.output_name, np.asarray(heldout.reference[0][index]), metric.axis) is not None


SEARCH_RUNTIMES = ("emulate", "ort-int8", "openvino")


def _check_search_runtime(runtime: str) -> None:
    if runtime not in SEARCH_RUNTIMES:
        raise QuantError(f"runtime '{runtime}' cannot be used for sensitivity and fallback",
                         hint=f"choose from: {', '.join(SEARCH_RUNTIMES)}")


def qdq_runner_factory(result: CalibrationResult, method: str, runtime: str = "emulate", device: str | None = "ort"):
    """``make(keep_float) -> runner`` of the Q/DQ model with those layers in float (one session alive).

    ``runtime``: emulate (exact Q/DQ in float, TensorRT's arithmetic), ort-int8 or openvino. With a torch
    ``device``, emulate runs on one converted graph whose Q/DQ pairs are switched per variant; on ONNX Runtime,
    on one session whose Q/DQ pairs are switched by bool inputs (quant.backends.ort_switch).
    """
    from quant.pipeline import bias_correction

    _check_search_runtime(runtime)
    device = _torch(device)
    # The switched graphs hold the FP32 model's biases: a bias-corrected method builds each variant instead (a
    # layer in float keeps its own bias, the others their corrected ones, as in the variant's written model).
    switched = runtime == "emulate" and not bias_correction.applies(result, method)
    if device is not None and switched:
        from quant.backends.torch.pipeline import qdq_switch

        return qdq_switch(result, method, device)
    from quant.backends.ort_switch import switchable, switched_factory

    if switched and device is None and switchable(result):
        return switched_factory(result, method)  # one session; a variant is a feed (bit-identical outputs)
    cache: dict[frozenset, object] = {}
    folded: dict = {}  # each weight's Q->DQ, computed once for every variant (emulate)

    def make(keep_float: frozenset):
        if keep_float not in cache:
            cache.clear()  # one session at a time keeps memory flat
            cache[keep_float] = int8_runner(result.qdq_model(method, keep_float=keep_float), runtime, folded,
                                            device=device)
        return cache[keep_float]

    return make


CHECK_KEYS = ("metric", "eval_fn", "max_drop", "relative", "min_value", "lower_is_better")  # gate(checks=[{...}])
DATA_OPTIONS = ("batch_size", "num_samples", "seed", "input_map", "preprocess", "split")  # load_heldout's, by keyword


def _search_setup(fp32_model, calibration, metric, lower_is_better, output_name, class_axis, ray, device, eval_fn,
                  data_options: dict, driver_work: str):
    """What sensitivity and fallback both start with: where they run, the calibration, its first method, the scorer.

    ``data_options["preprocess"]`` becomes the calibration's own unless one is given; ``driver_work`` says what this
    process runs on the device when the evaluations are Ray tasks."""
    from quant.eval.scoring import get_metric

    context = execution(device, ray)
    if context.ray is not None:  # before the cluster starts: this process runs the device too
        device = context.driver_device(driver_work)
    result = load_calibration(calibration, model=fp32_model)
    data_options["preprocess"] = choose_preprocess(data_options.get("preprocess"), calibration)
    scorer = _eval_score(eval_fn, lower_is_better) if eval_fn is not None else \
        get_metric(metric, None if lower_is_better is None else not lower_is_better, output=output_name,
                   class_axis=class_axis)
    _refuse_ray_with_eval_fn(ray, scorer)
    return context, device, result, result.methods[0], scorer


def sensitivity(fp32_model, calibration: str | Path, data, metric: str = "top1", labels=None,
                lower_is_better: bool | None = None, progress: bool = False, runtime: str = "emulate",
                output_name: str | None = None, class_axis: int | None = None, ray=None, device: str | None = "ort",
                eval_fn=None, **data_options):
    """Per-layer sensitivity (both directions) and the one-pass local SQNR, ranked.

    ``ray``: evaluate the variants as Ray tasks (True/"local", an address, or RayOptions); same report.
    ``eval_fn``: score each candidate with a user evaluation function instead of ``metric`` (one call per
    candidate; see quant.eval.user_eval).
    """
    from quant.eval.sensitivity import local_sqnr, sensitivity as run_sensitivity

    refuse_unknown_keywords(data_options, DATA_OPTIONS, "not a keyword of quant.sensitivity", also=sensitivity)
    _check_search_runtime(runtime)
    context, device, result, method, scorer = _search_setup(
        fp32_model, calibration, metric, lower_is_better, output_name, class_axis, ray, device, eval_fn, data_options,
        "the FP32 reference of the held-out data")
    layers = [(layer.node, layer.op_type) for layer in result.plan.layers]
    bar = None
    if progress:  # shown before the FP32 pass: it counts the evaluations, all INT8 + two per layer
        from quant.core.progress import progress as progress_bar

        bar = progress_bar(2 * len(layers) + 1, "sensitivity", "evaluations")
    try:
        heldout = load_heldout(result.model, data, labels, need_labels=scorer.needs_labels,
                               integer_labels=scorer.needs_labels, device=device, keep_runner=_whole_model(scorer),
                               **data_options)
        local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax,
                           heldout.batches)
        with context.cluster() as cluster:
            score_many = None if cluster is None else ray_scores(cluster, result, method, runtime, heldout, scorer, bar,
                                                                 device=context.worker_device)
            make = qdq_runner_factory(result, method, runtime, device) if cluster is None else None  # Ray: the actors'
            report = run_sensitivity(heldout, scorer, layers, make, local, progress=bar, score_many=score_many)
        report.output, report.output_basis, report.unit = scorer.output_name, scorer.basis, scorer.unit
        report.notes.insert(0, scorer.description)
        return report
    finally:
        if bar is not None:
            bar.close()


def ray_scores(*args, **kwargs):
    from quant.distributed.ray_cluster import ray_scores as scores

    return scores(*args, **kwargs)


def fallback(fp32_model, calibration: str | Path, data, metric: str = "top1", max_drop: float | None = None,
             relative: bool = False, min_value: float | None = None, labels=None, lower_is_better: bool | None = None,
             ranking: Sequence[str] | None = None, naive: bool = False, max_float: int | None = None,
             progress: bool = False, output_name: str | None = None, class_axis: int | None = None, ray=None,
             search: str = "bisect", log=None, device: str | None = "ort", eval_fn=None,
             refine_rounds: int | None = None, **data_options):
    """Mixed-precision fallback; returns (CalibrationResult, FallbackResult).

    ``search``: "bisect" (bounded: bisection over the ranking on a screening subset, confirmed on the full
    held-out set; ``log`` gets one line per step) or "greedy" (one layer at a time, re-ranking by trying
    every layer when a step does not help). ``ray``: the greedy search's independent evaluations (its
    re-ranking trials) run as Ray tasks; the bisect search is sequential and runs here. ``eval_fn``: a user
    evaluation function scores each candidate instead of ``metric`` (the bisect search then screens on the
    whole held-out set: a subset of batches would cut a stream). ``refine_rounds``
    bounds the bisect search's rounds after its first (see quant.eval.fallback.bisect_fallback)."""
    from quant.eval.fallback import bisect_fallback, fallback as run_fallback, naive_first_last, screening_subset
    from quant.eval.sensitivity import local_sqnr

    refuse_unknown_keywords(data_options, DATA_OPTIONS, "not a keyword of quant.fallback", also=fallback)
    context, device, result, method, scorer = _search_setup(
        fp32_model, calibration, metric, lower_is_better, output_name, class_axis, ray, device, eval_fn, data_options,
        "the FP32 reference and the search's sequential steps")
    heldout = load_heldout(result.model, data, labels, need_labels=scorer.needs_labels,
                           integer_labels=scorer.needs_labels, device=device, keep_runner=_whole_model(scorer),
                           **data_options)
    names = [layer.node for layer in result.plan.layers]
    unknown = [n for n in ranking or () if n not in names]
    if unknown:
        raise QuantError(f"the layer ranking names layers this calibration does not quantize: "
                         f"{', '.join(repr(n) for n in unknown[:3])}",
                         hint="a saved sensitivity.json belongs to another calibration: run 'quant sensitivity' again")
    if ranking is not None:  # layers the ranking misses come last, in graph order
        ranking = list(ranking) + [n for n in names if n not in ranking]
    if ranking is None:  # cheap first guess: worst local SQNR first; re-ranked by the search where it misleads
        local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax, heldout.batches)
        ranking = sorted(names, key=lambda n: local[n])
    make = qdq_runner_factory(result, method, device=device)
    if search not in ("bisect", "greedy"):
        raise QuantError(f"unknown fallback search '{search}'", hint="choose from: bisect, greedy")
    bar = _bar(None, "fallback") if progress and (search == "greedy" or naive) else None
    try:
        if search == "bisect":
            outcome = bisect_fallback(heldout, scorer, ranking, make, max_drop, relative, min_value, max_float,
                                      screen=None if _whole_model(scorer) else screening_subset(heldout), log=log,
                                      refine_rounds=refine_rounds)
        else:
            with context.cluster() as cluster:
                score_many = None if cluster is None else ray_scores(cluster, result, method, "emulate", heldout,
                                                                     scorer, device=context.worker_device)
                outcome = run_fallback(heldout, scorer, ranking, make, max_drop, relative, min_value, max_float,
                                       progress=bar, log=log, score_many=score_many)
        if naive:
            outcome.naive = naive_first_last(heldout, scorer, names, make, max_drop, relative, min_value, progress=bar)
        outcome.output, outcome.output_basis, outcome.unit = scorer.output_name, scorer.basis, scorer.unit
        outcome.relative, outcome.quantized_layers = relative, len(names)
    finally:
        if bar is not None:
            bar.close()
    return result, outcome


def _bar(total, description):
    from quant.collect.collector import _progress

    return _progress(total, True, description)
