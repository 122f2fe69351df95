"""Shared pieces every stage may import: errors, the streaming histogram, lazy imports, ONNX helpers."""
from quant.core.errors import NonFiniteError, NotCalibratedError, QuantError
from quant.core.histogram import DEFAULT_BINS, Histogram

__all__ = ["DEFAULT_BINS", "Histogram", "NonFiniteError", "NotCalibratedError", "QuantError"]
