"""Calibration: one FP32 pass over the data -> histograms -> ranges -> Q/DQ model, cache and manifest."""
from __future__ import annotations

import importlib.metadata
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from quant import __version__
from quant.calibrators import get as get_calibrator, weight_amax
from quant.core.config import SETTINGS, CalibrationConfig, refuse_unknown_keywords
from quant.core.errors import QuantError
from quant.core.histogram import Histogram, load_histograms, save_histograms
from quant.core.histogram_file import histogram_names
from quant.core.io import atomic_output_dir, dumps
from quant.core.onnx_model import (external_data_digest, file_hash, input_specs, load_model, normalize, opset_version,
                                   try_serialize, with_outputs)
from quant.datasets import Preprocess, iter_batches, open_source, resolve_input_map, select, uses_preprocess
from quant.datasets.keyed import fit_to_inputs
from quant.datasets.labels import LABEL_KEYS, label_keys  # noqa: F401 (LABEL_KEYS: re-exported, as before)
from quant.datasets.recorded import choose_preprocess
from quant.qdq import QuantPlan, build_qdq_model, format_cache, plan_qdq, scale_from_amax
from quant.qdq.cache import ALGORITHMS, DEFAULT_ALGORITHM, check_cache_names, trt_version_number
from quant.qdq.ort_cpu import OrtCpuPlan, build_ort_cpu_model, default_reduce_range, plan_ort_cpu
from quant.qdq.placement import weight_array
from quant.pipeline.checks import check_ranges, check_weights, range_warnings
from quant.pipeline.execution import execution, local_device

TRT_MODEL = "model.int8.onnx"
ORT_CPU_MODEL = "model.ort-cpu.int8.onnx"
FP32_MODEL = "model.fp32.onnx"  # written only when the model came in as a torch.nn.Module
VALIDATION_SAMPLES = 8



QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger")


MIN_CALIBRATION_SAMPLES = 2
MIN_KERNEL_SQNR_DB = 25.0  # ORT's integer kernels vs the same Q/DQ in float: below this, something saturates
MIN_EQUAL_FRACTION = 0.9  # non-float outputs (class indices, masks): share of values both runs agree on


def compare_kernel_output(fast, exact) -> dict:
    """One output of ORT's integer kernels against the exact Q/DQ emulation (see validate_ort_cpu)."""
    from quant.eval.metrics import sqnr_db

    fast, exact = np.asarray(fast), np.asarray(exact)
    if fast.shape != exact.shape:
        return {"sqnr_db_ort_kernels_vs_emulated": None, "identical": False,
                "why": f"shapes differ: {list(fast.shape)} vs {list(exact.shape)}", "equal_fraction": 0.0}
    if np.issubdtype(exact.dtype, np.floating):
        a, b = fast.astype(np.float64), exact.astype(np.float64)
        identical = bool(np.array_equal(a, b, equal_nan=True))
        sqnr = None if identical else sqnr_db(float(np.sum(b * b)), float(np.sum((a - b) ** 2)))
        sqnr = None if sqnr is None or not np.isfinite(sqnr) else round(sqnr, 2)
        if sqnr is None and not identical:  # the emulated output is all zeros and the kernels' is not
            return {"sqnr_db_ort_kernels_vs_emulated": None, "identical": False, "equal_fraction":
                    float(np.mean(a == b)) if a.size else 1.0}
        return {"sqnr_db_ort_kernels_vs_emulated": sqnr, "identical": identical}
    equal = float(np.mean(fast == exact)) if exact.size else 1.0
    return {"dtype": str(exact.dtype), "equal_fraction": round(equal, 6), "identical": equal == 1.0}


