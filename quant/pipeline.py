"""Wires the stages: data -> collect -> calibrators -> Q/DQ model and cache -> evaluation.

The one place that picks a backend (ONNX Runtime). The CLI and the Python API both call into here.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from quant import __version__
from quant.backends.onnxruntime import MODES as ORT_MODES
from quant.calibrators import get as get_calibrator, weight_amax
from quant.core.config import CalibrationConfig
from quant.core.errors import QuantError
from quant.core.histogram import Histogram, load_histograms, save_histograms
from quant.core.io import atomic_output_dir, dumps
from quant.core.onnx_model import file_hash, input_specs, load_model, normalize, opset_version, to_array, with_outputs
from quant.datasets import DataSource, Preprocess, iter_batches, open_source, resolve_input_map, select
from quant.qdq import QuantPlan, build_qdq_model, format_cache, plan_qdq, scale_from_amax
from quant.qdq.cache import ALGORITHMS, DEFAULT_ALGORITHM, trt_version_number
from quant.qdq.placement import weight_array

LABEL_KEYS = ("label", "labels")
RUNTIMES = {"emulate": ORT_MODES["emulate"], "ort-int8": ORT_MODES["ort-int8"],
            "tensorrt": "a TensorRT engine on the GPU (INT8_MODEL is the .engine file)"}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger")
MIN_CALIBRATION_SAMPLES = 2


@dataclass
class CalibrationResult:
    """Histograms and ranges of one collection pass; ``save`` writes the artifacts of each method."""

    model: object  # the normalized FP32 onnx.ModelProto
    model_path: Path | None
    model_sha256: str
    plan: QuantPlan
    histograms: dict[str, Histogram]
    config: CalibrationConfig
    data: dict = field(default_factory=dict)  # provenance
    activation_amax: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> tensor -> amax
    weight_amax: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.config.methods

    def qdq_model(self, method: str | None = None, keep_float: Sequence[str] = ()):
        """The Q/DQ ONNX model (onnx.ModelProto) for one method; ``keep_float`` names layers left in float."""
        method = self._method(method)
        return build_qdq_model(self.model, self.plan, self.activation_amax[method], self.weight_amax,
                               keep_float=frozenset(keep_float))

    def _method(self, method: str | None) -> str:
        if method is None:
            if len(self.methods) != 1:
                raise QuantError(f"this result holds several methods {list(self.methods)}", hint="name one: method=...")
            return self.methods[0]
        if method not in self.activation_amax:
            raise QuantError(f"method '{method}' was not calibrated here", hint=f"choose from: {', '.join(self.methods)}")
        return method

    def manifest(self, method: str, keep_float: Sequence[str] = ()) -> dict:
        """The content of quant.json for one method (``keep_float``: layers returned to float)."""
        amax = {t: v for t, v in self.activation_amax[method].items() if t in self.quantized_tensors(keep_float)}
        float_layers = set(keep_float)
        layers = {layer.node for layer in self.plan.layers} - float_layers
        activations = {}
        for tensor, value in amax.items():
            hist = self.histograms[tensor]
            activations[tensor] = {"amax": float(np.float32(value)), "scale": float(scale_from_amax(value)),
                                   "absmax": hist.absmax, "min": hist.min, "max": hist.max, "values": hist.count,
                                   "all_zero": hist.exponent is None}
        weights = {}
        quantized_weights = {l.weight.tensor for l in self.plan.layers if l.weight is not None and l.node in layers}
        for tensor, spec in self.plan.weights.items():
            if tensor not in quantized_weights:
                continue
            scales = scale_from_amax(self.weight_amax[tensor]).astype(np.float64)
            weights[tensor] = {"axis": spec.axis, "channels": spec.channels, "method": self.config.weight_method,
                               "scale_min": float(scales.min()), "scale_max": float(scales.max()),
                               "scale_mean": float(scales.mean()), "zero_channels": int(np.sum(self.weight_amax[tensor] == 0))}
        residual_adds = {r["node"] for r in self.plan.residuals if r["layer"] not in float_layers}
        excluded_names = {e["node"] for e in self.plan.excluded}
        kept = [{"node": l.node, "op_type": l.op_type, "reason": "kept in float by the accuracy fallback"}
                for l in self.plan.layers if l.node in float_layers]
        kept += [{"node": r["node"], "op_type": "Add", "reason": f"its conv {r['layer']} is kept in float"}
                 for r in self.plan.residuals if r["layer"] in float_layers]
        unquantized = list(self.plan.excluded) + kept + [
            {"node": node.name, "op_type": node.op_type,
             "reason": "no Q/DQ for this op type: TensorRT runs it at the precision of its inputs and fuses it "
                       "where it can"}
            for node in self.model.graph.node
            if node.name not in layers | float_layers and node.name not in {r["node"] for r in self.plan.residuals}
            and node.name not in excluded_names]
        return {
            "format": "quant-calibration/1",
            "tool": {"name": "quant", "version": __version__, **_versions()},
            "model": {"path": str(self.model_path) if self.model_path else None, "sha256": self.model_sha256,
                      "opset": opset_version(self.model)},
            "data": self.data,
            "method": method,
            "parameters": get_calibrator(method, **self.config.params(method)).get_params(),
            "config": self.config.to_json(),
            "quantization": {"dtype": "int8", "symmetric": True, "zero_point": 0, "scale": "amax / 127",
                             "activations": "per-tensor", "weights": "per-channel (output-channel axis)"},
            "calibration_cache": {"file": "calibration.cache",
                                  "header": f"TRT-{trt_version_number(self.config.trt_version)}-"
                                            f"{ALGORITHMS.get(method, DEFAULT_ALGORITHM)}"},
            "activations": activations,
            "weights": weights,
            "layers": [entry for entry in self.plan.to_json()["layers"] if entry["node"] in layers],
            "residual_adds": [r for r in self.plan.residuals if r["node"] in residual_adds],
            "unquantized": unquantized,
        }

    def quantized_tensors(self, keep_float: Sequence[str] = ()) -> set[str]:
        """Activation tensors that still have a Q/DQ pair when ``keep_float`` layers stay in float."""
        float_layers = set(keep_float)
        float_nodes = float_layers | {r["node"] for r in self.plan.residuals if r["layer"] in float_layers}
        return {t for t, consumers in self.plan.consumers.items() if any(n not in float_nodes for n, _ in consumers)}

    def save(self, output: str | Path, protect: Sequence[Path] = (), keep_float: Sequence[str] = (),
             extra_files: dict[str, str] | None = None) -> list[Path]:
        """Write the artifacts atomically. One method: into ``output``; several: one sub-folder each.

        ``keep_float`` names layers left in float (fallback); ``extra_files`` are written beside them.
        """
        protect = tuple(protect) + ((self.model_path,) if self.model_path else ())
        onnx = _onnx()
        with atomic_output_dir(output, protect=protect) as staging:
            folders = []
            for method in self.methods:
                folder = staging if len(self.methods) == 1 else staging / method
                folder.mkdir(exist_ok=True)
                save_model(self.qdq_model(method, keep_float), folder / "model.int8.onnx", self.config.external_data)
                tensors = self.quantized_tensors(keep_float)
                cache_amax = {t: v for t, v in self.activation_amax[method].items() if t in tensors}
                (folder / "calibration.cache").write_text(format_cache(cache_amax, method, self.config.trt_version))
                (folder / "quant.json").write_text(dumps(self.manifest(method, keep_float)))
                for name, text in (extra_files or {}).items():
                    (folder / name).write_text(text)
                save_histograms(folder / "histograms.npz", self.histograms)
                folders.append(Path(output) if len(self.methods) == 1 else Path(output) / method)
            if len(self.methods) > 1:
                (staging / "summary.json").write_text(dumps(self.summary()))
        return folders

    def summary(self) -> dict:
        """amax of every tensor under every method, side by side."""
        return {"methods": list(self.methods), "data": self.data,
                "activations": {t: {m: float(np.float32(self.activation_amax[m][t])) for m in self.methods}
                                | {"absmax": self.histograms[t].absmax} for t in self.plan.activations}}

    def evaluate(self, data, method: str | None = None, **kwargs):
        """Evaluate this result's Q/DQ model against FP32 (see :func:`evaluate`)."""
        return evaluate(self.model, self.qdq_model(method), data, **kwargs)


