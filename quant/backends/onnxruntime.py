"""ONNX Runtime runner: FP32 reference, exact Q/DQ emulation, and ORT's own INT8 kernels."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.core.onnx_model import serialize_for_runtime
from quant.core.tempdirs import TemporaryFolder

MODES = {
    "fp32": "ONNX Runtime, all graph optimizations (FP32 reference)",
    "emulate": "Q/DQ computed exactly in float (ONNX Runtime with graph optimizations off, so Q/DQ are "
               "not fused into integer kernels): the arithmetic TensorRT's INT8 kernels perform",
    "ort-int8": "ONNX Runtime's own INT8 kernels (graph optimizations on; Q/DQ fused where ORT can)",
}


INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat",
               "QGemm", "QLinearAdd", "DynamicQuantizeMatMul", "QLinearGlobalAveragePool"}


def is_integer_kernel(op_type: str) -> bool:
    """Whether an op of ORT's optimized graph computes on integers (any QLinear* op included)."""
    return op_type in INTEGER_OPS or op_type.startswith("QLinear")


FLOAT_WEIGHTED_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "ConvTranspose"}


def _batch_error(feeds: dict[str, np.ndarray], exc: Exception) -> QuantError:
    shapes = ", ".join(f"{k}{list(v.shape)} {v.dtype}" for k, v in feeds.items())
    return QuantError(f"ONNX Runtime failed on a batch ({shapes}): {str(exc).splitlines()[0]}",
                      hint="check that the data matches the model's inputs (shape, dtype, value range)")


class OrtRunner:
    """Runs an ONNX model (ModelProto or path) on ONNX Runtime's CPU provider."""

    def __init__(self, model, mode: str = "fp32", threads: int | None = None, spin: bool = True,
                 fold_weights: bool = True, fold_cache: dict | None = None) -> None:
        """``spin=False`` stops ORT's idle threads from busy-waiting, leaving the CPU to work done beside it.

        In ``emulate`` mode every constant weight's QuantizeLinear -> DequantizeLinear is computed once, here,
        instead of on every run (bit-identical outputs; ``fold_weights=False`` keeps the pairs); ``fold_cache``, a
        dict shared by the sessions of one model's variants, computes each folded weight only once.
        """
        if mode not in MODES:
            raise QuantError(f"unknown runtime mode '{mode}'", hint=f"choose from: {', '.join(MODES)}")
        ort = require("onnxruntime")
        self.mode = mode
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: quant reports a failed load or run itself, as one Error: line
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if mode == "emulate":
            # A constant weight pre-packed by ORT takes another GEMM path than a computed one (a folded or a
            # switched weight, quant.backends.ort_switch), with other float rounding: off, a float layer
            # computes alike in a variant's own model and in the switched one (bit-identical outputs).
            options.add_session_config_entry("session.disable_prepacking", "1")
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_DISABLE_ALL if mode == "emulate" else level.ORT_ENABLE_ALL
        self._tmp = TemporaryFolder("quant-ort-")  # removed by a later run if this one is killed
        optimized = Path(self._tmp.name) / "optimized.onnx"
        if mode == "ort-int8":  # keep ORT's optimized graph to report which ops ran on integer kernels
            options.optimized_model_filepath = str(optimized)
        self.folded_weights = 0
        self._folded_values: list = []  # OrtValues over the folded weights: alive as long as the session
        if mode == "emulate" and fold_weights:
            from quant.backends.fold_qdq import fold_for_session

            proto = model
            if isinstance(model, (str, Path)):
                try:
                    proto = require("onnx").load(str(model))
                except Exception:  # not loadable by onnx: let ONNX Runtime report it below
                    proto = None
            if proto is not None:
                model, folded = fold_for_session(proto, fold_cache)
                self.folded_weights = len(folded)
                if folded:
                    self._folded_values = [ort.OrtValue.ortvalue_from_numpy(v) for v in folded.values()]
                    options.add_external_initializers(list(folded), self._folded_values)
        source = str(model) if isinstance(model, (str, Path)) else serialize_for_runtime(model, Path(self._tmp.name))
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for invalid graphs
            raise QuantError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}",
                             hint=_load_hint(str(exc), ort.__version__)) from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.optimized_ops: dict[str, int] = {}
        if mode == "ort-int8" and optimized.exists():
            onnx = require("onnx")
            for node in onnx.load(str(optimized), load_external_data=False).graph.node:
                self.optimized_ops[node.op_type] = self.optimized_ops.get(node.op_type, 0) + 1

    def integer_kernel_note(self) -> str:
        """Which ops ORT ran with integer kernels after its Q/DQ fusion (ort-int8 mode only)."""
        integer = {op: n for op, n in sorted(self.optimized_ops.items()) if is_integer_kernel(op)}
        floating = {op: n for op, n in sorted(self.optimized_ops.items()) if op in FLOAT_WEIGHTED_OPS}
        left = {op: n for op, n in sorted(self.optimized_ops.items()) if op in ("QuantizeLinear", "DequantizeLinear")}
        return (f"ORT's optimized graph: integer kernels {integer or 'none'}; float weighted ops {floating or 'none'}; "
                f"Q/DQ left unfused {left or 'none'}")

    def run_views(self, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> tuple[list[np.ndarray], object]:
        """Like ``run`` but without copying the outputs: arrays viewing ONNX Runtime's own buffers.

        Returns (arrays, keepalive); hold ``keepalive`` for as long as the arrays are used.
        """
        binding = self.session.io_binding()
        try:
            for name, value in feeds.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            for name in outputs:
                binding.bind_output(name)
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # ORT raises its own types for bad shapes, dtypes and failing kernels
            raise _batch_error(feeds, exc) from None
        values = binding.get_outputs()
        return [value.numpy() for value in values], (binding, values)

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        try:
            return self.session.run(list(outputs) if outputs else None, feeds)
        except Exception as exc:  # ORT raises its own types for bad shapes, dtypes and failing kernels
            raise _batch_error(feeds, exc) from None


def _load_hint(message: str, version: str) -> str:
    """The fix for an InferenceSession that refused the model: a file format newer than this onnxruntime reads
    (onnx 1.23's helper.make_model writes IR 14, onnxruntime 1.30 reads up to 13) is not an invalid model."""
    import re

    ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", message)
    if ir:
        return (f"onnxruntime {version} reads ONNX IR versions up to {ir.group(2)} and the file is IR {ir.group(1)}: "
                f"upgrade onnxruntime, or save the model with ir_version = {ir.group(2)} (onnx) if its opsets are "
                "ones this onnxruntime has")
    return "check that the model is valid ONNX (onnx.checker.check_model)"

