"""Cross-layer equalization (--equalize): the FP32 function stays, INT8 gets better on badly scaled channels."""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import quant
from quant.backends.onnxruntime import OrtRunner
from quant.qdq.equalize import equalization_pairs, equalize


def badly_scaled_depthwise(path, seed=0):
    """x [N, 8, H, W] -> depthwise Conv (channel i scaled by 10**u_i, u from -2 to 1) -> Relu -> Conv 1x1 whose
    input channel i is scaled by 10**-u_i -> y: every channel matters equally in FP32, but the per-tensor
    activation between the convs is dominated by the large channels (as after folding a BatchNorm)."""
    rng = np.random.default_rng(seed)
    u = np.linspace(-2, 1, 8)
    w1 = rng.standard_normal((8, 1, 3, 3)) * 10.0 ** u[:, None, None, None]
    b1 = rng.standard_normal(8) * 0.1 * 10.0 ** u
    w2 = rng.standard_normal((8, 8, 1, 1)) * 10.0 ** -u[None, :, None, None]
    inits = [numpy_helper.from_array(w1.astype(np.float32), "w1"), numpy_helper.from_array(b1.astype(np.float32), "b1"),
             numpy_helper.from_array(w2.astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["d"], name="depthwise", group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="pointwise")]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 12, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _sqnr(reference, test):
    reference, test = reference.astype(np.float64), test.astype(np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((test - reference) ** 2))


def test_equalization_keeps_fp32_and_improves_int8_sqnr(tmp_path):
    path = badly_scaled_depthwise(tmp_path / "dw.onnx")
    rng = np.random.default_rng(1)
    calibration = rng.standard_normal((64, 8, 12, 12)).astype(np.float32)
    held_out = rng.standard_normal((32, 8, 12, 12)).astype(np.float32)
    np.save(tmp_path / "cal.npy", calibration)
    model = onnx.load(str(path))
    assert equalization_pairs(model) == [("depthwise", "pointwise", "relu")]
    equalized, report = equalize(model)
    onnx.checker.check_model(equalized, full_check=True)
    fp32 = OrtRunner(path).run({"x": held_out})[0]
    same = OrtRunner(equalized).run({"x": held_out})[0]
    np.testing.assert_allclose(same, fp32, rtol=1e-5, atol=1e-5 * np.abs(fp32).max())
    assert report[0]["max_scale"] / report[0]["min_scale"] > 100  # it did rebalance the channels
    scores = {}
    for flag in (False, True):
        result = quant.calibrate(str(path), tmp_path / "cal.npy", methods=("minmax",), equalize=flag)
        scores[flag] = _sqnr(fp32, OrtRunner(result.qdq_model(), mode="emulate").run({"x": held_out})[0])
    assert scores[True] > scores[False] + 6.0, scores  # at least 4x less error energy
    manifest = result.manifest("minmax")
    assert manifest["equalization"]["pairs"][0]["conv1"] == "depthwise"
    assert manifest["config"]["equalize"] is True


def test_equalized_folder_reloads_to_the_same_model(tmp_path):
    path = badly_scaled_depthwise(tmp_path / "dw.onnx")
    np.save(tmp_path / "cal.npy", np.random.default_rng(2).standard_normal((16, 8, 12, 12)).astype(np.float32))
    quant.calibrate(str(path), tmp_path / "cal.npy", methods=("minmax",), equalize=True).save(tmp_path / "out")
    saved = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    assert quant.load_calibration(tmp_path / "out").qdq_model().SerializeToString() == saved.SerializeToString()
    assert json.loads((tmp_path / "out" / "quant.json").read_text())["equalization"]["applied"] is True


def test_a_clip_between_the_convs_is_not_equalized(tmp_path):
    """ReLU6 (Clip) is not positively homogeneous: scaling a channel would change the FP32 function."""
    model = onnx.load(str(badly_scaled_depthwise(tmp_path / "dw.onnx")))
    relu = next(n for n in model.graph.node if n.name == "relu")
    relu.op_type = "Clip"
    model.graph.initializer.extend([numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")])
    relu.input.extend(["lo", "hi"])
    assert equalization_pairs(model) == []


def test_quantize_op_types_puts_qdq_on_their_inputs(tmp_path):
    """--quantize-op-types Add,GlobalAveragePool: Model Optimizer's placement; ranges from the same pass."""
    from models import pooled_residual

    path = pooled_residual(tmp_path / "pr.onnx")
    np.save(tmp_path / "cal.npy", np.random.default_rng(3).standard_normal((8, 3, 16, 16)).astype(np.float32))
    plain = quant.calibrate(str(path), tmp_path / "cal.npy", methods=("minmax",))
    more = quant.calibrate(str(path), tmp_path / "cal.npy", methods=("minmax",),
                           quantize_op_types=("Add", "GlobalAveragePool"))
    model = more.qdq_model()
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("Add", "GlobalAveragePool"):
            assert all(producers[t].op_type == "DequantizeLinear" for t in node.input), node.name
    extra = set(more.activation_amax["minmax"]) - set(plain.activation_amax["minmax"])
    assert extra  # tensors only the new placement quantizes, with a minmax range from the same pass
    for tensor in extra:
        assert more.activation_amax["minmax"][tensor] == more.histograms[tensor].absmax
    onnx.checker.check_model(model, full_check=True)


def test_quantize_op_types_leaves_a_batchnorm_exported_as_mul_add_fused(tmp_path):
    """Conv -> Mul(constant) -> Add(constant) is one layer for TensorRT: no Q/DQ between (Model Optimizer neither);
    the Add that joins two branches does get one on both inputs."""
    from quant.pipeline.calibration import make_plan
    from quant.core.config import CalibrationConfig

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "beta")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "gamma"], ["scaled"], name="bn_scale"),
             helper.make_node("Add", ["scaled", "beta"], ["shifted"], name="bn_shift"),
             helper.make_node("Relu", ["x"], ["skip"], name="relu"),
             helper.make_node("Add", ["shifted", "skip"], ["y"], name="join")]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plan = make_plan(model, CalibrationConfig(quantize_op_types=("Add", "Mul")))
    readers = {node for consumers in plan.consumers.values() for node, _ in consumers}
    assert "bn_scale" not in readers and "bn_shift" not in readers
    assert sorted(plan.consumers["shifted"]) == [("join", 0)] and ("join", 1) in plan.consumers["skip"]
