"""Every model output quant compares must carry the batch on its first axis."""
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
