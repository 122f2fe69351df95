"""What TensorRT users know from Model Optimizer: method aliases, INT8-stored weights (dq_only), --high-precision
fp16, --exclude-op-type / --exclude-regex, --include."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from conftest import run_cli
from float_models import narrow_conv_resize
from quant.core.config import CalibrationConfig


def _run(model_path, feeds):
    options = ort.SessionOptions()  # exact Q/DQ in float
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _sqnr(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - test) ** 2))


def _calibrate(digits, out, *extra):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", out, *extra])
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def heldout(digits):
    data = np.load(digits["heldout"])
    return {"input": data["input"][:200]}, data["label"][:200]


@pytest.fixture(scope="module")
def int8_and_float_storage(digits, tmp_path_factory):
    d = tmp_path_factory.mktemp("storage")
    return _calibrate(digits, d / "int8", "--method", "max"), _calibrate(digits, d / "float", "--method", "minmax",
                                                                          "--weight-storage", "float")


# --- method aliases ---------------------------------------------------------------------------------------------

def test_method_aliases_name_the_same_calibrators():
    assert CalibrationConfig(methods=("max", "kl")).methods == ("minmax", "entropy")


def test_alias_gives_the_scales_of_its_method(int8_and_float_storage):
    int8, floats = int8_and_float_storage
    a, b = (json.loads((d / "quant.json").read_text()) for d in (int8, floats))
    assert a["method"] == b["method"] == "minmax"
    assert {t: v["scale"] for t, v in a["activations"].items()} == {t: v["scale"] for t, v in b["activations"].items()}


def test_alias_and_its_method_together_is_a_duplicate(digits, tmp_path):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "max,minmax",
                    "--output", tmp_path / "o"])
    assert proc.returncode == 2 and "listed twice" in proc.stderr
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "maxx",
                    "--output", tmp_path / "o"])
    assert proc.returncode == 2 and "max = minmax" in proc.stderr


# --- weights stored as INT8 (dq_only) ---------------------------------------------------------------------------

def test_int8_weights_file_is_smaller_than_fp32(digits, int8_and_float_storage):
    int8, floats = int8_and_float_storage
    fp32_size = digits["model"].stat().st_size
    assert (int8 / "model.int8.onnx").stat().st_size < 0.5 * fp32_size
    assert (floats / "model.int8.onnx").stat().st_size > fp32_size  # the Q/DQ-on-float form is larger


def test_int8_weights_are_int8_initializers_behind_dq_only(int8_and_float_storage):
    int8, _ = int8_and_float_storage
    model = onnx.load(str(int8 / "model.int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inits = {i.name: i for i in model.graph.initializer}
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in inits for n in model.graph.node)
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert len(weight_dqs) == 7  # 6 convs + the Gemm
    for node in weight_dqs:
        q = numpy_helper.to_array(inits[node.input[0]])
        assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    float_weights = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2]
    assert float_weights == []  # the float copies are gone


def test_int8_weights_give_the_outputs_of_the_qdq_form(int8_and_float_storage, heldout):
    int8, floats = int8_and_float_storage
    feeds, _ = heldout
    np.testing.assert_array_equal(_run(int8 / "model.int8.onnx", feeds), _run(floats / "model.int8.onnx", feeds))


# --- --high-precision fp16 ----------------------------------------------------------------------------------------

def test_high_precision_fp16_keeps_io_float32_and_runs_float16_inside(digits, tmp_path, heldout,
                                                                        int8_and_float_storage):
    out = _calibrate(digits, tmp_path / "hp16", "--method", "minmax", "--high-precision", "fp16")
    model = onnx.load(str(out / "model.int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [v.type.tensor_type.elem_type for v in model.graph.input] == [TensorProto.FLOAT]
    assert [v.type.tensor_type.elem_type for v in model.graph.output] == [TensorProto.FLOAT]
    inits = {i.name: i for i in model.graph.initializer}
    scales = [inits[n.input[1]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(s.data_type == TensorProto.FLOAT16 for s in scales)
    assert not any(i.data_type == TensorProto.FLOAT for i in model.graph.initializer)  # biases too
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # one after the input, one before the output
    feeds, labels = heldout
    out16 = _run(out / "model.int8.onnx", feeds)
    out32 = _run(int8_and_float_storage[0] / "model.int8.onnx", feeds)
    assert out16.dtype == np.float32
    assert _sqnr(out32, out16) > 30.0
    assert np.mean(np.argmax(out16, 1) == labels) >= np.mean(np.argmax(out32, 1) == labels) - 0.01
    manifest = json.loads((out / "quant.json").read_text())
    assert manifest["quantization"]["high_precision"] == "float16"


def test_high_precision_fp16_keeps_float32_only_inputs(tmp_path):
    path = narrow_conv_resize(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli(["calibrate", path, "--data", tmp_path / "x.npy", "--method", "minmax", "--high-precision", "fp16",
                    "--output", tmp_path / "o"])
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(str(tmp_path / "o" / "model.int8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    scales = next(i for i in model.graph.initializer if i.name == "scales")
    assert scales.data_type == TensorProto.FLOAT  # Resize takes float32 scales only
    reference = _run(path, {"x": x})
    assert _sqnr(reference, _run(tmp_path / "o" / "model.int8.onnx", {"x": x})) > 25.0


# --- --exclude-op-type, --exclude-regex, --include ----------------------------------------------------------------

def _layers(folder):
    manifest = json.loads((folder / "quant.json").read_text())
    return {l["node"] for l in manifest["layers"]}, {e["node"]: e["reason"] for e in manifest["unquantized"]}


def _weight_dq_consumers(folder):
    model = onnx.load(str(folder / "model.int8.onnx"))
    inits = {i.name for i in model.graph.initializer}
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return {n.name for n in model.graph.node if any(t in dq_out for t in n.input)}


def test_exclude_op_type(digits, tmp_path):
    out = _calibrate(digits, tmp_path / "o", "--method", "minmax", "--exclude-op-type", "Conv")
    layers, unquantized = _layers(out)
    assert layers == {"/head/Gemm"}
    convs = [n for n, r in unquantized.items() if n.endswith("/Conv")]
    assert len(convs) == 6 and all("--exclude-op-type Conv" in unquantized[n] for n in convs)
    assert _weight_dq_consumers(out) == {"/head/Gemm"}


def test_exclude_regex(digits, tmp_path):
    out = _calibrate(digits, tmp_path / "o", "--method", "minmax", "--exclude-regex", r"^/block1/")
    layers, unquantized = _layers(out)
    assert not any(n.startswith("/block1/") for n in layers)
    assert {"/stem/stem.0/Conv", "/block2/conv1/Conv", "/head/Gemm"} <= layers
    assert "--exclude-regex ^/block1/" in unquantized["/block1/conv1/Conv"]
    assert "/block1/Add" in unquantized  # its residual Q/DQ goes too
    model = onnx.load(str(out / "model.int8.onnx"))
    add = next(n for n in model.graph.node if n.name == "/block1/Add")
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producers.get(t) != "DequantizeLinear" for t in add.input)


@pytest.mark.parametrize("flags, error", [
    (["--exclude-regex", "("], "is not a regular expression"),
    (["--exclude-regex", "^/nothing/"], "matches no node name"),
    (["--exclude-op-type", "LSTM"], "the model has no LSTM node"),
    (["--include", "/block1/Add"], "quant quantizes the inputs of"),
    (["--include", "/head/Gemm", "--exclude", "/head/Gemm"], "both --include and --exclude"),
    (["--include", "nope"], "--include names nodes the model does not have"),
])
def test_selection_mistakes_are_refused(digits, tmp_path, flags, error):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o", *flags])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: ") and error in proc.stderr.splitlines()[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_include_quantizes_a_layer_the_heuristic_keeps_in_float(tmp_path):
    path = narrow_conv_resize(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    base = ["calibrate", path, "--data", tmp_path / "x.npy", "--method", "minmax"]
    assert run_cli(base + ["--output", tmp_path / "default"]).returncode == 0
    layers, unquantized = _layers(tmp_path / "default")
    assert "narrow" not in layers and "too few" in unquantized["narrow"]
    proc = run_cli(base + ["--include", "narrow", "--output", tmp_path / "inc"])
    assert proc.returncode == 0, proc.stderr
    layers, _ = _layers(tmp_path / "inc")
    assert "narrow" in layers
    manifest = json.loads((tmp_path / "inc" / "quant.json").read_text())
    assert manifest["weights"]["w_narrow"]["axis"] == 0 and manifest["weights"]["w_narrow"]["channels"] == 2
    assert "narrow" in _weight_dq_consumers(tmp_path / "inc")
    assert manifest["config"]["include"] == ["narrow"]


def test_include_beats_an_op_type_exclusion(digits, tmp_path):
    out = _calibrate(digits, tmp_path / "o", "--method", "minmax", "--exclude-op-type", "Conv",
                     "--include", "/stem/stem.0/Conv")
    layers, _ = _layers(out)
    assert layers == {"/stem/stem.0/Conv", "/head/Gemm"}


def test_exclude_with_re_prefix_is_a_regex(digits, tmp_path):
    out = _calibrate(digits, tmp_path / "o", "--method", "minmax", "--exclude", r"re:^/block2/conv\d/")
    layers, unquantized = _layers(out)
    assert "/block2/conv1/Conv" not in layers and "/block2/conv2/Conv" not in layers
    assert r"--exclude-regex ^/block2/conv\d/" in unquantized["/block2/conv1/Conv"]
    assert len(layers) == 5
