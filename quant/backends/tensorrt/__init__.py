"""TensorRT backend: engine builds (Python API or trtexec), the legacy cache calibrator, engine runs.

This module is pure Python and never imports tensorrt at import time. The parts that need TensorRT
(``_builder``, ``_calibrator``, ``_runner``) import it at their top and are loaded only where it is
installed. ``quant.backends.tensorrt.CacheCalibrator`` resolves lazily to the real class.
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from quant.core.errors import QuantError, refuse_repeated

INSTALL_HINT = "pip install 'quant-trt[tensorrt]'"
DEFAULT_VERSION = (10, 3, 0)  # what the printed command targets when no TensorRT is found


# ------------------------------------------------------------------ versions
def parse_version(text: str) -> tuple[int, int, int] | None:
    """'10.3.0', 'TensorRT v100300' (trtexec banner) or 'v8601' -> (major, minor, patch)."""
    dotted = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    packed = re.search(r"TensorRT v(\d{4,6})\b", text) or re.fullmatch(r"v?(\d{4,6})", text.strip())
    if packed:
        number = int(packed.group(1))
        if number >= 100000:
            return number // 10000, number // 100 % 100, number % 100
        return number // 1000, number // 100 % 10, number % 100
    if dotted:
        return int(dotted.group(1)), int(dotted.group(2)), int(dotted.group(3) or 0)
    return None


def implicit_supported(version: tuple[int, int, int]) -> bool:
    """Implicit INT8 (IInt8*Calibrator, BuilderFlag.INT8, trtexec --int8/--calib) exists up to 10.x."""
    return version[0] <= 10


# ------------------------------------------------------------------ shapes / profiles
@dataclass(frozen=True)
class Profile:
    """min / opt / max shape of one input for an optimization profile."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    dynamic: bool = field(default=False, compare=False)  # the model's input has a free dimension

    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def needs_shapes(self) -> bool:
        """trtexec needs min/opt/max for an input with a free dimension, even when they are equal."""
        return self.dynamic or not self.is_static()


def parse_shapes(items: Sequence[str]) -> dict[str, Profile]:
    """``NAME:1x3x224x224/8x3x224x224/32x3x224x224`` (min/opt/max; one shape means all three)."""
    refuse_repeated([n for n in (item.rpartition(":")[0] for item in items) if n], "--shape", "input")
    profiles = {}
    for item in items:
        name, sep, spec = item.rpartition(":")
        if not sep or not name:
            raise QuantError(f"--shape takes NAME:DxDxD (or NAME:MIN/OPT/MAX), got '{item}'",
                             hint="e.g. --shape input:8x3x224x224 or --shape input:1x3x224x224/8x3x224x224/32x3x224x224")
        parts = spec.split("/")
        if len(parts) not in (1, 3):
            raise QuantError(f"--shape for '{name}' needs one shape or three (min/opt/max), got '{spec}'")
        try:
            shapes = [tuple(int(d) for d in part.lower().split("x")) for part in parts]
        except ValueError:
            raise QuantError(f"--shape for '{name}' has a non-integer dimension: '{spec}'",
                             hint="write dimensions as 1x3x224x224") from None
        if len(shapes) == 1:
            shapes *= 3
        low, opt, high = shapes
        if not (len(low) == len(opt) == len(high)) or any(not (a <= b <= c) or a < 1 for a, b, c in zip(low, opt, high)):
            raise QuantError(f"--shape for '{name}' must satisfy 1 <= min <= opt <= max on every axis, got '{spec}'")
        profiles[name] = Profile(name, low, opt, high)
    return profiles


def profiles_from_model(inputs: Sequence, observed: dict[str, list[list[int]]] | None = None,
                        max_batch: int = 32, given: dict[str, Profile] | None = None) -> dict[str, Profile]:
    """Profiles for every input: user-given ones first, else static dims, the observed range of the data
    for free non-batch dims, and batch 1 / 1 / ``max_batch`` for a free batch dim."""
    given = dict(given or {})
    unknown = sorted(set(given) - {spec.name for spec in inputs})
    if unknown:
        raise QuantError(f"--shape names inputs the model does not have: {', '.join(unknown)}",
                         hint=f"the model's inputs are: {', '.join(s.name for s in inputs)}")
    profiles = {}
    for spec in inputs:
        dynamic = any(not (isinstance(dim, int) and dim > 0) for dim in spec.shape)
        if spec.name in given:
            profile = given[spec.name]
            if len(profile.min) != len(spec.shape):
                raise QuantError(f"--shape for '{spec.name}' has {len(profile.min)} dimensions, the input has "
                                 f"{len(spec.shape)}", hint=f"e.g. --shape {spec.name}:" + "x".join(
                                     str(d) if isinstance(d, int) and d > 0 else "8" for d in spec.shape))
            fixed = [(axis, dim) for axis, dim in enumerate(spec.shape) if isinstance(dim, int) and dim > 0
                     and not profile.min[axis] == profile.opt[axis] == profile.max[axis] == dim]
            if fixed:
                axis, dim = fixed[0]
                raise QuantError(f"--shape for '{spec.name}' changes axis {axis}, which the model fixes at {dim}",
                                 hint="give the model's own size on its static axes")
            profiles[spec.name] = replace(profile, dynamic=dynamic)
            continue
        seen = (observed or {}).get(spec.name) or []
        low, opt, high = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                low.append(dim), opt.append(dim), high.append(dim)
            elif axis == 0:
                low.append(1), opt.append(1), high.append(max_batch)
            elif seen:
                sizes = [shape[axis - 1] for shape in seen if len(shape) == len(spec.shape) - 1]
                if not sizes:
                    raise QuantError(f"no observed size for axis {axis} of input '{spec.name}'",
                                     hint=f"pass --shape {spec.name}:MIN/OPT/MAX")
                low.append(min(sizes)), opt.append(max(sizes)), high.append(max(sizes))
            else:
                raise QuantError(f"input '{spec.name}' has a free axis {axis} and no observed sizes",
                                 hint=f"pass --shape {spec.name}:MIN/OPT/MAX, e.g. "
                                      f"{spec.name}:1x3x224x224/1x3x224x224/8x3x224x224")
        profiles[spec.name] = Profile(spec.name, tuple(low), tuple(opt), tuple(high), dynamic)
    return profiles


