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
"Tie" is decided with the rounding error in mind: the closed form below subtracts sums of size
T log T to get divergences near 0, so two candidates whose exact divergence is equal (on discrete data,
e.g. 17 pixel levels k/16, both the full range and the first candidate have KL exactly 0) come out
differing by ~1e-16 in either direction, and a plain argmin picks whichever roundoff favours (amax 0.063
instead of 1.0, depending on the sample count). ``kl_divergences_with_bound`` also returns a bound on
each value's rounding error (the counts are integers, so their cumulative sums are exact; only the
logarithms and the final sums round), and a candidate counts as a minimizer when its divergence minus its
bound is at most the least divergence plus that one's bound; the largest such candidate wins. This is
TensorRT's rule (pytorch-quantization's ``last_argmin``) computed robustly, not a different method.
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
    return kl_divergences_with_bound(counts, candidates, levels)[0]


def kl_divergences_with_bound(counts: np.ndarray, candidates: np.ndarray,
                              levels: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """KL(P || Q) per candidate and a bound on the rounding error of each value (both float64 [m]).

    The bound is first order: (number of rounded terms) * eps * (sum of the magnitudes of the terms), for
    the divergence written as (sum P log P - sum P log Q) / T - log T + log C. With integer counts
    (totals below 2**53) every cumulative count is exact, so only these sums round.
    """
    bins = counts.astype(np.float64)
    total = bins.sum()
    zero = np.zeros(1)
    cum = np.concatenate([zero, np.cumsum(bins)])
    cum_nonzero = np.concatenate([zero, np.cumsum(bins > 0)])
    cum_xlogx = np.concatenate([zero, np.cumsum(_xlogx(bins))])
    cum_abs_xlogx = np.concatenate([zero, np.cumsum(np.abs(_xlogx(bins)))])

    i = candidates.astype(np.int64)[:, None]
    groups = np.arange(levels + 1, dtype=np.int64)[None, :]
    starts = (groups * i + levels - 1) // levels  # ceil(g * i / levels): first bin of each group
    group_sum = cum[starts[:, 1:]] - cum[starts[:, :-1]]
    group_nonzero = cum_nonzero[starts[:, 1:]] - cum_nonzero[starts[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.where(group_nonzero > 0, np.log(group_sum / np.maximum(group_nonzero, 1)), 0.0)
    p_log_q_terms = np.where(group_sum > 0, group_sum * log_q, 0.0)
    p_log_q = p_log_q_terms.sum(axis=1)
    p_abs_log_q = np.abs(p_log_q_terms).sum(axis=1)

    i = candidates.astype(np.int64)
    last = bins[i - 1]
    outliers = total - cum[i]
    # P's last bin also holds the outliers, which Q (built from the unfolded bins) spreads as its group's mean.
    folded = np.where(last > 0, outliers * log_q[:, -1], 0.0)
    p_log_q = p_log_q + folded
    p_abs_log_q = p_abs_log_q + np.abs(folded)
    p_log_p = cum_xlogx[i] - _xlogx(last) + _xlogx(last + outliers)
    q_total = cum[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        divergence = (p_log_p - p_log_q) / total - np.log(total) + np.log(q_total)
        magnitude = (cum_abs_xlogx[i] + _xlogx(last + outliers) + np.abs(_xlogx(last))
                     + p_abs_log_q) / total + abs(np.log(total)) + np.abs(np.log(q_total))
    terms = i + levels + 8  # cumulative sum up to i, the sum over the groups, the few final operations
    bound = terms * np.finfo(np.float64).eps * magnitude
    missing = ((last == 0) & (outliers > 0)) | (q_total <= 0)
    return np.where(missing, np.inf, divergence), np.where(missing, 0.0, bound)


def robust_last_argmin(values: np.ndarray, bound: np.ndarray) -> int:
    """Index of the largest candidate that may be a minimizer of the exact values.

    Candidate k may be one when ``values[k] - bound[k] <= min(values + bound)``; infinite values never are
    (unless all are, then the last index). Deterministic for given inputs.
    """
    finite = np.isfinite(values)
    if not finite.any():
        return values.size - 1
    ceiling = np.min(np.where(finite, values + bound, np.inf))
    eligible = finite & (values - bound <= ceiling)
    return int(np.flatnonzero(eligible)[-1])


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
        divergence, bound = kl_divergences_with_bound(counts, candidates, self.levels)
        best = robust_last_argmin(divergence, bound)  # ties (up to rounding) go to the larger threshold
        return float(candidates[best]) * histogram.width
