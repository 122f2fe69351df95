"""Calibrators that serve quant's calibration.cache to TensorRT's builder (TensorRT <= 10, implicit INT8).

Imports tensorrt at module level: load this only where TensorRT is installed. No batches are needed:
``get_batch`` returns None and TensorRT reads every range from the cache.
"""
from __future__ import annotations

from pathlib import Path

import tensorrt as trt

from quant.backends.tensorrt import _implicit_refusal, implicit_supported, parse_version
from quant.core.errors import QuantError
from quant.qdq.cache import read_cache

_VERSION = parse_version(trt.__version__) or (0, 0, 0)
if not implicit_supported(_VERSION) or not hasattr(trt, "IInt8EntropyCalibrator2"):
    raise QuantError(_implicit_refusal(_VERSION), hint="build the Q/DQ model instead: quant build DIR")


class _ServesCache:
    def _load(self, cache_path: str | Path) -> None:
        self.cache_path = Path(cache_path)
        self.header, self.scales = read_cache(self.cache_path)  # validates every line
        self._bytes = self.cache_path.read_bytes()

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names, p_str=None):
        return None  # no data: every range comes from the cache

    def read_calibration_cache(self) -> bytes:
        return self._bytes

    def write_calibration_cache(self, cache) -> None:
        pass  # the cache is ours; TensorRT must not overwrite it


class CacheCalibrator(_ServesCache, trt.IInt8EntropyCalibrator2):
    """IInt8EntropyCalibrator2 that answers with quant's calibration.cache (header ...-EntropyCalibration2)."""

    def __init__(self, cache_path: str | Path) -> None:
        trt.IInt8EntropyCalibrator2.__init__(self)
        self._load(cache_path)


class MinMaxCacheCalibrator(_ServesCache, trt.IInt8MinMaxCalibrator):
    """IInt8MinMaxCalibrator that answers with quant's calibration.cache (header ...-MinMaxCalibration)."""

    def __init__(self, cache_path: str | Path) -> None:
        trt.IInt8MinMaxCalibrator.__init__(self)
        self._load(cache_path)


def calibrator_for_cache(cache_path: str | Path):
    """The calibrator whose algorithm matches the cache header (TensorRT ignores a mismatched cache)."""
    header, _ = read_cache(cache_path)
    return MinMaxCacheCalibrator(cache_path) if header.endswith("MinMaxCalibration") else CacheCalibrator(cache_path)
