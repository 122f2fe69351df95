"""float16 models get a valid float16 Q/DQ model; bfloat16 is refused; IR 3 models get a valid output."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

import quant
from conftest import run_cli
from float_models import bfloat16_conv, float16_conv, ir3_conv_matmul


def _session(model_path, optimize=False):
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _sqnr(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - test) ** 2))


@pytest.fixture(scope="module")
def fp16(tmp_path_factory):
    d = tmp_path_factory.mktemp("fp16")
    model = float16_conv(d / "model.fp16.onnx")
    rng = np.random.default_rng(1)
    np.savez(d / "calib.npz", x=rng.standard_normal((48, 3, 12, 12)).astype(np.float16))
    np.savez(d / "heldout.npz", x=rng.standard_normal((32, 3, 12, 12)).astype(np.float16))
    proc = run_cli(["calibrate", model, "--data", d / "calib.npz", "--method", "minmax", "--output", d / "out"])
    assert proc.returncode == 0, proc.stderr
    return d, model, d / "out" / "model.int8.onnx"


def test_float16_qdq_model_is_valid_onnx_in_float16(fp16):
    _, _, int8 = fp16
    model = onnx.load(str(int8))
    onnx.checker.check_model(model, full_check=True)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    assert model.ir_version >= 9
    inits = {i.name: i for i in model.graph.initializer}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) == 3  # activations x, r1 (conv2 and the residual Add share it), f
    for node in quantizers:
        assert inits[node.input[1]].data_type == TensorProto.FLOAT16, node.name  # scale in the input's type
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert len(weight_dqs) == 3  # INT8 weights, float16 scales: DequantizeLinear returns float16
    for node in weight_dqs:
        assert inits[node.input[0]].data_type == TensorProto.INT8
        assert inits[node.input[1]].data_type == TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16


def test_float16_scales_are_the_float32_scales_rounded(fp16):
    import json

    d, _, int8 = fp16
    manifest = json.loads((d / "out" / "quant.json").read_text())
    model = onnx.load(str(int8))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        tensor = node.input[0]
        if tensor in manifest["activations"]:
            expected = np.float16(manifest["activations"][tensor]["scale"])
            assert inits[node.input[1]] == expected, tensor


def test_float16_int8_outputs_close_to_float16_outputs(fp16):
    d, model, int8 = fp16
    x = np.load(d / "heldout.npz")["x"]
    reference = _session(model, optimize=True).run(None, {"x": x})[0]
    for optimize in (False, True):  # exact emulation and ORT's own graph
        out = _session(int8, optimize=optimize).run(None, {"x": x})[0]
        assert out.dtype == np.float16
        assert _sqnr(reference, out) > 30.0
        assert np.mean(np.argmax(out, 1) == np.argmax(reference, 1)) >= 0.9


def test_float16_eval_prints_the_comparison(fp16):
    d, model, int8 = fp16
    proc = run_cli(["eval", model, int8, "--data", d / "heldout.npz", "--json"])
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    text = json.dumps(report)
    assert "sqnr" in text.lower()


def test_float16_from_float32_data_and_api(tmp_path):
    model = float16_conv(tmp_path / "m.onnx", seed=3)
    data = {"x": np.random.default_rng(0).standard_normal((16, 3, 10, 10)).astype(np.float32)}
    np.savez(tmp_path / "d.npz", **data)
    result = quant.calibrate(str(model), str(tmp_path / "d.npz"), methods=("minmax",))
    hist = result.histograms["x"]
    # statistics in float32 of the float16 values the model sees
    assert hist.absmax == pytest.approx(float(np.abs(data["x"].astype(np.float16)).max()))
    qdq = result.qdq_model()
    onnx.checker.check_model(qdq, full_check=True)


def test_bfloat16_model_is_refused_before_the_pass(tmp_path):
    model = bfloat16_conv(tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3, 8, 8), np.float32))
    proc = run_cli(["calibrate", model, "--data", tmp_path / "d.npz", "--output", tmp_path / "out"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: ") and "bfloat16" in proc.stderr.splitlines()[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_ir3_model_gets_a_valid_qdq_model(tmp_path):
    model = ir3_conv_matmul(tmp_path / "ir3.onnx")
    x = np.random.default_rng(2).standard_normal((8, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "d.npy", x)
    proc = run_cli(["calibrate", model, "--data", tmp_path / "d.npy", "--batch-size", "1", "--method", "minmax",
                    "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    onnx.checker.check_model(out, full_check=True)
    assert out.ir_version >= 7  # what opset 13 needs
    assert not {i.name for i in out.graph.initializer} & {v.name for v in out.graph.input}
    reference = _session(model, optimize=True)
    qdq = _session(tmp_path / "out" / "model.int8.onnx")
    for sample in x[:4]:
        feed = {"x": sample[None]}
        assert _sqnr(reference.run(None, feed)[0], qdq.run(None, feed)[0]) > 20.0
    assert [v.name for v in onnx.load(str(model)).graph.input] == ["x", "w1", "wfc", "shape"]  # input untouched


def test_float16_float_weight_storage_matches_int8_storage(fp16):
    d, model, int8 = fp16
    proc = run_cli(["calibrate", model, "--data", d / "calib.npz", "--method", "minmax", "--weight-storage", "float",
                    "--output", d / "out_float"])
    assert proc.returncode == 0, proc.stderr
    path = d / "out_float" / "model.int8.onnx"
    qdq = onnx.load(str(path))
    onnx.checker.check_model(qdq, full_check=True)
    inits = {i.name: i for i in qdq.graph.initializer}
    quantizers = [n for n in qdq.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) == 6 and all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in quantizers)
    # The dequantized weights are identical; ORT runs float16 Conv/Gemm through float32 with Casts it inserts and
    # moves, so the two graphs round differently inside (not bit-equal as in float32, see test_modelopt_features).
    x = np.load(d / "heldout.npz")["x"]
    assert _sqnr(_session(int8).run(None, {"x": x})[0], _session(path).run(None, {"x": x})[0]) > 40.0


def test_float16_sensitivity_scores_every_layer(fp16, tmp_path):
    import json
    import shutil

    d, model, _ = fp16
    folder = tmp_path / "calib"
    shutil.copytree(d / "out", folder)
    proc = run_cli(["sensitivity", model, "--calibration", folder, "--data", d / "heldout.npz", "--metric", "sqnr"])
    assert proc.returncode == 0, proc.stderr
    layers = json.loads((folder / "sensitivity.json").read_text())["layers"]
    assert sorted(l["node"] for l in layers) == ["conv1", "conv2", "fc"]
    assert all(l["local_sqnr_db"] is not None and 20 < l["local_sqnr_db"] < 80 for l in layers)


def test_float16_island_in_a_float32_model_gets_scales_of_each_tensors_type(tmp_path):
    from float_models import mixed_float16_island

    model = mixed_float16_island(tmp_path / "mixed.onnx")
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli(["calibrate", model, "--data", tmp_path / "x.npy", "--method", "max", "--output", tmp_path / "o"])
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(str(tmp_path / "o" / "model.int8.onnx"))
    onnx.checker.check_model(out, full_check=True)
    inits = {i.name: i for i in out.graph.initializer}
    scale_type = {n.input[0]: inits[n.input[1]].data_type for n in out.graph.node if n.op_type == "QuantizeLinear"}
    assert scale_type == {"x16": TensorProto.FLOAT16, "y32": TensorProto.FLOAT}
    assert _sqnr(_session(model, optimize=True).run(None, {"x": x})[0],
                 _session(tmp_path / "o" / "model.int8.onnx").run(None, {"x": x})[0]) > 30.0
