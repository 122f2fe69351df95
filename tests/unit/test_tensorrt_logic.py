"""Our own logic around TensorRT, checked without TensorRT: versions, trtexec command lines, profiles.

Nothing here verifies TensorRT itself; tests/tensorrt/ does that where TensorRT is installed.
"""
import shlex

import numpy as np
import pytest

from quant.backends import tensorrt as trt_backend
from quant.backends.tensorrt import Profile, parse_shapes, parse_version, profiles_from_model, trtexec_command
from quant.core.errors import QuantError
from quant.datasets.base import InputSpec

# trtexec flags documented for building (TensorRT 8.6 - 10.x "trtexec --help" and the 8.x -> 10.x migration guide)
DOCUMENTED = {"--onnx", "--saveEngine", "--stronglyTyped", "--int8", "--fp16", "--calib", "--minShapes",
              "--optShapes", "--maxShapes", "--memPoolSize", "--workspace"}


def _flags(command):
    return [arg.split("=")[0] for arg in command[1:]]


@pytest.mark.parametrize("text, expected", [("10.3.0", (10, 3, 0)), ("8.6.1.6", (8, 6, 1)),
                                            ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec", (10, 3, 0)),
                                            ("[TensorRT v8601]", (8, 6, 1)), ("[TensorRT v110000]", (11, 0, 0)),
                                            ("no version", None)])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


DYNAMIC = {"input": Profile("input", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}


def test_trtexec_10_is_strongly_typed_without_precision_flags():
    command = trtexec_command("m.int8.onnx", "m.engine", (10, 3, 0), DYNAMIC, workspace_mib=2048)
    assert command[:3] == ["trtexec", "--onnx=m.int8.onnx", "--saveEngine=m.engine"]
    assert "--stronglyTyped" in command and "--int8" not in command and "--fp16" not in command
    assert "--minShapes=input:1x3x224x224" in command and "--maxShapes=input:32x3x224x224" in command
    assert "--memPoolSize=workspace:2048" in command
    assert set(_flags(command)) <= DOCUMENTED


def test_trtexec_11_and_8_flags():
    eleven = trtexec_command("m.onnx", "e", (11, 0, 0))
    assert not {"--stronglyTyped", "--int8", "--fp16"} & set(eleven)  # strongly typed is the default on 11
    eight = trtexec_command("m.onnx", "e", (8, 6, 1), workspace_mib=512)
    assert "--int8" in eight and "--stronglyTyped" not in eight  # 8.x needs INT8 enabled for Q/DQ layers
    old = trtexec_command("m.onnx", "e", (8, 2, 0), workspace_mib=512)
    assert "--workspace=512" in old
    for command in (eleven, eight, old):
        assert set(_flags(command)) <= DOCUMENTED


def test_implicit_calibration_flags_and_refusal_on_11():
    command = trtexec_command("fp32.onnx", "e", (10, 3, 0), implicit_cache="calibration.cache")
    assert "--int8" in command and "--calib=calibration.cache" in command and "--stronglyTyped" not in command
    with pytest.raises(QuantError, match="removed in 11.0"):
        trtexec_command("fp32.onnx", "e", (11, 0, 0), implicit_cache="calibration.cache")


def test_static_shapes_need_no_profile_and_odd_names_are_quoted():
    static = {"x": Profile("x", (1, 3), (1, 3), (1, 3))}
    assert not any(a.startswith("--minShapes") for a in trtexec_command("m", "e", (10, 0, 0), static))
    odd = {"input:0": Profile("input:0", (1, 4), (2, 4), (4, 4))}
    assert "--minShapes='input:0':1x4" in trtexec_command("m", "e", (10, 0, 0), odd)


def test_parse_shapes():
    profiles = parse_shapes(["input:1x3x224x224/8x3x224x224/32x3x224x224", "mask:1x128"])
    assert profiles["input"] == DYNAMIC["input"]
    assert profiles["mask"].min == profiles["mask"].max == (1, 128)
    for bad in ("input", "input:1x3/2x3", "input:8x3/1x3/4x3", "input:axb"):
        with pytest.raises(QuantError):
            parse_shapes([bad])


def test_profiles_from_model_and_observed_shapes():
    inputs = [InputSpec("x", np.dtype("float32"), ("N", 1, "H", "W"))]
    profiles = profiles_from_model(inputs, {"x": [[1, 32, 100], [1, 32, 320], [1, 32, 48]]}, max_batch=16)
    assert profiles["x"] == Profile("x", (1, 1, 32, 48), (1, 1, 32, 320), (16, 1, 32, 320))
    with pytest.raises(QuantError, match="free axis 2"):
        profiles_from_model(inputs, None)
    given = parse_shapes(["x:1x1x32x32/2x1x32x64/4x1x32x640"])
    assert profiles_from_model(inputs, None, given=given)["x"] == given["x"]
    with pytest.raises(QuantError, match="does not have"):
        profiles_from_model(inputs, None, given=parse_shapes(["y:1x1"]))


def test_cache_calibrator_without_tensorrt_says_how_to_install():
    if trt_backend.detect().python:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(QuantError, match="tensorrt"):
        trt_backend.CacheCalibrator  # noqa: B018


def test_build_without_tensorrt_prints_the_exact_trtexec_command(digits, tmp_path):
    if trt_backend.detect().any:
        pytest.skip("TensorRT is installed here")
    from conftest import run_cli

    import quant

    quant.calibrate(digits["model"], digits["calibration"]).save(tmp_path / "cal")
    engine = tmp_path / "model.engine"
    proc = run_cli(["build", tmp_path / "cal", "--output", engine])
    assert proc.returncode == 2 and not engine.exists()
    error, hint = proc.stderr.strip().splitlines()[-2:]
    assert error == "Error: TensorRT was not found: no 'tensorrt' Python module and no 'trtexec' on PATH"
    assert hint.startswith("Hint: install it with pip install 'quant-trt[tensorrt]'") and "--print-command" in hint
    proc = run_cli(["build", tmp_path / "cal", "--output", engine, "--print-command"])
    assert proc.returncode == 0 and not engine.exists()
    command = shlex.split(proc.stdout)
    assert command == ["trtexec", f"--onnx={tmp_path / 'cal' / 'model.int8.onnx'}", f"--saveEngine={engine}",
                       "--stronglyTyped", "--minShapes=input:1x1x8x8", "--optShapes=input:1x1x8x8",
                       "--maxShapes=input:32x1x8x8"]
    assert set(_flags(command)) <= DOCUMENTED
    proc = run_cli(["build", tmp_path / "cal", "--output", engine, "--implicit", "--print-command"])
    assert proc.returncode == 0
    implicit = shlex.split(proc.stdout)
    assert f"--onnx={digits['model']}" in implicit and "--int8" in implicit
    assert f"--calib={tmp_path / 'cal' / 'calibration.cache'}" in implicit


def test_cache_names_are_the_tensor_names_tensorrts_onnx_parser_keeps(digits, tmp_path):
    """TensorRT's ONNX parser names each ITensor after the ONNX tensor (graph input or node output)."""
    import onnx

    import quant
    from quant.qdq.cache import read_cache

    for model in (digits["model"],):
        quant.calibrate(model, digits["calibration"]).save(tmp_path / "c")
        _, scales = read_cache(tmp_path / "c" / "calibration.cache")
        graph = onnx.load(str(model)).graph
        tensor_names = {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
        assert scales and set(scales) <= tensor_names
