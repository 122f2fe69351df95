"""Bias correction: the FP32 biases of model.int8.onnx absorb the mean output shift that quantization causes."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import quant
from quant.backends.onnxruntime import OrtRunner
from quant.core.onnx_model import initializers, to_array


def _save(nodes, inputs, outputs, inits, path):
    model = helper.make_model(helper.make_graph(nodes, "bias", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_relu_conv(path, seed=0):
    """x [N, 4, H, W] -> Conv(16, no bias) -> Relu -> Conv(6, bias) -> y: ReLU outputs have a mean, so a
    per-channel weight error becomes a per-channel output shift."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 4, 3, 3)) * 0.4).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((6, 16, 3, 3)) * 0.2).astype(np.float32), "w2"),
             numpy_helper.from_array((rng.standard_normal(6) * 0.1).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 10, 10])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 10, 10])], inits, path)


def relu_gemm(path, seed=0):
    """x [N, 24] -> Relu -> Gemm(12, transB=1, with C) -> y."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((12, 24)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(12).astype(np.float32), "c")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w", "c"], ["y"], name="fc", transB=1)]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 24])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12])], inits, path)


def _data(shape, count, seed):
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def _channel_mean_error(fp32_model, int8_model, x):
    """Per output channel: |mean over samples and positions of (INT8 - FP32)|, in numpy."""
    fp32 = OrtRunner(fp32_model).run({"x": x})[0].astype(np.float64)
    int8 = OrtRunner(int8_model, mode="emulate").run({"x": x})[0].astype(np.float64)
    error = np.moveaxis(int8 - fp32, 1, 0).reshape(fp32.shape[1], -1)
    return np.abs(error.mean(axis=1)), np.sqrt(np.mean(fp32 ** 2))


def test_gemm_correction_is_the_mean_shift_computed_in_numpy(tmp_path):
    model = relu_gemm(tmp_path / "fc.onnx")
    x = _data((24,), 300, seed=1)
    np.save(tmp_path / "x.npy", x)
    result = quant.calibrate(str(model), tmp_path / "x.npy", methods=("percentile",), percentile=99.0,
                             bias_correction=True, batch_size=7)
    # the same arithmetic in numpy: Q/DQ of the ReLU output (the method's amax) and of the weight (per row)
    amax = np.float32(result.activation_amax["percentile"]["r"])
    scale_x = np.float32(amax / np.float32(127))
    r = np.maximum(x, 0)
    r_q = np.clip(np.round(r / scale_x), -128, 127).astype(np.float32) * scale_x
    w = to_array(initializers(onnx.load(str(model)))["w"])
    scale_w = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)[:, None]
    w_q = np.clip(np.round(w / scale_w), -127, 127).astype(np.float32) * scale_w
    expected = -np.mean(r_q.astype(np.float64) @ w_q.T.astype(np.float64) - r.astype(np.float64) @ w.T.astype(np.float64),
                        axis=0)
    written = result.qdq_model()
    fc = next(n for n in written.graph.node if n.name == "fc")
    corrected_c = to_array(initializers(written)[fc.input[2]]).astype(np.float64)
    original_c = to_array(initializers(onnx.load(str(model)))["c"]).astype(np.float64)
    assert np.abs(expected).max() > 1e-3  # clipping at the 99th percentile shifts the outputs: something to correct
    np.testing.assert_allclose(corrected_c - original_c, expected, rtol=1e-3, atol=1e-6)
    assert fc.input[2] != "c" and "c" not in initializers(written)  # a new initializer; the old one unused


def relu_conv(path, seed=0):
    """x [N, 4, H, W] -> Relu -> Conv(6, no bias) -> y: every INT8 error is the conv's own (its Q/DQ input and
    weight), so the local correction should take the mean shift to ~0 on the data it was measured on."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((6, 4, 3, 3)) * 0.3).astype(np.float32), "w")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 10, 10])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 10, 10])], inits, path)


@pytest.mark.parametrize("build, percentile, on_calibration, on_held_out", [
    (relu_conv, 95.0, 1e-3, 0.3),  # one layer: the shift is its own, removed on the calibration data up to rounding
    (conv_relu_conv, 99.0, 0.5, 0.5),  # two: conv2 also inherits conv1's error through the ReLU (not measured locally)
])
def test_bias_correction_removes_the_mean_output_shift_per_channel(tmp_path, build, percentile, on_calibration,
                                                                  on_held_out):
    model = build(tmp_path / "m.onnx")
    calibration, held_out = _data((4, 10, 10), 128, seed=2), _data((4, 10, 10), 64, seed=3)
    np.save(tmp_path / "cal.npy", calibration)
    options = dict(methods=("percentile",), percentile=percentile)  # clipping: a systematic shift to remove
    plain = quant.calibrate(str(model), tmp_path / "cal.npy", **options)
    corrected = quant.calibrate(str(model), tmp_path / "cal.npy", bias_correction=True, **options)
    for x, bound in ((calibration, on_calibration), (held_out, on_held_out)):
        before, rms = _channel_mean_error(model, plain.qdq_model(), x)
        after, _ = _channel_mean_error(model, corrected.qdq_model(), x)
        assert before.max() > 0.01 * rms  # a real shift to remove
        assert after.max() < bound * before.max() and after.mean() < bound * before.mean(), (after, before)
    manifest = corrected.manifest("percentile")["bias_correction"]
    assert manifest["applied"] is True and manifest["samples"] == 128
    first = manifest["layers"]["conv" if build is relu_conv else "conv1"]
    assert first["bias"].startswith("added") and first["max_abs"] > 0
    assert "bias_correction" not in plain.manifest("percentile")