def worst_kernel_sqnr(outputs: dict) -> float | None:
    """The lowest SQNR over the float outputs that differ; None when none differs (or none is float)."""
    values = [v["sqnr_db_ort_kernels_vs_emulated"] for v in outputs.values()
              if isinstance(v.get("sqnr_db_ort_kernels_vs_emulated"), (int, float))]
    return min(values) if values else None


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
    validation_feeds: dict[str, np.ndarray] | None = None  # a few calibration samples to validate ort-cpu models
    execution: dict = field(default_factory=dict)  # how the pass ran: batches, ray (not written to quant.json)
    ort_cpu_validation: dict[str, dict] = field(default_factory=dict)  # method -> the check save() recorded
    _clipping: dict = field(default_factory=dict, repr=False)  # method -> clipping_report(method), computed once
    exported: object = None  # the onnx.ModelProto exported from a torch.nn.Module (saved as FP32_MODEL)
    bias_correction: dict = field(default_factory=dict)  # method -> measured shifts (quant.pipeline.bias_correction)
    equalization: list = field(default_factory=list)  # the pairs cross-layer equalization balanced (quant.qdq.equalize)
    smoothing: dict = field(default_factory=dict)  # --smooth: quant.json "smoothing" (quant.qdq.smooth.record)
    auto: dict = field(default_factory=dict)  # --method auto: the candidates scored per tensor (quant.json "auto")
    model_external_sha256: str | None = None  # the model's external data files (quant.json model.external_data_sha256)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.config.methods

    def headline(self) -> str:
        """The first line `quant calibrate` prints: how many tensors, on how many samples of which data."""
        return (f"calibrated {len(self.histograms)} activation tensors on {self.data.get('samples')} samples "
                f"({self.data.get('source')})")

    def __repr__(self) -> str:  # a notebook shows this: the dataclass repr was the model, plan, every histogram
        return f"<CalibrationResult {','.join(self.methods)}: {self.headline()}>"

    def ort_cpu_plan(self, keep_float: Sequence[str] = ()) -> OrtCpuPlan:
        return plan_ort_cpu(self.model, self.plan, frozenset(keep_float))

    def reduce_range(self) -> tuple[bool, str]:
        """(7-bit weights?, why) for the ort-cpu model."""
        if self.config.reduce_range == "auto":
            return default_reduce_range()
        return self.config.reduce_range == "on", f"--reduce-range {self.config.reduce_range}"

    def ort_cpu_model(self, method: str | None = None, keep_float: Sequence[str] = ()):
        """The Q/DQ model in ONNX Runtime's CPU form (u8 activations; see quant.qdq.ort_cpu)."""
        method = self._method(method)
        plan = self.ort_cpu_plan(keep_float)
        missing = [t for t in plan.range_tensors if t not in self.histograms]
        if missing:
            raise QuantError(f"no histograms for {missing[:3]}: this calibration was collected for --target tensorrt",
                             hint="calibrate again with --target ort-cpu or --target all")
        ranges = {t: (self.histograms[t].min, self.histograms[t].max, self.activation_amax[method][t])
                  for t in plan.range_tensors}
        return build_ort_cpu_model(self.model, plan, ranges, self.weight_amax, self.reduce_range()[0])

    def validate_ort_cpu(self, model) -> dict:
        """Run the ort-cpu model with ORT's integer kernels and exactly emulated, on a few calibration samples.

        Float outputs are compared by SQNR (None with ``identical`` when both runs agree bit for bit, as
        when ORT fused nothing); other outputs (int64 indices, bool masks) by the fraction of equal values.
        ``integer_kernels`` is empty when ORT ran every op in float: then the kernels were not checked.
        """
        if not self.validation_feeds:
            return {"validated": False, "why": "no calibration samples at hand (recalibrated from histograms)"}
        from quant.backends.onnxruntime import OrtRunner, is_integer_kernel

        kernels = OrtRunner(model, mode="ort-int8")
        emulated = OrtRunner(model, mode="emulate")
        fast, exact = _run_in_batches(kernels, model, self.validation_feeds), _run_in_batches(emulated, model,
                                                                                              self.validation_feeds)
        outputs = {name: compare_kernel_output(a, b) for name, a, b in zip(kernels.output_names, fast, exact)}
        integer = {op: n for op, n in kernels.optimized_ops.items() if is_integer_kernel(op)}
        worst = worst_kernel_sqnr(outputs)
        equal = [v["equal_fraction"] for v in outputs.values() if "equal_fraction" in v]
        agrees = (worst is None or worst >= MIN_KERNEL_SQNR_DB) and all(f >= MIN_EQUAL_FRACTION for f in equal)
        return {"validated": True, "samples": int(next(iter(self.validation_feeds.values())).shape[0]),
                "outputs": outputs, "integer_kernels": integer, "agrees": bool(agrees),
                "worst_sqnr_db": worst, "note": kernels.integer_kernel_note()}

    def qdq_model(self, method: str | None = None, keep_float: Sequence[str] = ()):
        """The Q/DQ ONNX model (onnx.ModelProto) for one method; ``keep_float`` names layers left in float."""
        method = self._method(method)
        base = self.model
        if method in self.bias_correction:
            from quant.pipeline import bias_correction

            base = bias_correction.corrected(self, method, keep_float)
        model = build_qdq_model(base, self.plan, self.activation_amax[method], self.weight_amax,
                                keep_float=frozenset(keep_float), weight_storage=self.config.weight_storage)
        if self.config.high_precision == "fp16":
            from quant.qdq.float16 import to_float16

            model = to_float16(model)
        return model

    def _method(self, method: str | None) -> str:
        from quant.core.config import METHOD_ALIASES

        method = METHOD_ALIASES.get(method, method) if isinstance(method, str) else method  # kl = entropy
        if method is None:
            if len(self.methods) != 1:
                raise QuantError(f"this result holds several methods {list(self.methods)}", hint="name one: method=...")
            return self.methods[0]
        if method not in self.activation_amax:
            raise QuantError(f"method '{method}' was not calibrated here", hint=f"choose from: {', '.join(self.methods)}")
        return method

    def clipping_report(self, method: str) -> dict:
        """Per tensor: how much ``method``'s amax clips; for entropy's hard-clipped tensors also the first of
        mse/percentile/minmax that would not (see :mod:`quant.calibrators.clipping`)."""
        if method not in self._clipping:
            from quant.calibrators.clipping import clipping, gentler_method

            def amax_of(tensor):
                def one(other):
                    known = self.activation_amax.get(other)
                    if known is not None and tensor in known:
                        return known[tensor]
                    return get_calibrator(other, **self.config.params(other)).fit(self.histograms[tensor]).amax_
                return one

            report = {}
            for tensor, value in self.activation_amax[method].items():
                stats = clipping(self.histograms[tensor], value)
                entry = stats.to_json()
                if stats.hard and method == "entropy":
                    other, other_stats = gentler_method(self.histograms[tensor], amax_of(tensor))
                    entry["instead"] = {"method": other, **other_stats.to_json()}
                report[tensor] = entry
            self._clipping[method] = report
        return self._clipping[method]

    def hard_clipping(self, method: str, keep_float: Sequence[str] = ()) -> list[dict]:
        """The tensors ``method`` (entropy) clips hard, worst clipped energy first."""
        tensors = self.quantized_tensors(keep_float)
        report = self.clipping_report(method)
        hard = [{"tensor": t, **e} for t, e in report.items() if t in tensors and "instead" in e]
        return sorted(hard, key=lambda e: (-e["energy_share"], -e["values_share"], e["tensor"]))

    def manifest(self, method: str, keep_float: Sequence[str] = ()) -> dict:
        """The content of quant.json for one method (``keep_float``: layers returned to float)."""
        amax = {t: v for t, v in self.activation_amax[method].items() if t in self.quantized_tensors(keep_float)}
        float_layers = set(keep_float)
        layers = {layer.node for layer in self.plan.layers} - float_layers
        activations = {}
        for tensor, value in amax.items():
            hist = self.histograms[tensor]
            activations[tensor] = {**({"method": self.auto["tensors"][tensor]["method"]} if method == "auto" else {}),
                                   "amax": float(np.float32(value)), "scale": float(scale_from_amax(value)),
                                   "absmax": hist.absmax, "min": hist.min, "max": hist.max, "values": hist.count,
                                   "all_zero": hist.exponent is None,
                                   "clipped_values_share": self.clipping_report(method)[tensor]["values_share"],
                                   "clipped_energy_share": self.clipping_report(method)[tensor]["energy_share"]}
        weights = {}
        quantized_weights = {l.weight.tensor for l in self.plan.layers if l.weight is not None and l.node in layers}
        for tensor, spec in self.plan.weights.items():
            if tensor not in quantized_weights:
                continue
            scales = scale_from_amax(self.weight_amax[tensor]).astype(np.float64)
            weights[tensor] = {"axis": spec.axis, "channels": spec.channels, "method": self.config.weight_method,
                               "scale_min": float(scales.min()), "scale_max": float(scales.max()),
                               "scale_mean": float(scales.mean()), "zero_channels": int(np.sum(self.weight_amax[tensor] == 0))}
            if tensor in self.plan.per_tensor_weights:
                weights[tensor]["per_tensor"] = self.plan.per_tensor_weights[tensor]
        residual_adds = {r["node"] for r in self.plan.residuals if r["layer"] not in float_layers}
        excluded_names = {e["node"] for e in self.plan.excluded}
        kept = [{"node": l.node, "op_type": l.op_type, "reason": "kept in float by the accuracy fallback"}
                for l in self.plan.layers if l.node in float_layers]
        kept += [{"node": r["node"], "op_type": "Add", "reason": f"its conv {r['layer']} is kept in float"}
                 for r in self.plan.residuals if r["layer"] in float_layers]
        op_inputs = self._op_inputs(layers | float_layers, set(amax))
        unquantized = list(self.plan.excluded) + kept + [
            {"node": node.name, "op_type": node.op_type, "reason": self._unquantized_reason(node)}
            for node in self.model.graph.node
            if node.name not in layers | float_layers and node.name not in {r["node"] for r in self.plan.residuals}
            and node.name not in excluded_names and node.name not in op_inputs]
        from quant.schemas import stamp

        return stamp("quant", {
            "format": "quant-calibration/1",
            "tool": {"name": "quant", "version": __version__, **_versions()},
            "model": {"path": str(self.model_path.resolve()) if self.model_path else None, "sha256": self.model_sha256,
                      "opset": opset_version(self.model),
                      **({"external_data_sha256": self.model_external_sha256} if self.model_external_sha256 else {})},
            "data": self.data,
            "method": method,
            "parameters": self._parameters(method),
            "config": self.config.to_json(),
            "quantization": {"dtype": "int8", "symmetric": True, "zero_point": 0, "scale": "amax / 127",
                             "activations": "per-tensor", "weights": "per-channel (output-channel axis)",
                             **self._storage_manifest()},
            "calibration_cache": {"file": "calibration.cache",
                                  "header": f"TRT-{trt_version_number(self.config.trt_version)}-"
                                            f"{ALGORITHMS.get(method, DEFAULT_ALGORITHM)}"},
            "targets": self._targets_manifest(method, keep_float),
            "activations": activations,
            "hard_clipping": self.hard_clipping(method, keep_float),
            "weights": weights,
            "layers": [entry for entry in self.plan.to_json()["layers"] if entry["node"] in layers],
            "residual_adds": [r for r in self.plan.residuals if r["node"] in residual_adds],
            "unquantized": unquantized,
            **({"op_inputs": [{"node": n, "op_type": t, "activations": a} for n, (t, a) in op_inputs.items()]}
               if self.config.quantize_op_types else {}),
            "warnings": self.warnings(method, keep_float),
            **({"bias_correction": self._bias_manifest(method, keep_float)} if self.config.bias_correction else {}),
            **({"equalization": {"applied": True, "pairs": self.equalization,
                                 "what": "cross-layer equalization folded into the FP32 weights and biases before "
                                         "calibration (quant.qdq.equalize); the FP32 function is unchanged"}}
               if self.config.equalize else {}),
            **({"smoothing": self.smoothing} if self.config.smooth else {}),
            **({"auto": self.auto} if method == "auto" else {}),
        })

    def _op_inputs(self, layers: set[str], quantized: set[str]) -> dict[str, tuple[str, list[str]]]:
        """node -> (op type, its inputs with a Q/DQ pair) for the nodes --quantize-op-types gave one to."""
        types = {node.name: node.op_type for node in self.model.graph.node}
        residuals = {r["node"] for r in self.plan.residuals}
        found: dict[str, tuple[str, list[str]]] = {}
        for tensor, uses in self.plan.consumers.items():
            for name, _ in uses:
                if name not in layers and name not in residuals and tensor in quantized:
                    found.setdefault(name, (types.get(name, ""), []))[1].append(tensor)
        return found

    def _unquantized_reason(self, node) -> str:
        if node.op_type in self.config.quantize_op_types:  # asked for, but add_op_inputs placed no pair
            from quant.core.onnx_model import initializers
            from quant.qdq.op_inputs import _epilogue_tensors

            if node.output and node.output[0] in _epilogue_tensors(self.model, initializers(self.model)):
                return ("--quantize-op-types: a constant scale or shift right after a layer (TensorRT fuses it into "
                        "that layer), so no Q/DQ between them")
            return "--quantize-op-types: no float activation input to quantize"
        return ("no Q/DQ for this op type: TensorRT runs it at the precision of its inputs and fuses it where it can")

    def _bias_manifest(self, method: str, keep_float: Sequence[str]) -> dict:
        from quant.pipeline import bias_correction

        return bias_correction.manifest(self, method, keep_float)

    def _parameters(self, method: str) -> dict:
        if method != "auto":
            return get_calibrator(method, **self.config.params(method)).get_params()
        from quant.pipeline.auto_range import BASE_METHODS

        return {"candidates": list(BASE_METHODS), "percentile": self.config.percentile,
                "samples": self.auto.get("samples")}


    def warnings(self, method: str | None = None, keep_float: Sequence[str] = ()) -> list[dict]:
        """Tensors whose scale is a guess (all zeros, no values) or was raised to a normal float32 (see checks)."""
        method = self._method(method)
        tensors = self.quantized_tensors(keep_float)
        amax = {t: v for t, v in self.activation_amax[method].items() if t in tensors}
        layers = {layer.node for layer in self.plan.layers} - set(keep_float)
        weights = {l.weight.tensor: self.weight_amax[l.weight.tensor] for l in self.plan.layers
                   if l.weight is not None and l.node in layers}
        return range_warnings(self.histograms, amax, weights)

    def _storage_manifest(self) -> dict:
        """How model.int8.onnx stores weights and in which float type its unquantized layers run."""
        from quant.qdq.float_types import TYPE_NAMES, model_float_type

        float_type = "float16" if self.config.high_precision == "fp16" else TYPE_NAMES.get(model_float_type(self.model))
        return {"weight_storage": ("int8 initializers read by DequantizeLinear" if self.config.weight_storage == "int8"
                                   else "float initializers with QuantizeLinear + DequantizeLinear"),
                "high_precision": float_type,
                "io_types": "as the FP32 model (Casts at the inputs and outputs)"
                            if self.config.high_precision == "fp16" else "as the model"}

    def files(self) -> list[str]:
        """The files ``save`` writes into each method's folder (besides ``extra_files``)."""
        files = [TRT_MODEL, "calibration.cache"] if "tensorrt" in self.config.targets else []
        files += [ORT_CPU_MODEL] if "ort-cpu" in self.config.targets else []
        files += [FP32_MODEL] if self.exported is not None else []
        files += ["bias_correction.npz"] if self.bias_correction else []
        return files + ["quant.json", "histograms.npz"]

    def _targets_manifest(self, method: str, keep_float: Sequence[str]) -> dict:
        out = {}
        if "tensorrt" in self.config.targets:
            out["tensorrt"] = {"model": TRT_MODEL, "calibration_cache": "calibration.cache",
                               "form": "symmetric int8 activations (zero point 0), Q/DQ on the inputs of weighted ops"}
        if "ort-cpu" in self.config.targets:
            from quant.qdq.ort_cpu import u8_params, weight_levels

            plan = self.ort_cpu_plan(keep_float)
            reduce, why = self.reduce_range()
            tensors = {}
            for tensor, src in plan.pairs.items():
                hist = self.histograms[src]
                scale, zero = u8_params(hist.min, hist.max, self.activation_amax[method][src])
                tensors[tensor] = {"scale": float(scale), "zero_point": int(zero), "range_of": src}
            out["ort-cpu"] = {"model": ORT_CPU_MODEL,
                              "form": "uint8 activations with zero points, int8 per-channel weights, int32 biases; "
                                      "Q/DQ on every tensor between integer ops (ONNX Runtime's CPU fusions)",
                              "weight_range": f"[-{weight_levels(reduce)}, {weight_levels(reduce)}]",
                              "reduce_range": reduce, "reduce_range_why": why, **plan.to_json(), "activations": tensors}
        return out

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
        with atomic_output_dir(output, protect=protect) as staging:
            folders = []
            for method in self.methods:
                folder = staging if len(self.methods) == 1 else staging / method
                folder.mkdir(exist_ok=True)
                manifest = self.manifest(method, keep_float)
                if self.exported is not None:  # the FP32 model, so eval/sensitivity/recalibrate can find it
                    save_model(self.exported, folder / FP32_MODEL)
                    final = Path(output) if len(self.methods) == 1 else Path(output) / method
                    manifest["model"]["path"] = str((final / FP32_MODEL).resolve())
                if "tensorrt" in self.config.targets:
                    save_model(self.qdq_model(method, keep_float), folder / TRT_MODEL, self.config.external_data)
                    tensors = self.quantized_tensors(keep_float)
                    cache_amax = {t: v for t, v in self.activation_amax[method].items() if t in tensors}
                    (folder / "calibration.cache").write_bytes(
                        format_cache(cache_amax, method, self.config.trt_version).encode("utf-8"))
                if "ort-cpu" in self.config.targets:
                    model = self.ort_cpu_model(method, keep_float)
                    check = self.validate_ort_cpu(model)
                    manifest["targets"]["ort-cpu"]["validation"] = self.ort_cpu_validation[method] = check
                    save_model(model, folder / ORT_CPU_MODEL, self.config.external_data)
                (folder / "quant.json").write_text(dumps(manifest))
                for name, text in (extra_files or {}).items():
                    (folder / name).write_text(text)
                save_histograms(folder / "histograms.npz", self.histograms)
                if method in self.bias_correction:
                    from quant.pipeline import bias_correction

                    bias_correction.save(self, method, folder)
                folders.append(Path(output) if len(self.methods) == 1 else Path(output) / method)
            if len(self.methods) > 1:
                (staging / "summary.json").write_text(dumps(self.summary()))
        return folders

    def summary(self) -> dict:
        """amax of every tensor under every method, side by side."""
        from quant.schemas import stamp

        return stamp("summary", {"methods": list(self.methods), "data": self.data,
                "activations": {t: {m: float(np.float32(self.activation_amax[m][t])) for m in self.methods}
                                | {"absmax": self.histograms[t].absmax} for t in self.histograms}})

    def evaluate(self, data, method: str | None = None, **kwargs):
        """Evaluate this result's Q/DQ model against FP32 (see :func:`quant.pipeline.evaluation.evaluate`)."""
        from quant.pipeline.evaluation import evaluate

        return evaluate(self.model, self.qdq_model(method), data, **kwargs)


