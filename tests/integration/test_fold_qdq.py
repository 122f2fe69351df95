"""Emulation with each constant weight's Q -> DQ computed once: the same float32 weights, bit-identical outputs."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quant.backends.fold_qdq import fold_constant_qdq, quantize_dequantize
from quant.backends.onnxruntime import OrtRunner
from tests.models_accuracy import bert_encoder


def _qdq_of_constant(weight, scale, zero, axis):
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(scale, "s")]
    inputs = ["w", "s"]
    if zero is not None:
        inits.append(numpy_helper.from_array(zero, "z"))
        inputs.append("z")
    nodes = [helper.make_node("QuantizeLinear", inputs, ["q"], name="q", axis=axis),
             helper.make_node("DequantizeLinear", ["q", *inputs[1:]], ["dq"], name="dq", axis=axis),
             helper.make_node("Add", ["dq", "x"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(weight.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(weight.shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("dtype,per_axis", [(np.int8, False), (np.int8, True), (np.uint8, True), (None, False)])
def test_folded_weight_equals_onnx_runtimes_quantize_dequantize(dtype, per_axis):
    rng = np.random.default_rng(0)
    scale = (rng.uniform(0.01, 0.1, 6) if per_axis else np.array(0.037)).astype(np.float32)
    s = scale.reshape(6, 1) if per_axis else scale
    k = rng.integers(-300, 300, (6, 50)).astype(np.float32)
    # exact halves (ties to even), neighbours one ulp off, saturating values, and random ones
    weight = np.concatenate([(k + 0.5) * s, np.nextafter((k + 0.5) * s, np.float32(np.inf)),
                             rng.standard_normal((6, 50)).astype(np.float32) * 200 * s], axis=1).astype(np.float32)
    zero = None if dtype is None else (rng.integers(0, 50, scale.shape) if dtype == np.uint8 else
                                       np.zeros(scale.shape)).astype(dtype)
    model = _qdq_of_constant(weight, scale, zero, axis=0)
    x = np.zeros_like(weight)
    [expected] = OrtRunner(model, mode="emulate", fold_weights=False).run({"x": x})
    folded, count = fold_constant_qdq(model)
    assert count == 1 and {n.op_type for n in folded.graph.node} == {"Add"}
    np.testing.assert_array_equal(numpy_helper.to_array([i for i in folded.graph.initializer if i.name == "dq"][0]),
                                  expected)
    np.testing.assert_array_equal(quantize_dequantize(weight, scale, zero, axis=0), expected)
    [again] = OrtRunner(model, mode="emulate").run({"x": x})
    np.testing.assert_array_equal(again, expected)
    assert len(model.graph.node) == 3  # the input model is not modified


def _assert_bit_identical(int8_model, feeds_list):
    folded = OrtRunner(int8_model, mode="emulate")
    plain = OrtRunner(int8_model, mode="emulate", fold_weights=False)
    assert folded.folded_weights > 0 and plain.folded_weights == 0
    for feeds in feeds_list:
        for a, b in zip(folded.run(feeds), plain.run(feeds)):
            assert np.array_equal(a, b)
    return folded.folded_weights


def test_bundled_model_outputs_are_bit_identical(digits, tmp_path):
    import quant

    result = quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",))
    held = np.load(digits["heldout"])["input"]
    count = _assert_bit_identical(result.qdq_model("entropy"), [{"input": held[i:i + 64]} for i in range(0, 540, 64)])
    assert count == len(result.plan.weights)


def test_transformer_matmul_model_outputs_are_bit_identical(tmp_path):
    import quant

    model = bert_encoder(tmp_path / "bert.onnx", layers=2, hidden=256, heads=4)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((16, 40, 256)).astype(np.float32))
    result = quant.calibrate(model, tmp_path / "cal.npz", methods=("mse",))
    feeds = [{"x": rng.standard_normal((n, 40, 256)).astype(np.float32)} for n in (1, 3, 8)]
    count = _assert_bit_identical(result.qdq_model("mse"), feeds)
    assert count == 12  # q, k, v, attention output, two feed-forward weights per layer
    # variants with layers in float (their FP32 weights stay constants, pre-packed by ORT) too, sharing a cache
    cache = {}
    for keep in ({"layer0.query/MatMul"}, {"layer1.ffn.out/MatMul", "layer0.attn.out/MatMul"}):
        variant = result.qdq_model("mse", keep_float=frozenset(keep))
        plain = OrtRunner(variant, mode="emulate", fold_weights=False)
        folded_runner = OrtRunner(variant, mode="emulate", fold_cache=cache)
        assert folded_runner.folded_weights == 12 - len(keep)
        for feed in feeds:
            assert np.array_equal(plain.run(feed)[0], folded_runner.run(feed)[0])
    folded, _ = fold_constant_qdq(result.qdq_model("mse"))
    onnx.checker.check_model(folded, full_check=True)
    assert sum(n.op_type == "QuantizeLinear" for n in folded.graph.node) == 2 * 8  # activations keep theirs


def _if_reading_outer_constants():
    """x -> Conv -> c; If(sum(x) > 0): then c + k (k an initializer only the branch reads), else c * m (m a
    Constant node's output only the branch reads)."""
    rng = np.random.default_rng(0)
    out = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4, 8, 8])  # noqa: E731
    then = helper.make_graph([helper.make_node("Add", ["c", "k"], ["t"], name="add_k")], "then", [], [out("t")])
    other = helper.make_graph([helper.make_node("Mul", ["c", "m"], ["e"], name="mul_m")], "else", [], [out("e")])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Constant", [], ["m"], value=numpy_helper.from_array(np.float32(2.0), "m")),
             helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0.0), "zero")),
             helper.make_node("Greater", ["s", "zero"], ["cond"], name="positive"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then, else_branch=other)]
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(np.full((1, 4, 1, 1), 0.5, np.float32), "k")]
    graph = helper.make_graph(nodes, "if_outer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [out("y")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_constants_only_an_if_branch_reads_are_kept(tmp_path):
    """Folding dropped initializers and Constant nodes read only inside a subgraph: ONNX Runtime then refused
    the folded model ('Nodes in a graph must be topologically sorted ... input k') on a valid Q/DQ model."""
    import quant

    onnx.save(_if_reading_outer_constants(), str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.standard_normal((32, 3, 8, 8)).astype(np.float32))
    result = quant.calibrate(str(tmp_path / "m.onnx"), tmp_path / "x.npy", methods=("minmax",))
    feeds = [{"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32) + shift} for shift in (1.0, -1.0)]
    assert _assert_bit_identical(result.qdq_model("minmax"), feeds) == 1  # both branches taken
