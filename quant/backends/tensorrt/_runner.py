"""Run a TensorRT engine (TensorRT >= 10 tensor API) with CUDA buffers from PyTorch.

Imports tensorrt and torch at module level: load only where both (with CUDA) are installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorrt as trt
import torch

from quant.core.errors import QuantError

_DTYPES = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
           trt.bool: torch.bool}
if hasattr(trt, "int64"):
    _DTYPES[trt.int64] = torch.int64


class TensorRTRunner:
    """Same interface as OrtRunner: ``output_names`` and ``run(feeds, outputs=None) -> [np.ndarray]``."""

    mode = "tensorrt"

    def __init__(self, engine_path: str | Path) -> None:
        if not torch.cuda.is_available():
            raise QuantError("running a TensorRT engine needs a CUDA GPU, and PyTorch sees none",
                             hint="run quant eval --runtime tensorrt on the GPU machine the engine was built for")
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise QuantError(f"TensorRT cannot load the engine '{engine_path}'",
                             hint="build it with the TensorRT version and GPU that run it (quant build)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        stream = torch.cuda.current_stream()
        keep = []
        for name in self.input_names:
            tensor = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            tensor = torch.empty(shape, dtype=_DTYPES[self.engine.get_tensor_dtype(name)], device="cuda")
            results[name] = tensor
            self.context.set_tensor_address(name, tensor.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise QuantError("TensorRT failed to run a batch", hint="check the input shapes against the engine's profile")
        stream.synchronize()
        return [results[name].float().cpu().numpy() for name in (outputs or self.output_names)]
