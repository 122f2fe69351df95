"""TensorRT's entropy (KL-divergence) calibration, as pytorch-quantization and Model Optimizer implement it.

For every candidate threshold i (in bins, from ``start_bin`` to the last nonzero bin):

* P is the histogram's first i bins, with all counts beyond i folded into bin i-1;
* Q quantizes the first i bins (without the folded outliers) into ``levels`` groups whose edges are
  ``linspace(0, i, levels + 1)``; each group's total is spread evenly over its nonzero bins and empty
  bins stay empty;
* the divergence is KL(P || Q) of the normalized distributions.

A threshold whose bin i-1 is empty while values lie beyond it has infinite divergence (P has mass
where Q has none), so an isolated outlier far from the rest keeps the full range, exactly as in
TensorRT's algorithm; use ``percentile`` or ``mse`` for such tensors.

TensorRT's histogram spans [0, max|x|] in 2048 bins, so its first candidate (bin 128) sits at max|x| / 16.
Our dyadic grid is finer (max|x| covers 2048 to 4096 bins), so with ``reference_bins=2048`` the first
candidate is scaled to the same max|x| * 128 / 2048; ``reference_bins=None`` starts at bin ``start_bin``.

The threshold is the edge of the candidate with the least divergence, ties going to the larger one.
As in pytorch-quantization, the count of bin 0 is replaced by that of bin 1 (the spike of exact zeros
after a ReLU would otherwise dominate), but on a copy: the stored histogram is never written.

Instead of building P and Q for every candidate (O(bins^2)), the divergence is computed in closed form
from cumulative sums, O(levels) per candidate:
KL = (sum P log P - sum P log Q) / T - log T + log C, with T = sum P and C = sum Q.
"""
from __future__ import annotations

import numpy as np

from quant.calibrators.base import Calibrator, first_candidate, nonzero_extent, register
from quant.core.errors import QuantError
from quant.core.histogram import Histogram


def _xlogx(values: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.float64)
    positive = values > 0
    out[positive] = values[positive] * np.log(values[positive])
    return out


def kl_divergences(counts: np.ndarray, candidates: np.ndarray, levels: int = 128) -> np.ndarray:
    """KL(P || Q) for each candidate number of bins (float64 array, inf where Q misses mass of P)."""
    bins = counts.astype(np.float64)
    total = bins.sum()
    zero = np.zeros(1)
    cum = np.concatenate([zero, np.cumsum(bins)])
    cum_nonzero = np.concatenate([zero, np.cumsum(bins > 0)])
    cum_xlogx = np.concatenate([zero, np.cumsum(_xlogx(bins))])

    i = candidates.astype(np.int64)[:, None]
    groups = np.arange(levels + 1, dtype=np.int64)[None, :]
    starts = (groups * i + levels - 1) // levels  # ceil(g * i / levels): first bin of each group
    group_sum = cum[starts[:, 1:]] - cum[starts[:, :-1]]
    group_nonzero = cum_nonzero[starts[:, 1:]] - cum_nonzero[starts[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.where(group_nonzero > 0, np.log(group_sum / np.maximum(group_nonzero, 1)), 0.0)
    p_log_q = np.where(group_sum > 0, group_sum * log_q, 0.0).sum(axis=1)

    i = candidates.astype(np.int64)
    last = bins[i - 1]
    outliers = total - cum[i]
    # P's last bin also holds the outliers, which Q (built from the unfolded bins) spreads as its group's mean.
    p_log_q = p_log_q + np.where(last > 0, outliers * log_q[:, -1], 0.0)
    p_log_p = cum_xlogx[i] - _xlogx(last) + _xlogx(last + outliers)
    q_total = cum[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        divergence = (p_log_p - p_log_q) / total - np.log(total) + np.log(q_total)
    missing = ((last == 0) & (outliers > 0)) | (q_total <= 0)
    return np.where(missing, np.inf, divergence)


@register
class Entropy(Calibrator):
    """amax minimizing KL(P || Q) between the |x| histogram and its INT8-quantized version."""

    name = "entropy"

    def __init__(self, start_bin: int = 128, levels: int = 128, suppress_zero_bin: bool = True,
                 reference_bins: int | None = 2048) -> None:
        if start_bin < 1 or levels < 2:
            raise QuantError(f"entropy needs start_bin >= 1 and levels >= 2, got {start_bin}, {levels}")
        if reference_bins is not None and reference_bins < 1:
            raise QuantError(f"entropy needs reference_bins >= 1 or None, got {reference_bins}")
        self.start_bin = int(start_bin)
        self.levels = int(levels)
        self.suppress_zero_bin = bool(suppress_zero_bin)
        self.reference_bins = reference_bins

    def get_params(self) -> dict:
        return {"start_bin": self.start_bin, "levels": self.levels, "suppress_zero_bin": self.suppress_zero_bin,
                "reference_bins": self.reference_bins}

    def _compute(self, histogram: Histogram) -> float:
        extent = nonzero_extent(histogram)
        counts = histogram.counts[:extent].astype(np.float64)  # a copy: the histogram is never written
        if self.suppress_zero_bin and counts.size > 1:
            counts[0] = counts[1]
        if counts.sum() <= 0:
            return histogram.absmax
        first = min(first_candidate(histogram, self.start_bin, self.reference_bins), extent)
        candidates = np.arange(first, extent + 1)
        divergence = kl_divergences(counts, candidates, self.levels)
        best = candidates.size - 1 - int(np.argmin(divergence[::-1]))  # ties go to the larger threshold
        return float(candidates[best]) * histogram.width
