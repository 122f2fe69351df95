"""Calibrator contract and registry: an estimator that maps a Histogram of |x| to an amax."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from quant.core.errors import NotCalibratedError, QuantError
from quant.core.histogram import Histogram

_REGISTRY: dict[str, type["Calibrator"]] = {}


class Calibrator:
    """Base class. Parameters are set in ``__init__``; ``fit(histogram)`` sets ``amax_`` and returns self.

    Calibrators are pure: they never write into the histogram they are given, print, or plot.
    """

    name: ClassVar[str] = ""

    def fit(self, histogram: Histogram) -> "Calibrator":
        if histogram.exponent is None:  # nothing but zeros (or nothing at all) was seen
            self._amax = 0.0
        else:
            self._amax = float(min(self._compute(histogram), histogram.absmax))
        return self

    def _compute(self, histogram: Histogram) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def amax_(self) -> float:
        """The calibrated threshold: values are clipped to [-amax_, amax_]."""
        try:
            return self._amax
        except AttributeError:
            raise NotCalibratedError(f"{type(self).__name__} is not calibrated yet",
                                     hint="call fit(histogram) first") from None

    def get_params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def register(cls: type[Calibrator]) -> type[Calibrator]:
    """Class decorator: make a calibrator available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **params) -> Calibrator:
    """A new calibrator by name, e.g. ``get("percentile", percentile=99.9)``; ``kl`` and ``max`` are entropy and
    minmax, as for ``quant.calibrate(methods=...)`` and ``--method``."""
    from quant.core.config import METHOD_ALIASES

    try:
        cls = _REGISTRY[METHOD_ALIASES.get(name, name)]
    except (KeyError, TypeError):
        aliases = ", ".join(f"{a} = {m}" for a, m in METHOD_ALIASES.items())
        raise QuantError(f"unknown calibration method {name!r}",
                         hint=f"choose from: {', '.join(available())} (aliases: {aliases})") from None
    return cls(**params)


def nonzero_extent(histogram: Histogram) -> int:
    """Number of bins up to and including the last nonzero one."""
    nonzero = np.flatnonzero(histogram.counts)
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def first_candidate(histogram: Histogram, start_bin: int, reference_bins: int | None) -> int:
    """The first candidate bin: ``start_bin``, or (with ``reference_bins``) the bin at the same fraction of
    max|x| as bin ``start_bin`` of a ``reference_bins``-bin histogram spanning [0, max|x|] (TensorRT's)."""
    if reference_bins is None:
        return max(1, start_bin)
    return max(1, int(np.ceil(start_bin * histogram.absmax / histogram.width / reference_bins)))