def _onnx():
    from quant.core.lazy import require

    return require("onnx")


def save_model(model, path: Path, external_data: bool = False) -> None:
    """Save an ONNX model; weights go to ``<name>.data`` beside it when asked or when over 2 GB."""
    onnx = _onnx()
    data = None if external_data else try_serialize(model)
    if data is None:
        # onnx creates the data file with mode 0600 whatever the umask, and appends to one that exists: created
        # (0666 & ~umask, as a plain open() gives) or emptied here first, it holds this model's weights alone
        os.close(os.open(f"{path}.data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666))
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data", size_threshold=1024)  # (moves the weights out of `model`)
    else:
        Path(path).write_bytes(data)


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
    proto = normalize(proto)
    from quant.qdq.float_types import FLOAT16, FLOAT16_QDQ_OPSET, model_float_type, raise_versions

    if model_float_type(proto) == FLOAT16:  # float16 Q/DQ needs opset 19: upgrade (or refuse) before the pass
        proto = raise_versions(proto, FLOAT16_QDQ_OPSET)
    return proto, path, digest


def calibrate(model, data, config: CalibrationConfig | None = None, *, input_map: dict[str, str] | None = None,
              preprocess: Preprocess | None = None, split: str | None = None, progress: bool = False,
              ray=None, device: str | None = "ort", example_inputs=None, **overrides) -> CalibrationResult:
    """Collect histograms in one FP32 pass over ``data`` and compute ranges with every configured method.

    ``model`` is a path, an onnx.ModelProto, or a torch.nn.Module (exported to ONNX with ``example_inputs``,
    a tensor or tuple of tensors; the FP32 ONNX file is saved as model.fp32.onnx beside the Q/DQ model). A
    ``.pt2`` path (torch.export.save) is loaded with torch.export.load and exported the same way.
    ``data`` is anything :func:`quant.datasets.open_source` takes. ``device``: 'ort' (ONNX Runtime, CPU) or a
    torch device ('cuda', 'cuda:N', 'cpu') for the collection pass. Keyword overrides set config fields,
    e.g. ``calibrate(m, d, methods=("entropy", "mse"))``. ``ray``: run the pass as Ray tasks over shards of
    the data (True/"local", an address, or :class:`quant.distributed.RayOptions`); the result is identical
    to one process.
    """
    refuse_unknown_keywords(overrides, SETTINGS, "not a keyword of quant.calibrate nor a calibration setting",
                            also=calibrate)
    config = (config or CalibrationConfig()).replace(**overrides) if overrides else (config or CalibrationConfig())
    if "percentile" in overrides:
        config.refuse_unused_percentile()
    context = execution(device, ray)
    # With Ray the workers run the model (each on the device Ray gives it); this process runs nothing.
    torch_backend, torch_device = _torch_backend(None if context.ray is not None else device)
    exported = None
    if _is_torch_module(model):
        from quant.backends.torch.export import export_module

        model = exported = export_module(model, example_inputs)
    elif _is_program_path(model) and example_inputs is None:  # model.pt2 from torch.export.save
        from quant.backends.torch.export import export_program

        model = exported = export_program(model)
    elif example_inputs is not None:
        raise QuantError("example_inputs is only for a torch.nn.Module model", hint="drop example_inputs=")
    proto, path, digest = prepare_model(model)
    external = external_data_digest(path) if path is not None else None
    from quant.qdq.insert import _node_subgraphs

    nodes = list(proto.graph.node) + [n for g in _node_subgraphs(proto.graph.node) for n in g.node]  # If/Loop bodies too
    already = sorted({n.op_type for n in nodes if n.op_type in QDQ_OPS or n.op_type.startswith("QLinear")})
    if already:
        raise QuantError(f"the model already contains quantization nodes ({', '.join(already)}): it is quantized",
                         hint="calibrate the FP32 model it was made from")
    proto, equalized = _equalize(proto, config)
    plan = make_plan(proto, config)
    check_float_types(proto, plan, config)
    if not plan.layers and plan.excluded:
        first = plan.excluded[0]
        raise QuantError(f"nothing to quantize: every weighted op is left in float ({len(plan.excluded)}; "
                         f"{first['node']}: {first['reason']})",
                         hint="an INT8 model whose layers all stay in float gains nothing; check --exclude")
    if not plan.layers:
        raise QuantError("nothing to quantize: the model has no Conv, ConvTranspose, Gemm or MatMul with a "
                         "quantizable input", hint="quant inserts Q/DQ only around these ops; see --exclude")
    check_weights(proto, plan)
    if "tensorrt" in config.targets:
        check_cache_names(plan.activations)  # before the pass, not after it
    inputs = input_specs(proto)
    preprocess = choose_preprocess(preprocess)
    source = fit_to_inputs(open_source(data, preprocess, split), inputs, input_map)
    exclude_keys = label_keys(source, [spec.name for spec in inputs])
    mapping = resolve_input_map(inputs, source, input_map, exclude=exclude_keys)
    indices = select(len(source), config.num_samples, config.seed)
    if len(indices) < MIN_CALIBRATION_SAMPLES:
        raise QuantError(f"calibration needs at least {MIN_CALIBRATION_SAMPLES} samples, got {len(indices)}: ranges "
                         "from one sample do not represent the data", hint="provide more samples (hundreds are typical)")
    smoothing = {}
    if config.smooth:  # a bounded first pass: per-channel maxima of the depthwise convolutions' inputs
        from quant.qdq import smooth

        targets = dict(smooth.smoothable(proto, plan))
        amax = smooth.channel_amax(proto, list(dict.fromkeys(targets.values())),
                                   iter_batches(source, indices, inputs, mapping, 1), len(indices), progress)
        scales = {node: smooth.scales_from(amax[tensor]) for node, tensor in targets.items()}
        smoothing = smooth.record(scales, targets, amax)
        proto, plan = _replan(smooth.apply(proto, scales), config)

    from quant.backends.onnxruntime import OrtRunner
    from quant.collect import collect

    tensors = needed_tensors(proto, plan, config)
    def extended():  # ONNX Runtime's model, returning the tensors (the torch backend taps them by name instead)
        return with_outputs(proto, [t for t in tensors if t not in mapping])

    validation: dict[str, np.ndarray] = {}
    if context.ray is not None:
        from quant.distributed.ray_cluster import collect_on_ray

        # the same arithmetic as one process on the same device kind (quant.json stays identical)
        collected, collected_with = collect_on_ray(context, extended() if context.device is None else proto,
                                                   data if isinstance(data, (str, Path)) else source, preprocess,
                                                   split, indices, inputs, mapping, tensors, config, progress)
        if "ort-cpu" in config.targets:  # the same samples one process keeps (shapes as the first sample's)
            for _ in _keep_first(iter_batches(source, indices, inputs, mapping, 1), validation, VALIDATION_SAMPLES):
                if len(next(iter(validation.values()))) >= VALIDATION_SAMPLES:
                    break
    else:
        auto, config_batch = collection_batching(config.batch_size, config.memory_budget_mb, torch_device)
        batches = iter_batches(source, indices, inputs, mapping, auto or config_batch)
        if "ort-cpu" in config.targets:
            batches = _keep_first(batches, validation, VALIDATION_SAMPLES)
        if torch_device is None:
            # No spinning: the histograms of one batch are computed while ORT runs the next (collect._run_ahead).
            runner = OrtRunner(extended(), mode="fp32", spin=False)
            collected = collect(runner, batches, tensors, bins=config.bins, total=len(indices), progress=progress,
                                batch_size=auto)
            collected_with = "ONNX Runtime (CPU)"
            del runner  # release ONNX Runtime's session and arena before the next steps allocate
        else:
            collected, collected_with = torch_backend.collect(proto, torch_device, batches, tensors, config.bins,
                                                              len(indices), progress, auto)
        del batches
    data_info = {"source": source.description, "samples": collected.samples, "sha256": collected.data_hash,
                 "selection": "all" if config.num_samples is None or config.num_samples >= len(source)
                 else f"{len(indices)} of {len(source)}, seed {config.seed}",
                 "input_map": mapping, "input_shapes": collected.shapes, "collected_with": collected_with}
    if uses_preprocess(source):  # recorded so that eval, gate, sensitivity and fallback apply the same
        data_info["preprocess"] = (preprocess.spec if preprocess else Preprocess()).to_dict()
    result = CalibrationResult(proto, path, digest, plan, collected.histograms, config, data_info,
                               validation_feeds=validation or None, exported=exported, equalization=equalized,
                               smoothing=smoothing, model_external_sha256=external)
    # How the pass ran (not in quant.json, which stays the same whatever the batching, the workers or the
    # device that collected it).
    result.execution = {"batches": collected.batches, "ray": context.ray is not None}
    compute_ranges(result)
    if "auto" in config.methods:  # a bounded second pass over a fixed subset of the calibration samples
        from quant.pipeline.auto_range import choose_auto

        choose_auto(result, source, indices, inputs, mapping, collected.digests, progress)
        check_ranges(result.activation_amax, result.weight_amax)
    if config.bias_correction:  # a second pass, now that the ranges are known (quant.pipeline.bias_correction)
        from quant.pipeline import bias_correction

        # one sample per run: ONNX Runtime's Conv output can differ in the last bit with the batch size, and the
        # correction must not (a sample's outputs at batch 1 are the same whatever --batch-size is)
        bias_batches = iter_batches(source, indices, inputs, mapping, 1)
        bias_correction.measure(result, bias_batches, len(indices), progress)
        checked = indices[:bias_correction.CHECK_SAMPLES]
        bias_correction.check(result, iter_batches(source, checked, inputs, mapping, 1), len(checked), progress)
    return result


def collection_batching(batch_size: int | None, memory_budget_mb: float, torch_device: str | None):
    """(AutoBatchSize or None, fixed batch size or None) of a collection pass: ``batch_size`` when given; else
    on a GPU CUDA_BATCH samples a batch, elsewhere a batch size fitted to the memory budget."""
    from quant.collect import AutoBatchSize

    if batch_size is not None:
        return None, batch_size
    if torch_device is not None and torch_device.startswith("cuda"):
        from quant.backends.torch.pipeline import CUDA_BATCH

        return None, CUDA_BATCH
    return AutoBatchSize(int(memory_budget_mb * 2**20)), None


def _replan(proto, config: CalibrationConfig):
    """(proto, its plan) after a graph change before the collection pass, with the plan's checks again."""
    plan = make_plan(proto, config)
    check_float_types(proto, plan, config)
    check_weights(proto, plan)
    if "tensorrt" in config.targets:
        check_cache_names(plan.activations)
    return proto, plan


def _equalize(proto, config: CalibrationConfig):
    """(the model with cross-layer equalization folded in when the config asks, the pairs balanced)."""
    if not config.equalize:
        return proto, []
    from quant.qdq.equalize import equalize

    return equalize(proto)


def make_plan(proto, config: CalibrationConfig) -> QuantPlan:
    """The Q/DQ plan with the user's exclusions and inclusions, each checked against the model first."""
    nodes = {n.name: n for n in proto.graph.node}
    from quant.qdq.placement import WEIGHTED_OPS, subgraph_weighted_ops

    inner_ops = list(subgraph_weighted_ops(proto.graph))
    inner = {node.name: holder for node, holder in inner_ops}
    for flag, names in (("--exclude", config.exclude), ("--include", config.include)):
        unknown = sorted(set(names) - set(nodes))
        if unknown and unknown[0] in inner:  # listed in quant.json (unquantized), but not a node of the main graph
            raise QuantError(f"{flag} {unknown[0]}: this node is inside a subgraph of {inner[unknown[0]]}, where quant "
                             "places no Q/DQ: it stays in float whatever the flags", hint=f"drop {flag} {unknown[0]}")
        if unknown:
            raise QuantError(f"{flag} names nodes the model does not have: {', '.join(unknown)}",
                             hint="use ONNX node names as listed in quant.json (layers / unquantized)")
    not_weighted = sorted(n for n in config.include if nodes[n].op_type not in WEIGHTED_OPS)
    if not_weighted:
        raise QuantError(f"--include {not_weighted[0]}: a {nodes[not_weighted[0]].op_type} node; quant quantizes "
                         f"the inputs of {', '.join(WEIGHTED_OPS)} only", hint="--include names such a layer")
    op_types = {n.op_type for n in proto.graph.node}
    absent = sorted(set(config.exclude_op_types) - op_types)
    inside = [(node, holder) for node, holder in inner_ops if absent and node.op_type == absent[0]]
    if inside:
        raise QuantError(f"--exclude-op-type {absent[0]}: every {absent[0]} of the model is inside a subgraph "
                         f"({inside[0][0].name} in {inside[0][1]}), where quant places no Q/DQ: they stay in float "
                         "whatever the flags", hint=f"drop --exclude-op-type {absent[0]}")
    if absent:
        raise QuantError(f"--exclude-op-type {absent[0]}: the model has no {absent[0]} node",
                         hint=f"op types in this model: {', '.join(sorted(op_types))}")
    import re

    for pattern in config.exclude_patterns:
        if not any(re.search(pattern, name) for name in nodes):
            inside = sorted(name for name in inner if re.search(pattern, name))
            if inside:  # listed in quant.json (unquantized), but only inside If/Loop/Scan bodies
                raise QuantError(f"--exclude-regex '{pattern}' matches only nodes inside subgraphs ({inside[0]} in "
                                 f"{inner[inside[0]]}), where quant places no Q/DQ: they stay in float whatever the "
                                 "flags", hint=f"drop --exclude-regex '{pattern}'")
            raise QuantError(f"--exclude-regex '{pattern}' matches no node name of the model",
                             hint="node names are listed in quant.json (layers / unquantized); the pattern is "
                                  "searched anywhere in the name (anchor it with ^)")
    plan = plan_qdq(proto, exclude=set(config.exclude), exclude_op_types=config.exclude_op_types,
                    exclude_patterns=config.exclude_patterns, include=config.include)
    if config.quantize_op_types:  # Model Optimizer's placement: Q/DQ on Add/Mul/GAP/Resize inputs too
        from quant.qdq.op_inputs import add_op_inputs

        missing = sorted(set(config.quantize_op_types) - op_types)
        if missing:
            raise QuantError(f"--quantize-op-types {missing[0]}: the model has no {missing[0]} node",
                             hint=f"op types in this model: {', '.join(sorted(op_types))}")
        add_op_inputs(proto, plan, config.quantize_op_types)
    return plan


def check_float_types(proto, plan: QuantPlan, config: CalibrationConfig) -> None:
    """Refuse, before the pass, float types quant cannot write Q/DQ for (see quant.qdq.float_types)."""
    from quant.qdq.float_types import FLOAT, TYPE_NAMES, check_quantizable_types, quantized_types

    types = plan.tensor_types = quantized_types(proto, plan)
    check_quantizable_types(types)
    other = sorted({TYPE_NAMES[e] for e in types.values() if e != FLOAT and e in TYPE_NAMES})
    if other and "ort-cpu" in config.targets:
        raise QuantError(f"--target {config.target}: the ort-cpu form is written for float32 models, this one "
                         f"quantizes {', '.join(other)} tensors", hint="use --target tensorrt for this model")
def _torch_backend(device: str | None):
    """(quant.backends.torch.pipeline or None, checked torch device or None) for ``device``; 'ort' -> (None, None)."""
    torch_device = local_device(device)
    if torch_device is None:
        return None, None
    from quant.backends.torch import pipeline as torch_backend

    return torch_backend, torch_device


def _is_program_path(model) -> bool:
    from quant.backends.torch.export import is_program_path  # imports no torch

    return is_program_path(model)


def _is_torch_module(model) -> bool:
    import sys

    torch = sys.modules.get("torch")  # a torch.nn.Module implies torch is imported already
    return torch is not None and isinstance(model, torch.nn.Module)


def needed_tensors(proto, plan: QuantPlan, config: CalibrationConfig) -> list[str]:
    """Tensors to histogram: TensorRT's Q/DQ inputs and/or the ranges of the ort-cpu form."""
    tensors = list(plan.activations) if "tensorrt" in config.targets else []
    if "ort-cpu" in config.targets:
        tensors += plan_ort_cpu(proto, plan).range_tensors
    return list(dict.fromkeys(tensors))


def _run_in_batches(runner, model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``runner.run(feeds)``, split into runs of the model's fixed batch size where it has one (e.g. [1, 3, H, W])."""
    from quant.core.onnx_model import input_specs

    fixed = [s.shape[0] for s in input_specs(model) if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0]
    total = len(next(iter(feeds.values())))
    step = min(fixed) if fixed else total
    if step >= total:
        return runner.run(feeds)
    parts = [runner.run({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, total, step)]
    return [np.concatenate(outputs) for outputs in zip(*parts)]


def _keep_first(batches, keep: dict, samples: int):
    """Pass batches through, keeping copies of the first ``samples`` samples' feeds in ``keep``."""
    for indices, feeds in batches:
        have = len(next(iter(keep.values()))) if keep else 0
        same_shape = not keep or all(keep[n].shape[1:] == v.shape[1:] for n, v in feeds.items() if n in keep)
        if have < samples and same_shape:
            for name, value in feeds.items():
                part = np.array(value[: samples - have])
                keep[name] = part if name not in keep else np.concatenate([keep[name], part])
        yield indices, feeds


def compute_ranges(result: CalibrationResult) -> None:
    """Fill activation amax for every method and per-channel weight amax (pure numpy)."""
    config = result.config
    jobs = [(method, tensor) for method in config.methods if method != "auto" for tensor in result.histograms]

    def fit(job):
        method, tensor = job
        return get_calibrator(method, **config.params(method)).fit(result.histograms[tensor]).amax_

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # NumPy releases the GIL in the searches
        values = list(pool.map(fit, jobs))
    for method in config.methods:
        if method != "auto":  # auto needs the data: calibrate() or the record of an auto folder fills it
            result.activation_amax[method] = {}
    for (method, tensor), value in zip(jobs, values):
        result.activation_amax[method][tensor] = value
    weight_params = config.params(config.weight_method)
    result.weight_amax = {tensor: _weight_amax(weight_array(result.model, spec), spec.axis, config.weight_method,
                                               bins=config.bins, **weight_params)
                          for tensor, spec in result.plan.weights.items()}
    check_ranges(result.activation_amax, result.weight_amax)


def _weight_amax(weight: np.ndarray, axis: int | None, method: str, **params) -> np.ndarray:
    """Per-channel amax along ``axis``; one amax (a 0-d array) for the whole tensor when ``axis`` is None."""
    if axis is None:
        return weight_amax(np.asarray(weight).reshape(1, -1), 0, method, **params).reshape(())
    return weight_amax(weight, axis, method, **params)


def recalibrate(folder: str | Path, methods: Sequence[str] | str | None, model=None, **overrides) -> CalibrationResult:
    """New ranges from a saved ``histograms.npz`` without running the model again (``methods=None``: the folder's own)."""
    folder = Path(folder)
    manifest_path = folder / "quant.json"
    if not manifest_path.exists():
        if (folder / "summary.json").is_file():  # quant's own multi-method folder: name its methods
            methods = sorted(p.name for p in folder.iterdir() if (p / "quant.json").is_file())
            raise QuantError(f"'{folder}' holds several methods ({', '.join(methods) or 'none'}), not one calibration",
                             hint=f"pass one method's folder, e.g. '{folder / (methods[0] if methods else 'entropy')}'")
        raise QuantError(f"'{folder}' is not a quant calibration folder (no quant.json)",
                         hint="pass a folder written by 'quant calibrate' (one method's folder)")
    from quant.core.readback import read_quant_json

    manifest = read_quant_json(manifest_path)
    try:
        old = CalibrationConfig.from_json(manifest["config"])
    except QuantError as exc:
        raise QuantError(f"the manifest '{manifest_path}' is malformed: field 'config': {exc.message}",
                         hint="calibrate again: quant.json is quant's own record") from None
    histogram_file = folder / "histograms.npz"
    stored = set(histogram_names(histogram_file))  # only the names: the arrays are read once the model says which
    model_ref = model if model is not None else manifest["model"]["path"]
    if model_ref is None:
        raise QuantError("the calibration folder does not record the model's path", hint="pass --model FP32_MODEL")
    if model is None and not Path(model_ref).exists() and (folder / FP32_MODEL).is_file():
        model_ref = folder / FP32_MODEL  # the exported model of a folder moved or copied elsewhere (sha256 checked)
    if model is None and not Path(model_ref).exists():
        raise QuantError(f"the FP32 model recorded in '{manifest_path}' ({model_ref}) does not exist any more",
                         hint="pass --model with its new path (its sha256 is checked)")
    proto, path, digest = prepare_model(model_ref)
    if digest != manifest["model"]["sha256"]:
        # sensitivity and fallback take the model as an argument: only recalibrate has --model
        hint = ("the file changed since calibration: put the original back, pass it with --model, or calibrate again"
                if model is None else f"pass the FP32 model that quant.json records: {manifest['model']['path']}")
        raise QuantError(f"the model '{model_ref}' is not the one '{folder}' was calibrated with (sha256 differs)",
                         hint=hint)
    external = external_data_digest(path) if path is not None else None
    recorded = manifest["model"].get("external_data_sha256")
    if recorded is not None and external != recorded:  # the same .onnx file, other weights in its w.bin
        raise QuantError(f"the external data of the model '{model_ref}' is not what '{folder}' was calibrated with "
                         "(sha256 differs)", hint="put back the original weight files, or calibrate again")
    if methods is None:
        methods = manifest.get("method") or old.methods
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    config = old.replace(methods=methods, **overrides)
    if "percentile" in overrides:
        config.refuse_unused_percentile()
    proto, equalized = _equalize(proto, config)
    smoothing = {}
    if config.smooth:  # the scales measured on the data, recorded in quant.json
        from quant.qdq import smooth

        smoothing = manifest.get("smoothing")
        proto = smooth.apply(proto, smooth.scales_of_record(smoothing, str(manifest_path)))
    plan = make_plan(proto, config)
    check_weights(proto, plan)
    tensors = needed_tensors(proto, plan, config)
    missing = [t for t in tensors if t not in stored]
    if missing:
        hint = ("the folder was collected for --target tensorrt: calibrate again with --target ort-cpu or all"
                if config.target != old.target else
                "the folder was made for another model or other exclusions; calibrate again")
        raise QuantError(f"histograms.npz lacks tensors {missing[:3]} that the model needs", hint=hint)
    histograms = load_histograms(histogram_file, names=tensors, bins=old.bins)
    _check_written_here(folder, histogram_file)  # (after reading: a damaged file gets the reader's own message)
    result = CalibrationResult(proto, path, digest, plan, histograms, config,
                               dict(manifest.get("data", {}), recalibrated_from=str(folder)), equalization=equalized,
                               smoothing=smoothing, model_external_sha256=external)
    compute_ranges(result)
    if "auto" in config.methods:  # the choice recorded in quant.json (scoring it again needs the data)
        from quant.pipeline.auto_range import recorded_auto

        result.activation_amax["auto"], result.auto = recorded_auto(manifest, histograms, str(folder))
        check_ranges(result.activation_amax, result.weight_amax)
    if config.bias_correction:  # the shifts measured on the data, for the same ranges only
        from quant.pipeline import bias_correction

        bias_correction.check_recalibration(manifest.get("method"), methods, old, config)
        bias_correction.load(result, methods[0], folder)
    return result


def _check_written_here(folder: Path, path: Path) -> None:
    """Refuse a readable file of a calibration folder that is not the one quant wrote there (its manifest records
    the sha256): another run's histograms.npz copied in would give its ranges under this folder's data provenance."""
    from quant.core.ownership import read_manifest, sha256_file

    recorded = (read_manifest(folder) or {}).get("files", {}).get(path.name)
    if recorded is not None and path.is_file() and sha256_file(path) != recorded:
        raise QuantError(f"'{path}' is not the {path.name} quant wrote into '{folder}' (its sha256 differs from the "
                         "folder's .quant-manifest.json)",
                         hint="put back the folder's own file, or calibrate again")


def load_calibration(folder: str | Path, model=None) -> CalibrationResult:
    """The CalibrationResult of a saved calibration folder (its method, ranges recomputed from histograms)."""
    return recalibrate(folder, None, model=model)
