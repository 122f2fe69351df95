"""A streaming histogram of |x| on a dyadic grid: exact, mergeable, independent of batch size and order.

The histogram covers ``[0, 2**exponent)`` with a fixed number of bins (a power of two), so every bin
width is a power of two. ``exponent`` is the smallest integer with ``absmax < 2**exponent``. When a
batch exceeds the current range, the range doubles (as often as needed) and neighbouring bins merge in
pairs; because ``floor(v / 2w) == floor(floor(v / w) / 2)``, the bin of every value is the same as if
the final range had been known from the start. The counts, and so every amax computed from them, are
therefore bit-identical whatever the batch size and the order of the data.

Memory is ``bins`` int64 counts per tensor, never proportional to the number of samples.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quant.core.errors import NonFiniteError, QuantError

DEFAULT_BINS = 4096
"""Bins on the dyadic grid. Data fills at least half of the grid, so 4096 gives >= 2048 bins over
[0, absmax], TensorRT's entropy calibrator's resolution."""

_CHUNK = 1 << 20  # values per chunk, bounds the temporaries of one update

try:  # optional C accelerator (built by `pip install`; identical counts, about 5x faster)
    from quant.core import _histc
except ImportError:  # pragma: no cover - no compiler at install time
    _histc = None


@dataclass
class Histogram:
    """Counts of |x| in ``bins`` equal bins over ``[0, 2**exponent)``.

    Attributes:
        counts: int64 array of shape [bins].
        exponent: the range is ``2**exponent``; None while only zeros (or nothing) were seen.
        count: number of values seen.
        absmax: max |x| seen (exact, as float64 of the input dtype's value).
        min, max: the smallest and largest raw value seen (for asymmetric ranges).
    """

    bins: int = DEFAULT_BINS
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]
    exponent: int | None = None
    count: int = 0
    absmax: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")

    def __post_init__(self) -> None:
        if self.bins < 2 or self.bins & (self.bins - 1):
            raise QuantError(f"histogram bins must be a power of two >= 2, got {self.bins}",
                             hint="use e.g. --bins 4096")
        if self.counts is None:
            self.counts = np.zeros(self.bins, dtype=np.int64)
        else:
            self.counts = np.ascontiguousarray(self.counts, dtype=np.int64)
            if self.counts.shape != (self.bins,):
                raise ValueError(f"counts has shape {self.counts.shape}, expected ({self.bins},)")

    # ------------------------------------------------------------------ geometry
    @property
    def _log2_bins(self) -> int:
        return self.bins.bit_length() - 1

    @property
    def width(self) -> float:
        """Bin width (a power of two); 0.0 when no nonzero value was seen."""
        if self.exponent is None:
            return 0.0
        return float(np.ldexp(1.0, self.exponent - self._log2_bins))

    @property
    def edges(self) -> np.ndarray:
        """Bin edges, float64 array of shape [bins + 1]."""
        return np.arange(self.bins + 1, dtype=np.float64) * self.width

    # ------------------------------------------------------------------ streaming
    def update(self, values: np.ndarray, name: str = "tensor") -> "Histogram":
        """Add a batch of values (any shape, float dtype). Raises NonFiniteError on NaN/Inf."""
        x = np.asarray(values)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        elif x.dtype.itemsize < 4:
            x = x.astype(np.float32)
        x = x.reshape(-1)
        if x.size == 0:
            return self
        low, high = float(x.min()), float(x.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            bad = "NaN" if np.isnan(low) or np.isnan(high) else "Inf"
            raise NonFiniteError(f"{name} contains {bad} values; calibration needs finite activations",
                                 hint="check the input data and its preprocessing for NaN/Inf")
        absmax = max(-low, high)
        if absmax > 0.0:
            exponent = int(np.frexp(absmax)[1])  # absmax < 2**exponent
            if self.exponent is None:
                self.exponent = exponent
            elif exponent > self.exponent:
                self._grow_to(exponent)
            shift = self._log2_bins - self.exponent
            factor = x.dtype.type(np.ldexp(1.0, shift)) if abs(shift) < 120 else None  # representable in float32
            if _histc is not None and factor is not None and x.dtype == np.float32:
                _histc.accumulate(np.ascontiguousarray(x), float(factor), self.counts)
            else:
                self._accumulate_numpy(x, factor, shift)
        else:
            self.counts[0] += x.size
        self.count += int(x.size)
        self.absmax = max(self.absmax, absmax)
        self.min = min(self.min, low)
        self.max = max(self.max, high)
        return self

    def _accumulate_numpy(self, x: np.ndarray, factor, shift: int) -> None:
        """The reference path (and the one without the C accelerator): counts of floor(|x| * 2**shift)."""
        buffer = np.empty(min(x.size, _CHUNK), dtype=x.dtype)
        for start in range(0, x.size, _CHUNK):
            chunk = buffer[: min(_CHUNK, x.size - start)]
            np.abs(x[start:start + _CHUNK], out=chunk)
            if factor is not None:
                chunk *= factor  # exact: scaling by a power of two (|x| < 2**exponent, so no overflow)
            else:
                np.ldexp(chunk, shift, out=chunk)
            self.counts += np.bincount(chunk.astype(np.intp), minlength=self.bins)

    def _grow_to(self, exponent: int) -> None:
        assert self.exponent is not None and exponent >= self.exponent
        steps = exponent - self.exponent
        self.counts = _coarsen(self.counts, steps)
        self.exponent = exponent

    def merge(self, other: "Histogram") -> "Histogram":
        """The histogram of both data sets; equals the histogram of the concatenated data."""
        if other.bins != self.bins:
            raise ValueError(f"cannot merge histograms of {self.bins} and {other.bins} bins")
        exps = [e for e in (self.exponent, other.exponent) if e is not None]
        exponent = max(exps) if exps else None
        counts = np.zeros(self.bins, dtype=np.int64)
        for hist in (self, other):
            steps = 0 if hist.exponent is None or exponent is None else exponent - hist.exponent
            counts += _coarsen(hist.counts, steps)
        return Histogram(bins=self.bins, counts=counts, exponent=exponent, count=self.count + other.count,
                         absmax=max(self.absmax, other.absmax), min=min(self.min, other.min),
                         max=max(self.max, other.max))

    def copy(self) -> "Histogram":
        return Histogram(bins=self.bins, counts=self.counts.copy(), exponent=self.exponent, count=self.count,
                         absmax=self.absmax, min=self.min, max=self.max)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.bins == other.bins and self.exponent == other.exponent and self.count == other.count
                and self.absmax == other.absmax and self.min == other.min and self.max == other.max
                and bool(np.array_equal(self.counts, other.counts)))

    # ------------------------------------------------------------------ serialization
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "counts": self.counts,
            "meta": np.array([self.bins, -10**6 if self.exponent is None else self.exponent, self.count],
                             dtype=np.int64),
            "stats": np.array([self.absmax, self.min, self.max], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Histogram":
        bins, exponent, count = (int(v) for v in arrays["meta"])
        absmax, low, high = (float(v) for v in arrays["stats"])
        return cls(bins=bins, counts=np.array(arrays["counts"], dtype=np.int64),
                   exponent=None if exponent == -10**6 else exponent, count=count,
                   absmax=absmax, min=low, max=high)


def _coarsen(counts: np.ndarray, steps: int) -> np.ndarray:
    """Merge bins in groups of 2**steps, keeping the number of bins (the range grows by 2**steps)."""
    bins = counts.size
    if steps == 0:
        return counts.copy()
    out = np.zeros(bins, dtype=np.int64)
    if steps >= bins.bit_length() - 1:
        out[0] = counts.sum()
        return out
    factor = 1 << steps
    out[: bins // factor] = counts.reshape(bins // factor, factor).sum(axis=1)
    return out


def save_histograms(path, histograms: dict[str, Histogram]) -> None:
    """Write histograms to an .npz file (tensor names kept in order, arrays indexed)."""
    arrays: dict[str, np.ndarray] = {"names": np.array(list(histograms), dtype=np.str_)}
    for index, hist in enumerate(histograms.values()):
        for key, value in hist.to_arrays().items():
            arrays[f"{index}.{key}"] = value
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_histograms(path, names=None, bins: int | None = None) -> dict[str, Histogram]:
    """Read histograms written by :func:`save_histograms`, validated before anything large is allocated.

    ``names``: only these tensors (each must be there); ``bins``: the bin count quant.json records.
    A damaged or forged file is a QuantError naming the tensor and the problem (see histogram_file).
    """
    from quant.core.histogram_file import read_histograms

    return read_histograms(path, names=names, bins=bins)
