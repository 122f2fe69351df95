"""How much a threshold clips, estimated from the |x| histogram, and which method would clip less.

A threshold amax clips every |x| > amax to amax. From the histogram (values taken as uniform inside each
bin, the last bin ending at max|x|) this estimates:

* ``values_share``: the share of the values above amax;
* ``energy_share``: the clipping error's share of the tensor's energy, sum (|x| - amax)^2 / sum x^2 over
  the values above amax: the error that clipping alone adds, relative to the signal, measured at the
  tensor itself (the input of the layer that consumes it), not at that layer's output.

A threshold clips *hard* when either share exceeds its limit (``HARD_VALUES_SHARE``,
``HARD_ENERGY_SHARE``: 1% of the values, or clipping alone capping the tensor's SQNR below 20 dB).
Entropy's KL search can pick such thresholds (on discrete inputs, on GELU outputs, on attention
probabilities); ``quant calibrate`` then names the tensor and a method that stays within both limits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.core.histogram import Histogram

HARD_VALUES_SHARE = 0.01
"""More than 1% of a tensor's values above amax is hard clipping."""
HARD_ENERGY_SHARE = 0.01
"""A clipping error above 1% of the tensor's energy (clipping alone: SQNR < 20 dB) is hard clipping."""
ALTERNATIVES = ("mse", "percentile", "minmax")
"""Methods named instead of a hard-clipping one, in order of preference (minmax never clips)."""


@dataclass(frozen=True)
class Clipping:
    amax: float
    values_share: float
    energy_share: float

    @property
    def hard(self) -> bool:
        return self.values_share > HARD_VALUES_SHARE or self.energy_share > HARD_ENERGY_SHARE

    def to_json(self) -> dict:
        return {"amax": float(np.float32(self.amax)), "values_share": self.values_share,
                "energy_share": self.energy_share, "hard": self.hard}


def clipping(histogram: Histogram, amax: float) -> Clipping:
    """The share of values and of energy that ``amax`` clips (0 for an all-zero tensor)."""
    if histogram.exponent is None or histogram.count == 0 or amax >= histogram.absmax:
        return Clipping(float(amax), 0.0, 0.0)
    counts = histogram.counts.astype(np.float64)
    edges = np.minimum(histogram.edges, histogram.absmax)  # the last occupied bin ends at max|x|
    low, high = edges[:-1], edges[1:]
    width = high - low
    total = counts.sum()
    energy = float(np.sum(counts * (low * low + low * high + high * high) / 3.0))
    above = high > amax
    lo, hi, n, w = np.maximum(low[above], amax), high[above], counts[above], width[above]
    safe = np.where(w > 0, w, 1.0)
    fraction = np.where(w > 0, (hi - lo) / safe, 1.0)  # a zero-width bin at max|x| is wholly above amax
    clipped_values = float(np.sum(n * fraction))
    clipped_energy = float(np.sum(np.where(w > 0, n * ((hi - amax) ** 3 - (lo - amax) ** 3) / (3.0 * safe),
                                           n * (hi - amax) ** 2)))
    return Clipping(float(amax), clipped_values / total, clipped_energy / energy if energy > 0 else 0.0)


def gentler_method(histogram: Histogram, amax_of) -> tuple[str, Clipping]:
    """The first of ``ALTERNATIVES`` whose threshold does not clip hard; ``amax_of(method) -> amax``."""
    for method in ALTERNATIVES:
        stats = clipping(histogram, amax_of(method))
        if not stats.hard:
            return method, stats
    return "minmax", clipping(histogram, histogram.absmax)  # pragma: no cover - minmax clips nothing
