"""What the pipeline asks of the PyTorch backend: runners, the device collection pass, the Q/DQ switch.

The pipeline imports this module only when ``device`` is not 'ort', so torch stays unimported otherwise.
"""
from __future__ import annotations

from quant.backends.torch.runner import TorchRunner, describe, parse_device

CUDA_BATCH = 64  # samples per batch on a GPU when --batch-size is not given (ranges do not depend on it)

__all__ = ["CUDA_BATCH", "TorchRunner", "collect", "describe", "emulate_runner", "fp32_runner", "parse_device",
           "qdq_switch"]


def fp32_runner(model, device: str) -> TorchRunner:
    return TorchRunner(model, device)


def emulate_runner(qdq_model, device: str) -> TorchRunner:
    """A Q/DQ ONNX model run with torch: Q/DQ computed as ONNX Runtime's emulate path does."""
    return TorchRunner(qdq_model, device)


def collect(model, device: str, batches, tensors, bins: int, total: int, progress: bool, batch_size):
    """The collection pass on ``device``; returns (CollectionResult, description of where it ran)."""
    from quant.collect.device import collect_on_device

    runner = TorchRunner(model, device)
    collected = collect_on_device(runner, batches, tensors, bins=bins, total=total, progress=progress,
                                  batch_size=batch_size, per_sample=_per_sample_on(runner, model))
    return collected, runner.description


def _per_sample_on(runner: TorchRunner, model) -> bool:
    """Whether the collection runs each sample alone: on the CPU, where torch picks its Conv/MatMul kernels by shape
    (a batch of 7 and 7 batches of 1 differ in the last bits, so ranges would depend on --batch-size), unless the
    model's batch axis is fixed above 1. On CUDA the batch runs whole, for speed (README, "GPU execution")."""
    from quant.core.onnx_model import input_specs

    fixed = any(spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 1 for spec in input_specs(model))
    return runner.device.type == "cpu" and not fixed


def qdq_switch(result, method: str, device: str):
    """``make(keep_float) -> runner`` over one converted graph (see quant.backends.torch.emulate)."""
    from quant.backends.torch.emulate import QdqSwitch

    runner = TorchRunner(result.model, device)
    runner.cache_inputs = True  # the same held-out batches are scored once per variant: keep them on the device
    switch = QdqSwitch(runner, result.plan, result.activation_amax[method],
                       result.weight_amax, result.model)
    return switch.set_float
