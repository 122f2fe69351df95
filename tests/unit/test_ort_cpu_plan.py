"""The ort-cpu placement on a small graph with a pooled residual block (see tests/models.py)."""
import numpy as np
import onnx
import pytest

import quant
from quant.backends.onnxruntime import OrtRunner
from quant.qdq.ort_cpu import plan_ort_cpu
from tests.models import pooled_residual


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pooled")
    model = pooled_residual(folder / "model.onnx")
    data = np.random.default_rng(1).standard_normal((32, 3, 16, 16)).astype(np.float32)
    np.save(folder / "data.npy", data)
    result = quant.calibrate(model, folder / "data.npy", methods=("minmax",), target="all")
    return result, data


def test_relus_fold_maxpool_shares_its_inputs_range_and_sigmoid_stays_float(calibrated):
    result, _ = calibrated
    plan = plan_ort_cpu(result.model, result.plan)
    assert plan.folded == ["relu1", "relu2"]
    assert "pool1" in plan.nodes and "add" in plan.nodes and "gate" not in plan.nodes
    # conv1's output is quantized with relu1's range; MaxPool's output with the same one (ORT drops the pair)
    assert plan.pairs["c1"] == "r1" and plan.pairs["m1"] == "r1"
    assert plan.pairs["s"] == "r2"
    # the Sigmoid output feeds conv3 and gets its own pair; the Gemm output is the graph output: none
    assert plan.pairs["g"] == "g" and "y" not in plan.pairs


def test_model_matches_exact_qdq_on_ort_kernels_and_keeps_range_semantics(calibrated):
    result, data = calibrated
    model = result.ort_cpu_model("minmax")
    onnx.checker.check_model(model, full_check=True)
    assert not any(n.op_type == "Relu" for n in model.graph.node)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    pairs = {n.input[0]: (inits[n.input[1]], inits[n.input[2]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}
    np.testing.assert_array_equal(pairs["c1"][0], pairs["m1"][0])  # one scale through MaxPool
    assert pairs["c1"][1] == 0 and pairs["s"][1] == 0  # folded ReLUs: zero point 0
    kernels = OrtRunner(model, mode="ort-int8")
    assert kernels.optimized_ops.get("QLinearConv") == 3 and kernels.optimized_ops.get("QLinearAdd") == 1
    exact = OrtRunner(model, mode="emulate")
    fp32 = OrtRunner(result.model).run({"x": data})[0].astype(np.float64)
    a = kernels.run({"x": data})[0].astype(np.float64)
    b = exact.run({"x": data})[0].astype(np.float64)
    assert 10 * np.log10(np.sum(b * b) / np.sum((a - b) ** 2)) > 30.0  # integer kernels = the Q/DQ graph
    assert 10 * np.log10(np.sum(fp32 * fp32) / np.sum((b - fp32) ** 2)) > 20.0  # and close to FP32
