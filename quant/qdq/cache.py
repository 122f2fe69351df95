"""TensorRT's legacy calibration cache: ``TRT-<version>-<Algorithm>`` then ``name: <hex>`` lines.

Each value is the big-endian IEEE float32 bit pattern of the scale, scale = amax / 127.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from quant.core.errors import QuantError
from quant.qdq.insert import scale_from_amax

ALGORITHMS = {"minmax": "MinMaxCalibration"}
DEFAULT_ALGORITHM = "EntropyCalibration2"
DEFAULT_TRT_VERSION = "10.3.0"


def trt_version_number(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    try:
        major, minor, patch = (int(p) for p in (version.split(".") + ["0", "0"])[:3])
    except ValueError:
        raise QuantError(f"'{version}' is not a TensorRT version", hint="write it as MAJOR.MINOR.PATCH, e.g. 10.3.0") from None
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def encode_scale(scale: float) -> str:
    return struct.pack(">f", float(np.float32(scale))).hex()


def decode_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def format_cache(amax: dict[str, float], method: str, trt_version: str = DEFAULT_TRT_VERSION) -> str:
    header = f"TRT-{trt_version_number(trt_version)}-{ALGORITHMS.get(method, DEFAULT_ALGORITHM)}"
    lines = [header] + [f"{name}: {encode_scale(scale_from_amax(value))}" for name, value in amax.items()]
    return "\n".join(lines) + "\n"


def read_cache(path: str | Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}); a malformed line is a QuantError naming the line."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QuantError(f"cannot read calibration cache '{path}': {exc}") from None
    if not lines or not lines[0].startswith("TRT-"):
        raise QuantError(f"'{path}' is not a TensorRT calibration cache: the first line must read TRT-<version>-<Algorithm>")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")
        value = value.strip()
        if not sep or not name or len(value) != 8:
            raise QuantError(f"'{path}' line {number} is malformed: {line!r}",
                             hint="each line must read '<tensor name>: <8 hex digits>'")
        try:
            scales[name] = decode_scale(value)
        except ValueError:
            raise QuantError(f"'{path}' line {number} has a bad hex value: {line!r}",
                             hint="each line must read '<tensor name>: <8 hex digits>'") from None
    return lines[0], scales