def _corrected_biases(result):
    written = result.qdq_model()
    inits = initializers(written)
    return {n.name: to_array(inits[n.input[2]]).tobytes() for n in written.graph.node
            if n.op_type == "Conv" and len(n.input) > 2}


def test_correction_is_bit_identical_across_batch_sizes_and_sample_order(tmp_path):
    model = conv_relu_conv(tmp_path / "m.onnx")
    x = _data((4, 10, 10), 50, seed=4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "shuffled.npy", x[np.random.default_rng(0).permutation(len(x))])
    reference = None
    for data, batch in (("x.npy", 1), ("x.npy", 3), ("x.npy", 16), ("x.npy", 50), ("shuffled.npy", 7)):
        biases = _corrected_biases(quant.calibrate(str(model), tmp_path / data, methods=("minmax",),
                                                   bias_correction=True, batch_size=batch))
        assert len(biases) == 2
        reference = reference or biases
        assert biases == reference, (data, batch)


def test_saved_folder_rebuilds_the_same_model_and_fallback_keeps_fp32_biases(tmp_path):
    model = conv_relu_conv(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", _data((4, 10, 10), 40, seed=5))
    result = quant.calibrate(str(model), tmp_path / "x.npy", methods=("minmax",), bias_correction=True)
    result.save(tmp_path / "out")
    assert (tmp_path / "out" / "bias_correction.npz").is_file()
    saved = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    reloaded = quant.load_calibration(tmp_path / "out")
    assert reloaded.qdq_model().SerializeToString() == saved.SerializeToString()
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    assert set(manifest["bias_correction"]["layers"]) == {"conv1", "conv2"}
    kept = reloaded.qdq_model(keep_float=["conv2"])  # a layer back in float keeps its own FP32 bias
    conv2 = next(n for n in kept.graph.node if n.name == "conv2")
    assert conv2.input[2] == "b2"
    assert "conv2" not in reloaded.manifest("minmax", keep_float=["conv2"])["bias_correction"]["layers"]


def test_cli_flag_writes_the_corrected_model(tmp_path):
    from conftest import run_cli

    model = conv_relu_conv(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", _data((4, 10, 10), 20, seed=6))
    proc = run_cli(["calibrate", model, "--data", tmp_path / "x.npy", "--method", "minmax", "--bias-correction",
                    "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    assert manifest["config"]["bias_correction"] is True and manifest["bias_correction"]["applied"] is True
    onnx.checker.check_model(onnx.load(str(tmp_path / "out" / "model.int8.onnx")), full_check=True)


def test_a_correction_that_lowers_the_output_sqnr_is_not_applied(tmp_path):
    from quant.datasets import iter_batches, open_source, resolve_input_map
    from quant.core.onnx_model import input_specs
    from quant.pipeline import bias_correction

    model = conv_relu_conv(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", _data((4, 10, 10), 20, seed=7))
    result = quant.calibrate(str(model), tmp_path / "x.npy", methods=("minmax",), bias_correction=True)
    entry = result.bias_correction["minmax"]
    assert "not_applied" not in entry
    assert entry["check"]["output_sqnr_db_with"] > entry["check"]["output_sqnr_db_without"]
    plain = quant.calibrate(str(model), tmp_path / "x.npy", methods=("minmax",)).qdq_model()
    entry["shifts"] = {node: shift - 5.0 for node, shift in entry["shifts"].items()}  # a wrong correction
    source = open_source(tmp_path / "x.npy")
    inputs = input_specs(result.model)
    mapping = resolve_input_map(inputs, source, None)
    bias_correction.check(result, iter_batches(source, range(len(source)), inputs, mapping, 1))
    assert "not above the uncorrected" in entry["not_applied"]
    assert result.qdq_model().SerializeToString() == plain.SerializeToString()
    manifest = result.manifest("minmax")["bias_correction"]
    assert manifest["applied"] is False and manifest["why"] == entry["not_applied"]
