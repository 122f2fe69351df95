"""Engine builds with TensorRT's Python API. Imports tensorrt at module level: load only where installed."""
from __future__ import annotations

from pathlib import Path

import tensorrt as trt

from quant.backends.tensorrt import Profile, parse_version
from quant.core.errors import QuantError


def version() -> tuple[int, int, int]:
    return parse_version(trt.__version__) or (0, 0, 0)


def _parser_errors(parser) -> list[str]:
    messages = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node = error.node()
        name = getattr(error, "node_name", lambda: "")() or ""
        operator = getattr(error, "node_operator", lambda: "")() or ""
        where = f"node {node}" + (f" '{name}'" if name else "") + (f" ({operator})" if operator else "")
        messages.append(f"{where}: {error.desc()}")
    return messages


def build_engine(onnx_path: str | Path, profiles: dict[str, Profile], workspace_mib: int | None = None,
                 implicit_cache: str | Path | None = None) -> bytes:
    """Parse the ONNX file and build a serialized engine.

    Explicit (Q/DQ): a strongly typed network on TensorRT >= 10, no precision flags; on 8.x/9.x the
    INT8 flag enables the Q/DQ layers. Implicit: the FP32 network with BuilderFlag.INT8 and a calibrator
    that serves ``implicit_cache`` (TensorRT <= 10 only).
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = version()[0]
    flags = 0
    if major >= 10 and implicit_cache is None:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser)
        raise QuantError(f"TensorRT's ONNX parser rejected '{onnx_path}': " + "; ".join(errors),
                         hint="each error names the ONNX node; see docs/tensorrt.md for what each version accepts")
    config = builder.create_builder_config()
    if workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if implicit_cache is not None:
        from quant.backends.tensorrt._calibrator import calibrator_for_cache

        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator_for_cache(implicit_cache)
    elif major < 10:
        config.set_flag(trt.BuilderFlag.INT8)
    dynamic = [p for p in profiles.values() if p.needs_shapes()]  # inputs with a free dimension, equal shapes too
    if dynamic:
        profile = builder.create_optimization_profile()
        for p in dynamic:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise QuantError(f"TensorRT could not build an engine from '{onnx_path}'",
                         hint="rerun with TensorRT's verbose log (trtexec --verbose) to see the failing layer")
    return bytes(serialized)
