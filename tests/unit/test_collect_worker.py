"""The collection worker thread never outlives collect(): not after an error, not after the last batch."""
import threading
import time

import numpy as np
import pytest

from quant.collect.collector import collect
from quant.core.errors import QuantError


class SlowRunner:
    """Stands for ONNX Runtime: each run takes a while (the worker is busy when the consumer fails)."""

    def __init__(self):
        self.runs = 0

    def run(self, feeds, outputs=None):
        time.sleep(0.05)
        self.runs += 1
        return [feeds["x"] * 2.0 for _ in outputs]


def _batches(bad_batch=None, count=20):
    for b in range(count):
        x = np.full((2, 3), float(b + 1), np.float32)
        if b == bad_batch:
            x[0, 0] = np.nan
        yield [2 * b, 2 * b + 1], {"x": x}


def _workers():
    return [t for t in threading.enumerate() if t.name == "quant-collect"]


def test_worker_is_joined_when_a_batch_has_nan():
    runner = SlowRunner()
    with pytest.raises(QuantError, match="contains NaN or Inf in the batch of samples 0..1"):
        collect(runner, _batches(bad_batch=0), ["x", "y"], bins=256, progress=False)
    assert _workers() == []
    assert runner.runs <= 3  # it stopped instead of running the remaining 19 batches


def test_worker_is_joined_after_the_last_batch():
    result = collect(SlowRunner(), _batches(count=3), ["x", "y"], bins=256, progress=False)
    assert result.samples == 6 and _workers() == []
    assert result.histograms["y"].absmax == 6.0
