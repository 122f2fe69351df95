"""Calibrators: pure numpy estimators that map a Histogram of |x| to an amax.

>>> from quant.calibrators import get
>>> get("entropy").fit(histogram).amax_
"""
from quant.calibrators.base import Calibrator, available, get, register
from quant.calibrators.entropy import Entropy
from quant.calibrators.mse import MSE
from quant.calibrators.simple import MinMax, Percentile
from quant.calibrators.weights import weight_amax

__all__ = ["Calibrator", "Entropy", "MSE", "MinMax", "Percentile", "available", "get", "register", "weight_amax"]
