"""`quant build`: a TensorRT engine from a calibration folder or a Q/DQ model, on whatever TensorRT is here.

Order of preference: the tensorrt Python module, then trtexec on PATH; with neither, a QuantError that
prints the exact trtexec command for the model.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from quant.backends import tensorrt as trt_backend
from quant.core.errors import QuantError
from quant.core.io import dumps, temp_file_beside, write_file_atomic
from quant.core.ownership import read_manifest, register
from quant.core.readback import read_quant_json
from quant.core.onnx_model import external_data_digest, file_hash, input_specs, load_model
from quant.qdq.cache import read_cache


@dataclass
class BuildPlan:
    """What will be built, with what, and the equivalent trtexec command."""

    onnx_path: Path
    engine_path: Path
    profiles: dict
    version: tuple[int, int, int]
    command: list[str]
    implicit_cache: Path | None = None
    manifest_path: Path | None = None
    via: str = "none"  # python | trtexec | none
    notes: list[str] = field(default_factory=list)


def target_version(available, trt_version: str | None, manifest: dict) -> tuple[tuple[int, int, int], str]:
    """The TensorRT version the build targets, and where it came from.

    The TensorRT found here wins; else ``--trt-version``; else the version ``quant calibrate --trt-version``
    recorded in quant.json; else DEFAULT_VERSION."""
    if available.python:
        from quant.backends.tensorrt import _builder

        return _builder.version(), "the tensorrt Python module found here"
    if available.trtexec:
        found = trt_backend.trtexec_version(available.trtexec)
        if found:
            return found, f"trtexec found at {available.trtexec}"
    if trt_version:
        return _parse_trt_version(trt_version, "--trt-version"), "--trt-version"
    recorded = (manifest.get("config") or {}).get("trt_version")
    if recorded:
        return _parse_trt_version(recorded, "quant.json"), "quant.json, as quant calibrate --trt-version recorded it"
    return trt_backend.DEFAULT_VERSION, "the default: no TensorRT found here"


def _parse_trt_version(text: str, where: str) -> tuple[int, int, int]:
    version = trt_backend.parse_version(str(text))
    if version is None or not 5 <= version[0] <= 99:
        raise QuantError(f"{where}: '{text}' is not a TensorRT version", hint="write it as MAJOR.MINOR.PATCH, e.g. 10.3.0")
    return version


def has_qdq(model) -> bool:
    """Whether the ONNX graph holds QuantizeLinear/DequantizeLinear nodes (explicit quantization)."""
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def plan_build(target: str | Path, output: str | Path, shapes: Sequence[str] = (), workspace_mib: int | None = None,
               implicit: bool = False, max_batch: int = 32, trt_version: str | None = None) -> BuildPlan:
    target = Path(target)
    if not target.exists():
        raise QuantError(f"'{target}' does not exist", hint="pass a folder written by 'quant calibrate' or a Q/DQ .onnx")
    if target.is_dir():
        folder, onnx_path = target, target / "model.int8.onnx"
        if not onnx_path.exists():
            raise QuantError(f"'{target}' has no model.int8.onnx", hint="pass one method's folder of 'quant calibrate'")
    else:
        onnx_path = target
        folder = target.parent if (target.parent / "quant.json").exists() else None
    manifest_path = folder / "quant.json" if folder is not None else None
    manifest = read_quant_json(manifest_path) if manifest_path is not None and manifest_path.exists() else {}
    cache = None
    if implicit:
        if not manifest:
            raise QuantError("--implicit needs a calibration folder (quant.json, calibration.cache and the FP32 model)",
                             hint="pass the folder written by 'quant calibrate'")
        fp32 = Path(manifest["model"]["path"] or "")
        if not fp32.is_file():
            raise QuantError(f"the FP32 model '{fp32}' recorded in quant.json is missing",
                             hint="put the FP32 model back where it was calibrated")
        recorded = manifest["model"].get("external_data_sha256")  # its weight files, when it has external data
        if file_hash(fp32) != manifest["model"]["sha256"] or (recorded and external_data_digest(fp32) != recorded):
            raise QuantError(f"the FP32 model '{fp32}' changed since calibration (sha256 differs)",
                             hint="calibrate again: the cache's tensor names and ranges belong to the old model")
        onnx_path, cache = fp32, folder / "calibration.cache"
        read_cache(cache)  # a malformed cache fails here, with its line number, before TensorRT is looked for
    model = load_model(onnx_path)
    inputs = input_specs(model)
    observed = (manifest.get("data") or {}).get("input_shapes")
    profiles = trt_backend.profiles_from_model(inputs, observed, max_batch, trt_backend.parse_shapes(shapes))
    available = trt_backend.detect()
    via = "python" if available.python else "trtexec" if available.trtexec else "none"
    version, source = target_version(available, trt_version, manifest)
    notes = [f"targets TensorRT {'.'.join(map(str, version))} (from {source})"]
    if trt_version and via != "none" and _parse_trt_version(trt_version, "--trt-version") != version:
        notes.append(f"--trt-version {trt_version} is ignored: the TensorRT found here is {'.'.join(map(str, version))}")
    if cache is not None and not trt_backend.implicit_supported(version):
        raise QuantError(trt_backend._implicit_refusal(version), hint=f"build the Q/DQ model instead: quant build {target}")
    if cache is None and not has_qdq(model):
        notes.append(f"warning: '{onnx_path}' has no QuantizeLinear/DequantizeLinear nodes, so TensorRT builds it in "
                     "FP32, not INT8: build the model.int8.onnx that 'quant calibrate' writes")
    command = trt_backend.trtexec_command(onnx_path, output, version, profiles, workspace_mib, cache,
                                          executable=available.trtexec or "trtexec")
    return BuildPlan(onnx_path, Path(output), profiles, version, command, cache, manifest_path, via, notes)


def build(target: str | Path, output: str | Path, shapes: Sequence[str] = (), workspace_mib: int | None = None,
          implicit: bool = False, max_batch: int = 32, trt_version: str | None = None, plan: BuildPlan | None = None
          ) -> BuildPlan:
    """Build and write the engine atomically; record TensorRT's version and the GPU in quant.json."""
    plan = plan or plan_build(target, output, shapes, workspace_mib, implicit, max_batch, trt_version)
    if plan.via == "none":
        raise trt_backend.not_found_error(plan.command)
    output = Path(output)
    if output.exists() and output.is_dir():
        raise QuantError(f"--output '{output}' is a folder", hint="name the engine file, e.g. --output model.engine")
    if plan.via == "python":
        from quant.backends.tensorrt import _builder

        write_file_atomic(output, _builder.build_engine(plan.onnx_path, plan.profiles, workspace_mib, plan.implicit_cache))
    else:
        _run_trtexec(plan, output)
    if plan.manifest_path is not None:
        manifest = read_quant_json(plan.manifest_path)
        manifest["tensorrt"] = {"version": ".".join(map(str, plan.version)), "gpu": gpu_name(), "built_with": plan.via,
                                "engine": str(output), "implicit": plan.implicit_cache is not None,
                                "profiles": {p.name: {"min": p.min, "opt": p.opt, "max": p.max} for p in plan.profiles.values()},
                                "trtexec_command": plan.command if plan.via == "trtexec" else None}
        write_file_atomic(plan.manifest_path, dumps(manifest))
    return plan


def _run_trtexec(plan: BuildPlan, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(output)  # the umask decides the engine's mode, as for a plain open()
    os.close(fd)
    command = [arg if not arg.startswith("--saveEngine=") else f"--saveEngine={tmp}" for arg in plan.command]
    log = output.with_name(output.name + ".log")
    try:
        proc = subprocess.run(command, capture_output=True, text=True)
        write_file_atomic(log, proc.stdout + proc.stderr)
        if proc.returncode != 0:
            errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "[E]" in line]
            raise QuantError(f"trtexec failed (exit {proc.returncode}): {(errors or ['no error line'])[-1].strip()}",
                             hint=f"the full log is in {log}")
        os.replace(tmp, output)
        if read_manifest(output.parent) is not None:  # keep a calibration folder provably quant's
            register(output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def gpu_name() -> str:
    """The GPU's name from nvidia-smi, or 'unknown'."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=30).stdout.strip().splitlines()
            if out:
                return out[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "unknown"
