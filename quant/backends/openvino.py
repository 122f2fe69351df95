"""OpenVINO runtime (CPU): runs an ONNX model, Q/DQ included, with OpenVINO's own INT8 kernels.

OpenVINO reads the TensorRT-form model (symmetric s8 Q/DQ on the inputs of weighted ops) as it is and
runs the quantized convolutions and matmuls on integer kernels (its low-precision transformations), so
the same model.int8.onnx serves TensorRT and CPU servers. Install with `pip install 'quant-trt[openvino]'`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.core.onnx_model import serialize_for_runtime
from quant.core.tempdirs import TemporaryFolder

DESCRIPTION = "OpenVINO CPU runtime (its INT8 kernels where the model has Q/DQ; FP32 otherwise)"


class OpenVinoRunner:
    """Compiles an ONNX model (ModelProto or path) for OpenVINO's CPU plugin."""

    def __init__(self, model, threads: int | None = None, latency: bool = True) -> None:
        ov = require("openvino")
        self._tmp = TemporaryFolder("quant-ov-")  # removed by a later run if this one is killed
        if isinstance(model, (str, Path)):
            path = str(model)
        else:
            source = serialize_for_runtime(model, Path(self._tmp.name))
            if isinstance(source, bytes):
                path = str(Path(self._tmp.name) / "model.onnx")
                Path(path).write_bytes(source)
            else:
                path = source
        config = {"INFERENCE_PRECISION_HINT": "f32",  # no silent bf16/fp16 on CPUs that have them
                  "PERFORMANCE_HINT": "LATENCY" if latency else "THROUGHPUT"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantError(f"OpenVINO cannot load the model: {first}",
                             hint="check the model with onnx.checker; or evaluate with --runtime emulate") from None
        self.output_names = [output.get_any_name() for output in self.compiled.outputs]
        self._request = self.compiled.create_infer_request()
        self.mode = "openvino"

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        try:
            results = self._request.infer({name: np.ascontiguousarray(v) for name, v in feeds.items()})
        except Exception as exc:
            shapes = ", ".join(f"{k}{list(v.shape)} {v.dtype}" for k, v in feeds.items())
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantError(f"OpenVINO failed on a batch ({shapes}): {first}",
                             hint="check that the data matches the model's inputs (shape, dtype)") from None
        by_name = {port.get_any_name(): np.array(value) for port, value in results.items()}
        return [by_name[name] for name in (outputs or self.output_names)]

    def integer_kernel_note(self) -> str:
        """Layer precisions OpenVINO chose (from its runtime graph)."""
        counts: dict[str, int] = {}
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            if kind in ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution"):
                key = f"{kind} {precision}"
                counts[key] = counts.get(key, 0) + 1
        return f"OpenVINO's runtime graph: {dict(sorted(counts.items())) or 'no weighted layers'}"
