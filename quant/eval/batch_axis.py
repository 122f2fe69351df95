"""Every model output quant compares must carry the batch on its first axis, and INT8's the shape of FP32's."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from quant.core.errors import QuantError


def check_batch_axis(names: Sequence[str], outputs: Sequence, batch: int) -> None:
    """Refuse an output whose first axis is not the batch of ``batch`` samples.

    Metrics, per-sample errors and labels pair row i of every output with sample i. An output shaped
    [10, N] (the batch last), a scalar or a fixed-size side output would be scored as 10 "samples" or
    broadcast against the labels: wrong numbers, or a crash deep inside a metric.
    """
    for name, value in zip(names, outputs):
        shape = list(np.shape(value))
        if not shape or shape[0] != batch:
            raise QuantError(f"model output '{name}' has shape {shape} for a batch of {batch} samples: its first axis "
                             "is not the batch, so its rows cannot be paired with the samples",
                             hint="export the model with the batch as the first axis of every output")


def check_declared_batch_axis(model) -> None:
    """Refuse an output that the ONNX model declares with the inputs' batch axis elsewhere than first.

    ``logits [10, N]`` (a transpose) passes :func:`check_batch_axis` whenever a batch holds 10 samples (every
    batch of ``--batch-size 10``): its 10 rows of classes would be scored as 10 samples.
    """
    initializers = {i.name for i in model.graph.initializer}
    batch = {i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input
             if i.name not in initializers and i.type.HasField("tensor_type") and i.type.tensor_type.shape.dim
             and i.type.tensor_type.shape.dim[0].dim_param}
    for output in model.graph.output:
        dims = list(output.type.tensor_type.shape.dim) if output.type.HasField("tensor_type") else []
        axes = [a for a, d in enumerate(dims) if a and d.dim_param and d.dim_param in batch]
        if dims and dims[0].dim_param not in batch and axes:
            shape = "[" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + "]"
            raise QuantError(f"model output '{output.name}' is declared {shape}: the batch axis "
                             f"'{dims[axes[0]].dim_param}' of the inputs is its axis {axes[0]}, not the first, so its "
                             "rows cannot be paired with the samples",
                             hint="export the model with the batch as the first axis of every output")


def check_same_shape(name: str, reference, candidate) -> None:
    """Refuse comparing an INT8 output whose shape differs from FP32's on the same batch.

    A value-dependent shape (TopK with a computed k, NonZero, NMS: the number of detections) broadcast one
    against the other gave a cosine of 1.0691 and a made-up SQNR, or a traceback in eval.
    """
    ref, cand = np.shape(reference), np.shape(candidate)
    if ref != cand:
        raise QuantError(f"output '{name}': the INT8 model gives shape {list(cand)} where FP32 gives {list(ref)} for the "
                         "same batch, so the two cannot be compared value by value (a number of detections that "
                         "depends on the values?)",
                         hint="score the model with --eval-fn: your function runs it and can match detections")
