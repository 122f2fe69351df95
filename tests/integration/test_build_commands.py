"""`quant build --print-command` for a dynamic-batch Q/DQ model, per TensorRT version, against trtexec's
documented flags (trtexec --help and NVIDIA's 8.x -> 10.x trtexec migration guide: --onnx, --saveEngine,
--minShapes/--optShapes/--maxShapes, --int8, --calib, --stronglyTyped, --memPoolSize=workspace:<MiB>;
10.x needs --stronglyTyped for a strongly typed Q/DQ build, 11.x builds strongly typed by default and has
no --int8/--calib, 8.x enables the INT8 Q/DQ layers with --int8). Nothing here runs TensorRT."""
import shlex

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import quant
from conftest import run_cli

DOCUMENTED = {"--onnx", "--saveEngine", "--stronglyTyped", "--int8", "--calib", "--minShapes", "--optShapes",
              "--maxShapes", "--memPoolSize"}


def _dynamic_batch_model(path):
    """image [N, 3, 24, 24] (free batch only) -> Conv -> Relu -> GAP -> Flatten -> Gemm -> logits [N, 4]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "wfc")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wfc"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "dynamic_batch",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 24, 24])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    model = _dynamic_batch_model(root / "model.onnx")
    np.save(root / "calibration.npy", np.random.default_rng(1).standard_normal((16, 3, 24, 24)).astype(np.float32))
    out = {}
    for version in ("8.6.1", "10.3.0", "11.0"):
        folder = root / f"cal-{version}"
        proc = run_cli(["calibrate", model, "--data", root / "calibration.npy", "--output", folder,
                        "--trt-version", version])
        assert proc.returncode == 0, proc.stderr
        out[version] = folder
    out["model"] = model
    return out


def _command(*args):
    proc = run_cli(["build", *args, "--print-command"])
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1  # the command alone on stdout; notes go to stderr
    command = shlex.split(proc.stdout)
    assert set(a.split("=")[0] for a in command[1:]) <= DOCUMENTED
    return command, proc.stderr


@pytest.mark.parametrize("version, precision", [("8.6.1", ["--int8"]), ("10.3.0", ["--stronglyTyped"]),
                                                ("11.0", [])])
def test_command_per_tensorrt_version_for_a_dynamic_batch_model(folders, tmp_path, version, precision):
    engine = tmp_path / "model.engine"
    command, notes = _command(folders[version], "--output", engine, "--shape", "image:8x3x24x24",
                              "--workspace", "2048")
    model = folders[version] / "model.int8.onnx"
    assert command == ["trtexec", f"--onnx={model}", f"--saveEngine={engine}", *precision,
                       "--minShapes=image:8x3x24x24", "--optShapes=image:8x3x24x24", "--maxShapes=image:8x3x24x24",
                       "--memPoolSize=workspace:2048"]
    assert f"targets TensorRT {version if version.count('.') == 2 else version + '.0'}" in notes
    assert not engine.exists()
    # the default profile: batch 1/1/--max-batch, the fixed axes as the model has them
    command, _ = _command(folders[version], "--output", engine, "--max-batch", "16")
    assert command[-3:] == ["--minShapes=image:1x3x24x24", "--optShapes=image:1x3x24x24",
                            "--maxShapes=image:16x3x24x24"]
    # --trt-version overrides what quant.json recorded; --shapes is the same flag as --shape
    command, _ = _command(folders["10.3.0"], "--output", engine, "--trt-version", version,
                          "--shapes", "image:1x3x24x24/4x3x24x24/8x3x24x24")
    assert command[3:3 + len(precision)] == precision
    assert "--optShapes=image:4x3x24x24" in command


def test_implicit_on_10_and_refused_on_11(folders, tmp_path):
    command, _ = _command(folders["10.3.0"], "--output", tmp_path / "e", "--implicit")
    assert command[:5] == ["trtexec", f"--onnx={folders['model']}", f"--saveEngine={tmp_path / 'e'}", "--int8",
                           f"--calib={folders['10.3.0'] / 'calibration.cache'}"]
    assert "--stronglyTyped" not in command
    assert (folders["11.0"] / "calibration.cache").read_text().startswith("TRT-110000-")
    proc = run_cli(["build", folders["11.0"], "--output", tmp_path / "e", "--implicit", "--print-command"])
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and "TensorRT 11.0.0 has no implicit INT8 calibration" in errors[0]
    assert lines[-1].startswith("Hint: build the Q/DQ model instead")


def test_a_model_without_qdq_is_built_with_a_warning(folders, tmp_path):
    command, notes = _command(folders["model"], "--output", tmp_path / "e", "--trt-version", "10.3.0")
    assert command[1] == f"--onnx={folders['model']}"
    assert "warning: " in notes and "has no QuantizeLinear/DequantizeLinear nodes" in notes and "FP32" in notes
    _, quiet = _command(folders["10.3.0"], "--output", tmp_path / "e")
    assert "warning" not in quiet


def test_bad_shapes_are_refused(folders, tmp_path):
    for shape, message in [("image:8x3x32x32", "changes axis 2, which the model fixes at 24"),
                           ("image:8x3x24", "has 3 dimensions, the input has 4"),
                           ("pixels:8x3x24x24", "does not have: pixels")]:
        proc = run_cli(["build", folders["10.3.0"], "--output", tmp_path / "e", "--shape", shape, "--print-command"])
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
