"""Per-channel weight ranges: max |w| per output channel by default, or any calibrator per channel."""
from __future__ import annotations

import numpy as np

from quant.calibrators.base import get
from quant.core.histogram import DEFAULT_BINS, Histogram


def weight_amax(weight: np.ndarray, axis: int, method: str = "minmax", bins: int = DEFAULT_BINS,
                **params) -> np.ndarray:
    """amax per channel along ``axis`` (float64 array of shape [weight.shape[axis]])."""
    moved = np.moveaxis(np.asarray(weight), axis, 0).reshape(weight.shape[axis], -1)
    if method == "minmax":
        return np.abs(moved).max(axis=1).astype(np.float64)
    amax = np.empty(moved.shape[0], dtype=np.float64)
    for channel, values in enumerate(moved):
        amax[channel] = get(method, **params).fit(Histogram(bins=bins).update(values, "weight")).amax_
    return amax