# ------------------------------------------------------------------ trtexec
def _shape_arg(profiles: list[Profile], which: str) -> str:
    def quote(name: str) -> str:  # trtexec accepts single-quoted names containing ':' or ','
        if "'" in name:  # a quote cannot be written inside trtexec's quotes: the spec would name another input
            raise QuantError(f"input name {name!r} holds a single quote, which trtexec's --minShapes/--optShapes/"
                             "--maxShapes cannot express", hint="rename the model input, or build with the "
                             "tensorrt Python module (pip install 'quant-trt[tensorrt]')")
        return f"'{name}'" if any(c in name for c in ":,") else name

    return ",".join(f"{quote(p.name)}:{'x'.join(str(d) for d in getattr(p, which))}" for p in profiles)


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, version: tuple[int, int, int] = DEFAULT_VERSION,
                    profiles: dict[str, Profile] | None = None, workspace_mib: int | None = None,
                    implicit_cache: str | Path | None = None, executable: str = "trtexec") -> list[str]:
    """trtexec arguments for this TensorRT version.

    Explicit (Q/DQ) models: 10.x gets ``--stronglyTyped`` (never with --int8/--fp16); 11.x builds strongly
    typed by default; 8.x/9.x need ``--int8`` to enable the INT8 Q/DQ layers. Implicit calibration
    (``implicit_cache``) uses ``--int8 --calib=CACHE`` and exists only up to 10.x.
    """
    command = [executable, f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if implicit_cache is not None:
        if not implicit_supported(version):
            raise QuantError(_implicit_refusal(version), hint="build the Q/DQ model instead: quant build DIR")
        command += ["--int8", f"--calib={implicit_cache}"]
    elif version[0] == 10:
        command.append("--stronglyTyped")
    elif version[0] < 10:
        command.append("--int8")
    shaped = [p for p in (profiles or {}).values() if p.needs_shapes()]  # every input with a free dimension
    if shaped:
        command += [f"--minShapes={_shape_arg(shaped, 'min')}", f"--optShapes={_shape_arg(shaped, 'opt')}",
                    f"--maxShapes={_shape_arg(shaped, 'max')}"]
    if workspace_mib is not None:
        if version >= (8, 4, 0):
            command.append(f"--memPoolSize=workspace:{workspace_mib}")  # MiB
        else:
            command.append(f"--workspace={workspace_mib}")
    return command


def _implicit_refusal(version: tuple[int, int, int]) -> str:
    return (f"TensorRT {'.'.join(map(str, version))} has no implicit INT8 calibration (removed in 11.0: "
            "IInt8*Calibrator, setDynamicRange, BuilderFlag.INT8 and trtexec --calib are gone)")


def trtexec_version(executable: str) -> tuple[int, int, int] | None:
    """The version trtexec reports in its banner ('[TensorRT v100300]')."""
    try:
        proc = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(next((line for line in (proc.stdout + proc.stderr).splitlines() if "TensorRT v" in line), ""))


# ------------------------------------------------------------------ what is available
@dataclass
class Availability:
    python: bool
    trtexec: str | None

    @property
    def any(self) -> bool:
        return self.python or self.trtexec is not None


def detect() -> Availability:
    """Whether the tensorrt module can be imported and whether trtexec is on PATH (nothing is imported)."""
    spec = importlib.util.find_spec("tensorrt")
    return Availability(spec is not None and spec.origin is not None, shutil.which("trtexec"))  # not a namespace dir


def not_found_error(command: list[str]) -> QuantError:
    return QuantError("TensorRT was not found: no 'tensorrt' Python module and no 'trtexec' on PATH",
                      hint=f"install it with {INSTALL_HINT}, or add --print-command to print the trtexec command "
                           "(alone, exit 0) for a machine with TensorRT")


def __getattr__(name: str):
    if name in ("CacheCalibrator", "MinMaxCacheCalibrator", "calibrator_for_cache"):
        from quant.core.lazy import require

        require("tensorrt")  # a QuantError with the install hint where it is absent
        from quant.backends.tensorrt import _calibrator

        return getattr(_calibrator, name)
    raise AttributeError(f"module 'quant.backends.tensorrt' has no attribute {name!r}")
