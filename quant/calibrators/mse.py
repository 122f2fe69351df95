"""The threshold minimizing the expected squared INT8 quantization error over the |x| histogram.

Values are taken as uniformly distributed inside each bin, and the squared error of symmetric INT8
quantization with scale s = t / 127 is integrated exactly over each bin: a sawtooth of period s below
the threshold t (rounding), and (x - t)^2 above it (clipping). Candidates are the bin edges from
``start_bin`` (scaled like entropy's, see there) to the last nonzero bin; ties go to the larger threshold.

With u = x / s and r = u - round(u), the rounding error integrates to
s^2 x / 12 + s^3 phi(x / s), phi(u) = r^3 / 3 - r / 12 (periodic); the clipping error of the bins
above t comes from suffix sums of the bins' first and second moments.
"""
from __future__ import annotations

import numpy as np

from quant.calibrators.base import Calibrator, first_candidate, nonzero_extent, register
from quant.core.errors import QuantError
from quant.core.histogram import Histogram

_CANDIDATES_PER_STEP = 64


def _phi(u: np.ndarray) -> np.ndarray:
    r = u - np.floor(u + 0.5)
    return r * (r * r / 3.0 - 1.0 / 12.0)


def expected_squared_error(counts: np.ndarray, edges: np.ndarray, candidates: np.ndarray,
                           levels: int = 127) -> np.ndarray:
    """Mean squared quantization error for thresholds ``edges[candidates]`` (float64 [m]).

    ``counts`` [n] sit in bins of equal width between ``edges`` [n + 1]; every candidate is >= 1.
    """
    counts = counts.astype(np.float64)
    total = counts.sum()
    low, high = edges[:-1], edges[1:]
    width = float(high[0] - low[0])
    zero = np.zeros(1)

    def suffix(values: np.ndarray) -> np.ndarray:
        return np.concatenate([np.cumsum(values[::-1])[::-1], zero])

    above_count = suffix(counts)
    above_m1 = suffix(counts * (low + high) / 2.0)
    above_m2 = suffix(counts * (low * low + low * high + high * high) / 3.0)
    below_count = np.concatenate([zero, np.cumsum(counts)])

    out = np.empty(candidates.size, dtype=np.float64)
    for start in range(0, candidates.size, _CANDIDATES_PER_STEP):
        chunk = candidates[start:start + _CANDIDATES_PER_STEP]
        t = edges[chunk]
        scale = t / levels
        clipping = above_m2[chunk] - 2.0 * t * above_m1[chunk] + t * t * above_count[chunk]
        top = int(chunk.max())
        phi = _phi(edges[None, : top + 1] / scale[:, None])
        steps = (phi[:, 1:] - phi[:, :-1]) * counts[None, :top]
        steps[np.arange(top)[None, :] >= chunk[:, None]] = 0.0
        rounding = scale ** 2 / 12.0 * below_count[chunk] + scale ** 3 / width * steps.sum(axis=1)
        out[start:start + chunk.size] = (rounding + clipping) / total
    return out


@register
class MSE(Calibrator):
    """amax minimizing the expected squared quantization error."""

    name = "mse"

    def __init__(self, start_bin: int = 128, reference_bins: int | None = 2048) -> None:
        if start_bin < 1:
            raise QuantError(f"mse needs start_bin >= 1, got {start_bin}")
        self.start_bin = int(start_bin)
        self.reference_bins = reference_bins

    def get_params(self) -> dict:
        return {"start_bin": self.start_bin, "reference_bins": self.reference_bins}

    def _compute(self, histogram: Histogram) -> float:
        extent = nonzero_extent(histogram)
        counts = histogram.counts[:extent]
        edges = histogram.edges[: extent + 1]
        candidates = np.arange(min(first_candidate(histogram, self.start_bin, self.reference_bins), extent), extent + 1)
        errors = expected_squared_error(counts, edges, candidates)
        best = candidates.size - 1 - int(np.argmin(errors[::-1]))
        return float(edges[candidates[best]])
