"""The two closed-form calibrators: max |x| and the percentile of |x|."""
from __future__ import annotations

import numpy as np

from quant.calibrators.base import Calibrator, register
from quant.core.errors import QuantError
from quant.core.histogram import Histogram


@register
class MinMax(Calibrator):
    """amax = max |x| seen (exact, not a bin edge)."""

    name = "minmax"

    def _compute(self, histogram: Histogram) -> float:
        return histogram.absmax


@register
class Percentile(Calibrator):
    """amax = the smallest bin edge at which the CDF of |x| reaches ``percentile`` percent.

    pytorch-quantization and ONNX Runtime return the left edge of the bin in which the CDF crosses;
    we return its right edge, so at most (100 - percentile)% of the values are clipped. Capped at max |x|.
    """

    name = "percentile"

    def __init__(self, percentile: float = 99.99) -> None:
        if not 0.0 < float(percentile) <= 100.0:
            raise QuantError(f"percentile must be in (0, 100], got {percentile}", hint="e.g. --percentile 99.99")
        self.percentile = float(percentile)

    def get_params(self) -> dict:
        return {"percentile": self.percentile}

    def _compute(self, histogram: Histogram) -> float:
        cumulative = np.cumsum(histogram.counts)
        # 1e-12 of slack so that e.g. 99.9% of 20000 values means 19980 despite 99.9's binary rounding
        target = self.percentile / 100.0 * float(cumulative[-1]) * (1.0 - 1e-12)
        index = int(np.searchsorted(cumulative.astype(np.float64), target, side="left"))
        return (index + 1) * histogram.width
