"""TensorRT's legacy calibration cache: ``TRT-<version>-<Algorithm>`` then ``name: <hex>`` lines.

Each value is the big-endian IEEE float32 bit pattern of the scale, scale = amax / 127.

The format has no quoting: readers (TensorRT, ONNX Runtime's TensorRT provider) read a line up to '\n'
and take the name before the ':' and the hex after it. TensorRT itself writes names that hold ':' as
they are (``onnx::Conv_1: 3c010a14``, ``input:0: ...`` from tf2onnx), so a name may hold ':' and the
value is what follows the last one. A name that holds a line break or another control character cannot
be written without forging lines, and no reader knows an escape for it: such a name is refused. Every
scale written is finite, positive and a normal float32 (see ``scale_from_amax``), and ``read_cache``
gives back exactly the table written.
"""
from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np

from quant.core.errors import QuantError
from quant.core.text import is_unsafe_char, printable
from quant.qdq.insert import SMALLEST_SCALE, scale_from_amax

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
    if not _HEX.fullmatch(text):
        raise ValueError(f"{text!r} is not 8 hex digits")
    return struct.unpack(">f", bytes.fromhex(text))[0]


_HEX = re.compile(r"[0-9a-fA-F]{8}")


def cache_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a line of a calibration cache, or None when it can."""
    if not name:
        return "is empty"
    for char in name:
        if is_unsafe_char(char):
            return f"holds the character {ascii(char)}"
    return None


def check_cache_names(names) -> None:
    """QuantError naming the first tensor whose name the calibration cache cannot hold."""
    for name in names:
        problem = cache_name_problem(name)
        if problem:
            raise QuantError(f"tensor name {_show(name)} {problem}: TensorRT's calibration cache has one "
                             "'name: scale' line per tensor and no way to write it",
                             hint="rename the tensor in the ONNX model: the cache has no escape for it "
                                  "(--target ort-cpu writes no cache)")


def _scale_problem(scale: float) -> str | None:
    if not math.isfinite(scale) or scale <= 0:
        return f"scale {scale!r} is not finite and positive"
    if scale < SMALLEST_SCALE:
        return f"scale {scale!r} is denormal (below 2**-126)"
    return None


def format_cache(amax: dict[str, float], method: str, trt_version: str = DEFAULT_TRT_VERSION) -> str:
    """The cache text (write it as UTF-8). A name the format cannot hold is a QuantError, never a forged line."""
    header = f"TRT-{trt_version_number(trt_version)}-{ALGORITHMS.get(method, DEFAULT_ALGORITHM)}"
    check_cache_names(amax)
    lines = [header]
    for name, value in amax.items():
        scale = scale_from_amax(value)
        problem = _scale_problem(float(scale))
        if problem:  # pragma: no cover - scale_from_amax gives finite, positive, normal scales
            raise QuantError(f"tensor {_show(name)}: {problem}")
        lines.append(f"{name}: {encode_scale(scale)}")
    return "\n".join(lines) + "\n"


def _show(text: str, limit: int = 80) -> str:
    """A quoted, one-line, bounded rendering of untrusted text for an error message."""
    return f"'{printable(text, limit)}'"


def read_cache(path: str | Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}); a malformed line is a QuantError naming the line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise QuantError(f"cannot read calibration cache '{path}': {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise QuantError(f"'{path}' line {line} is not UTF-8 text: TensorRT's calibration cache holds UTF-8 names",
                         hint="write the cache with 'quant calibrate'") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]  # tolerate CRLF
    if not lines or not re.fullmatch(r"TRT-[0-9]+-[A-Za-z0-9]+", lines[0]):
        raise QuantError(f"'{path}' is not a TensorRT calibration cache: the first line must read TRT-<version>-<Algorithm>")
    hint = "each line must read '<tensor name>: <8 hex digits>'"
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")
        value = value.strip(" ")
        if not sep or not name or len(value) != 8:
            raise QuantError(f"'{path}' line {number} is malformed: {_show(line)}", hint=hint)
        problem = cache_name_problem(name)
        if problem:
            raise QuantError(f"'{path}' line {number}: the tensor name {problem}: {_show(line)}", hint=hint)
        if name in scales:
            raise QuantError(f"'{path}' line {number}: tensor {_show(name)} appears twice", hint="keep one line per tensor")
        try:
            scale = decode_scale(value)
        except ValueError:
            raise QuantError(f"'{path}' line {number} has a bad hex value: {_show(line)}", hint=hint) from None
        problem = _scale_problem(scale)
        if problem:
            raise QuantError(f"'{path}' line {number}: tensor {_show(name)} has {problem}; TensorRT needs a finite "
                             "positive normal scale", hint="calibrate again with 'quant calibrate'")
        scales[name] = scale
    return lines[0], scales