def _onnx():
    from quant.core.lazy import require

    return require("onnx")


def save_model(model, path: Path, external_data: bool = False) -> None:
    """Save an ONNX model; weights go to ``<name>.data`` beside it when asked or when over 2 GB."""
    onnx = _onnx()
    if external_data or model.ByteSize() >= 2**31 - 1:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data", size_threshold=1024)  # (moves the weights out of `model`)
    else:
        onnx.save_model(model, str(path))


def _versions() -> dict:
    out = {}
    for package in ("onnx", "onnxruntime", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def prepare_model(model) -> tuple[object, Path | None, str]:
    """(normalized ModelProto, path or None, sha256) from a path or a ModelProto."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        proto = load_model(path)
        digest = file_hash(path)
    else:
        path, proto = None, model
        import hashlib

        digest = hashlib.sha256(model.SerializeToString()).hexdigest()
    return normalize(proto), path, digest


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


def calibrate(model, data, config: CalibrationConfig | None = None, *, input_map: dict[str, str] | None = None,
              preprocess: Preprocess | None = None, split: str | None = None, progress: bool = False,
              **overrides) -> CalibrationResult:
    """Collect histograms in one FP32 pass over ``data`` and compute ranges with every configured method.

    ``model`` is a path or an onnx.ModelProto; ``data`` anything :func:`quant.datasets.open_source` takes.
    Keyword overrides set config fields, e.g. ``calibrate(m, d, methods=("entropy", "mse"))``.
    """
    config = (config or CalibrationConfig()).replace(**overrides) if overrides else (config or CalibrationConfig())
    proto, path, digest = prepare_model(model)
    already = sorted({n.op_type for n in proto.graph.node if n.op_type in QDQ_OPS or n.op_type.startswith("QLinear")})
    if already:
        raise QuantError(f"the model already contains quantization nodes ({', '.join(already)}): it is quantized",
                         hint="calibrate the FP32 model it was made from")
    plan = plan_qdq(proto, exclude=set(config.exclude))
    unknown = sorted(set(config.exclude) - {n.name for n in proto.graph.node})
    if unknown:
        raise QuantError(f"--exclude names nodes the model does not have: {', '.join(unknown)}",
                         hint="use ONNX node names as listed in quant.json (layers / unquantized)")
    if not plan.layers:
        raise QuantError("nothing to quantize: the model has no Conv, ConvTranspose, Gemm or MatMul with a "
                         "quantizable input", hint="quant inserts Q/DQ only around these ops; see --exclude")
    source = open_source(data, preprocess, split)
    inputs = input_specs(proto)
    exclude_keys = [k for k in LABEL_KEYS if k in source.keys and k not in {s.name for s in inputs}]
    mapping = resolve_input_map(inputs, source, input_map, exclude=exclude_keys)
    indices = select(len(source), config.num_samples, config.seed)
    if len(indices) < MIN_CALIBRATION_SAMPLES:
        raise QuantError(f"calibration needs at least {MIN_CALIBRATION_SAMPLES} samples, got {len(indices)}: ranges "
                         "from one sample do not represent the data", hint="provide more samples (hundreds are typical)")

    from quant.backends.onnxruntime import OrtRunner
    from quant.collect import AutoBatchSize, collect

    runner = OrtRunner(with_outputs(proto, [t for t in plan.activations if t not in mapping]), mode="fp32")
    auto = AutoBatchSize(int(config.memory_budget_mb * 2**20)) if config.batch_size is None else None
    batches = iter_batches(source, indices, inputs, mapping, auto or config.batch_size)
    collected = collect(runner, batches, plan.activations, bins=config.bins, total=len(indices), progress=progress,
                        batch_size=auto)
    del runner, batches  # release ONNX Runtime's session and arena before the next steps allocate
    data_info = {"source": source.description, "samples": collected.samples, "sha256": collected.data_hash,
                 "selection": "all" if config.num_samples is None or config.num_samples >= len(source)
                 else f"{len(indices)} of {len(source)}, seed {config.seed}",
                 "input_map": mapping, "input_shapes": collected.shapes, "batches": collected.batches}
    result = CalibrationResult(proto, path, digest, plan, collected.histograms, config, data_info)
    compute_ranges(result)
    return result


def compute_ranges(result: CalibrationResult) -> None:
    """Fill activation amax for every method and per-channel weight amax (pure numpy)."""
    config = result.config
    for method in config.methods:
        params = config.params(method)
        result.activation_amax[method] = {
            tensor: get_calibrator(method, **params).fit(result.histograms[tensor]).amax_
            for tensor in result.plan.activations}
    weight_params = config.params(config.weight_method)
    result.weight_amax = {tensor: weight_amax(weight_array(result.model, spec), spec.axis, config.weight_method,
                                              bins=config.bins, **weight_params)
                          for tensor, spec in result.plan.weights.items()}


def recalibrate(folder: str | Path, methods: Sequence[str] | str, model=None, **overrides) -> CalibrationResult:
    """New ranges from a saved ``histograms.npz`` without running the model again."""
    import json

    folder = Path(folder)
    manifest_path = folder / "quant.json"
    if not manifest_path.exists():
        raise QuantError(f"'{folder}' is not a quant calibration folder (no quant.json)",
                         hint="pass a folder written by 'quant calibrate' (one method's folder)")
    try:
        manifest = json.loads(manifest_path.read_text())
        old = CalibrationConfig.from_json(manifest["config"])
    except (ValueError, KeyError) as exc:
        raise QuantError(f"'{manifest_path}' is damaged: {exc}", hint="recalibrate from the model") from None
    histograms = load_histograms(folder / "histograms.npz")
    model_ref = model if model is not None else manifest["model"]["path"]
    if model_ref is None:
        raise QuantError("the calibration folder does not record the model's path", hint="pass --model FP32_MODEL")
    proto, path, digest = prepare_model(model_ref)
    if digest != manifest["model"]["sha256"]:
        raise QuantError(f"the model '{model_ref}' is not the one '{folder}' was calibrated with (sha256 differs)",
                         hint="pass --model with the original FP32 model")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    config = old.replace(methods=methods, **overrides)
    plan = plan_qdq(proto, exclude=set(config.exclude))
    missing = [t for t in plan.activations if t not in histograms]
    if missing:
        raise QuantError(f"histograms.npz lacks tensors {missing[:3]} that the model needs",
                         hint="the folder was made for another model or other exclusions; calibrate again")
    result = CalibrationResult(proto, path, digest, plan, {t: histograms[t] for t in plan.activations}, config,
                               dict(manifest.get("data", {}), recalibrated_from=str(folder)))
    compute_ranges(result)
    return result


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
             progress: bool = False):
    """Run FP32 and INT8 models over held-out data; returns an :class:`quant.eval.EvalReport`."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval import compare

    if runtime not in RUNTIMES:
        raise QuantError(f"unknown INT8 runtime '{runtime}'", hint=f"choose from: {', '.join(RUNTIMES)}")
    fp32_proto = fp32_model if not isinstance(fp32_model, (str, Path)) else load_model(fp32_model)
    if runtime == "tensorrt":
        candidate = _tensorrt_runner(int8_model)
    else:
        int8_proto = int8_model if not isinstance(int8_model, (str, Path)) else load_model(int8_model)
        candidate = OrtRunner(int8_proto, mode=runtime)
    held = _held_out_source(fp32_proto, data, labels, num_samples, seed, input_map, preprocess, split, integer=True)
    reference = OrtRunner(fp32_proto, mode="fp32")
    bar = _bar(len(held.indices), "evaluating") if progress else None
    try:
        report = compare(reference, candidate, held.batches(batch_size), labels=held.labels, topk=topk,
                         runtime=runtime, runtime_description=RUNTIMES[runtime], progress=bar)
    finally:
        if bar is not None:
            bar.close()
    report.labels_source = held.label_name
    if runtime == "ort-int8":
        report.notes.append(candidate.integer_kernel_note())
    return report


# ---------------------------------------------------------------------------------------------- gate & co
def load_heldout(fp32_model, data, labels=None, batch_size: int = 32, num_samples: int | None = None, seed: int = 0,
                 input_map: dict[str, str] | None = None, preprocess: Preprocess | None = None,
                 split: str | None = None, need_labels: bool = False, integer_labels: bool = False):
    """Held-out batches with labels and cached FP32 outputs (see :class:`quant.eval.heldout.HeldOut`)."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.heldout import HeldOut

    proto = fp32_model if not isinstance(fp32_model, (str, Path)) else load_model(fp32_model)
    held = _held_out_source(proto, data, labels, num_samples, seed, input_map, preprocess, split, integer_labels)
    if need_labels and held.labels is None:
        raise QuantError("this metric needs labels and the data has none",
                         hint="pass --labels with a .npy file or the data's label column")
    reference = OrtRunner(proto, mode="fp32")
    batches = list(held.batches(batch_size))
    outputs = [reference.run(feeds) for _, feeds in batches]
    return HeldOut(batches, outputs, held.labels, reference.output_names, held.source.description)


def gate(fp32_model, int8_model, data, metric: str = "top1", max_drop: float | None = None, relative: bool = False,
         min_value: float | None = None, labels=None, runtime: str = "emulate", lower_is_better: bool | None = None,
         **data_options):
    """Score FP32 and INT8 on held-out data and decide pass/fail; returns a truthy-when-passing GateResult."""
    from quant.eval.gate import GateResult, decide
    from quant.eval.scoring import get_metric

    gated = get_metric(metric, None if lower_is_better is None else not lower_is_better)
    decide(gated, 0.0, 0.0, max_drop, relative, min_value) if not gated.has_reference_value else None
    heldout = load_heldout(fp32_model, data, labels, need_labels=gated.needs_labels,
                           integer_labels=gated.needs_labels, **data_options)
    if runtime == "tensorrt":
        candidate = _tensorrt_runner(int8_model)
    else:
        from quant.backends.onnxruntime import OrtRunner

        candidate = OrtRunner(int8_model if not isinstance(int8_model, (str, Path)) else load_model(int8_model),
                              mode=runtime)
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


def load_calibration(folder: str | Path, model=None) -> CalibrationResult:
    """The CalibrationResult of a saved calibration folder (its method, ranges recomputed from histograms)."""
    import json

    folder = Path(folder)
    if not (folder / "quant.json").exists():
        raise QuantError(f"'{folder}' is not a quant calibration folder (no quant.json)",
                         hint="pass one method's folder written by 'quant calibrate'")
    method = json.loads((folder / "quant.json").read_text()).get("method")
    return recalibrate(folder, [method], model=model)


def _qdq_runner_factory(result: CalibrationResult, method: str):
    from quant.backends.onnxruntime import OrtRunner

    cache: dict[frozenset, object] = {}

    def make(keep_float: frozenset):
        if keep_float not in cache:
            cache.clear()  # one session at a time keeps memory flat
            cache[keep_float] = OrtRunner(result.qdq_model(method, keep_float=keep_float), mode="emulate")
        return cache[keep_float]

    return make


def sensitivity(fp32_model, calibration: str | Path, data, metric: str = "top1", labels=None,
                lower_is_better: bool | None = None, progress: bool = False, **data_options):
    """Per-layer sensitivity (both directions) and the one-pass local SQNR, ranked."""
    from quant.eval.scoring import get_metric
    from quant.eval.sensitivity import local_sqnr, sensitivity as run_sensitivity

    result = load_calibration(calibration, model=fp32_model)
    method = result.methods[0]
    scorer = get_metric(metric, None if lower_is_better is None else not lower_is_better)
    heldout = load_heldout(result.model, data, labels, need_labels=scorer.needs_labels,
                           integer_labels=scorer.needs_labels, **data_options)
    local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax, heldout.batches)
    layers = [(layer.node, layer.op_type) for layer in result.plan.layers]
    bar = _bar(2 * len(layers) + 1, "sensitivity") if progress else None
    try:
        return run_sensitivity(heldout, scorer, layers, _qdq_runner_factory(result, method), local, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def fallback(fp32_model, calibration: str | Path, data, metric: str = "top1", max_drop: float | None = None,
             relative: bool = False, min_value: float | None = None, labels=None, lower_is_better: bool | None = None,
             ranking: Sequence[str] | None = None, naive: bool = False, max_float: int | None = None,
             progress: bool = False, **data_options):
    """Greedy mixed-precision fallback; returns (CalibrationResult, FallbackResult)."""
    from quant.eval.fallback import fallback as run_fallback, naive_first_last
    from quant.eval.scoring import get_metric
    from quant.eval.sensitivity import local_sqnr

    result = load_calibration(calibration, model=fp32_model)
    method = result.methods[0]
    scorer = get_metric(metric, None if lower_is_better is None else not lower_is_better)
    heldout = load_heldout(result.model, data, labels, need_labels=scorer.needs_labels,
                           integer_labels=scorer.needs_labels, **data_options)
    names = [layer.node for layer in result.plan.layers]
    if ranking is None:  # cheap first guess: worst local SQNR first; re-ranked by the search where it misleads
        local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax, heldout.batches)
        ranking = sorted(names, key=lambda n: local[n])
    make = _qdq_runner_factory(result, method)
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
