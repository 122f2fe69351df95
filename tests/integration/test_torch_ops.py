"""quant's ONNX executor on torch, op by op, against ONNX Runtime (FP32) on the attribute cases that differ."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

import quant  # noqa: E402
from quant.backends.onnxruntime import OrtRunner  # noqa: E402
from quant.backends.torch.runner import TorchRunner  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # IEEE fp32 on either

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset=17, check=True):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def _case(op, x_shape, attrs=None, extra=(), inputs_dtype=F32, outputs=1, x=None):
    """One node reading x (+ constant extra inputs); outputs get their shapes from ORT."""
    inits = [numpy_helper.from_array(np.asarray(v), f"c{i}") for i, v in enumerate(extra) if v is not None]
    names = ["x"] + [("" if v is None else f"c{i}") for i, v in enumerate(extra)]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", **(attrs or {}))
    if x is None:
        x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    model = _model([node], [helper.make_tensor_value_info("x", inputs_dtype, list(x.shape))],
                   [helper.make_empty_tensor_value_info(o) for o in outs], inits, check=False)
    return model, x


CASES = {
    "slice_negative_step": ("Slice", (4, 7), None, [np.array([-1, 5]), np.array([-100, 0]), np.array([0, 1]),
                                                     np.array([-1, -2])]),
    "slice_clamped_ends": ("Slice", (4, 7), None, [np.array([1]), np.array([2**62]), np.array([1]), np.array([3])]),
    "resize_nearest_asymmetric_floor": ("Resize", (1, 2, 3, 5), {"mode": "nearest", "coordinate_transformation_mode":
                                                                 "asymmetric", "nearest_mode": "floor"},
                                        [None, np.array([1, 1, 2, 2], np.float32)]),
    "resize_nearest_half_pixel_sizes": ("Resize", (1, 2, 3, 5), {"mode": "nearest"},
                                        [None, None, np.array([1, 2, 7, 4], np.int64)]),
    "resize_linear_half_pixel": ("Resize", (1, 2, 3, 5), {"mode": "linear"},
                                 [None, np.array([1, 1, 2.5, 1.5], np.float32)]),
    "resize_linear_align_corners": ("Resize", (1, 2, 3, 5), {"mode": "linear", "coordinate_transformation_mode":
                                                             "align_corners"}, [None, None, np.array([1, 2, 6, 9])]),
    "max_pool_ceil": ("MaxPool", (1, 2, 9, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, []),
    "max_pool_asymmetric_pads": ("MaxPool", (1, 2, 8, 8), {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1]}, []),
    "max_pool_same_upper": ("MaxPool", (1, 2, 7, 7), {"kernel_shape": [2, 2], "strides": [2, 2],
                                                       "auto_pad": "SAME_UPPER"}, []),
    "avg_pool_exclude_pad": ("AveragePool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, []),
    "avg_pool_include_pad_asym": ("AveragePool", (1, 2, 7, 7), {"kernel_shape": [3, 2], "pads": [1, 0, 2, 1],
                                                                 "count_include_pad": 1}, []),
    "avg_pool_exclude_pad_asym": ("AveragePool", (1, 2, 7, 7), {"kernel_shape": [3, 2], "pads": [1, 0, 2, 1]}, []),
    "conv_same_upper_stride": ("Conv", (1, 4, 9, 9), {"auto_pad": "SAME_UPPER", "strides": [2, 2], "group": 2},
                               [np.random.default_rng(1).standard_normal((6, 2, 4, 4)).astype(np.float32)]),
    "conv_asymmetric_dilated": ("Conv", (1, 3, 9, 9), {"pads": [0, 1, 2, 3], "dilations": [2, 1]},
                                [np.random.default_rng(1).standard_normal((5, 3, 3, 3)).astype(np.float32),
                                 np.arange(5, dtype=np.float32)]),
    "conv_1d": ("Conv", (2, 3, 11), {"pads": [1, 2], "strides": [2]},
                [np.random.default_rng(1).standard_normal((4, 3, 3)).astype(np.float32)]),
    "conv_transpose_pads_output_padding": ("ConvTranspose", (1, 4, 5, 5), {"strides": [2, 2], "pads": [1, 0, 0, 1],
                                                                           "output_padding": [1, 1], "group": 2},
                                           [np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32),
                                            np.arange(6, dtype=np.float32)]),
    "pad_reflect": ("Pad", (1, 2, 4, 5), {"mode": "reflect"}, [np.array([0, 0, 1, 2, 0, 0, 2, 1])]),
    "pad_edge": ("Pad", (1, 2, 4, 5), {"mode": "edge"}, [np.array([0, 0, 1, 2, 0, 0, 2, 1])]),
    "pad_constant_negative": ("Pad", (2, 4, 5), None, [np.array([1, 0, -1, 0, 2, 1]), np.array(1.5, np.float32)]),
    "gather_negative_indices": ("Gather", (5, 3), {"axis": 0}, [np.array([[-1, 0], [2, -5]])]),
    "gather_scalar_axis1": ("Gather", (4, 5, 2), {"axis": 1}, [np.array(-2)]),
    "split_uneven_num_outputs": ("Split", (2, 7), {"axis": 1, "num_outputs": 3}, [], 3, 18),
    "split_sizes": ("Split", (6, 2), None, [np.array([1, 5])], 2),
    "expand_bidirectional": ("Expand", (3, 1), None, [np.array([2, 1, 4])]),
    "reduce_sum_no_keepdims": ("ReduceSum", (2, 3, 4), {"keepdims": 0}, [np.array([-1, 0])]),
    "reduce_mean_attr_axes": ("ReduceMean", (2, 3, 4), {"axes": [1]}, [], 1, 17),
    "reduce_max_all": ("ReduceMax", (2, 3, 4), None, []),
    "argmax_last_index": ("ArgMax", None, {"axis": 1, "keepdims": 0, "select_last_index": 1}, [], 1, 17,
                          np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)),
    "layer_norm_axis": ("LayerNormalization", (2, 3, 4), {"axis": -2, "epsilon": 1e-3},
                        [np.linspace(0.5, 2, 12, dtype=np.float32).reshape(3, 4), np.float32(0.25)]),
    "softmax_axis0": ("Softmax", (3, 4), {"axis": 0}, []),
    "log_softmax": ("LogSoftmax", (3, 4), None, []),
    "hard_sigmoid": ("HardSigmoid", (3, 8), {"alpha": 0.3, "beta": 0.4}, []),
    "hard_swish": ("HardSwish", (3, 8), None, []),
    "prelu_channel": ("PRelu", (2, 3, 4), None, [np.array([[0.1], [0.2], [-0.5]], np.float32)]),
    "clip_min_only": ("Clip", (3, 4), None, [np.float32(-0.2)]),
    "clip_max_only": ("Clip", (3, 4), None, [None, np.float32(0.3)]),
    "gemm_alpha_beta_trans_a": ("Gemm", (4, 3), {"alpha": 0.5, "beta": 2.0, "transA": 1},
                                [np.ones((4, 2), np.float32), np.arange(6, dtype=np.float32).reshape(3, 2)]),
    "pow_half": ("Pow", (3, 4), None, [np.float32(2.0)]),
    "transpose_default": ("Transpose", (2, 3, 4), None, []),
    "flatten_axis0": ("Flatten", (2, 3, 4), {"axis": 0}, []),
    "flatten_axis_negative": ("Flatten", (2, 3, 4), {"axis": -1}, []),
    "einsum": ("Einsum", (2, 3), {"equation": "ij,jk->ik"}, [np.ones((3, 5), np.float32)]),
    "topk": ("TopK", (3, 6), {"axis": 1}, [np.array([2])], 2),
    "tile": ("Tile", (2, 3), None, [np.array([2, 2])]),
    "squeeze_no_axes": ("Squeeze", (1, 3, 1, 2), None, []),
    "unsqueeze_negative": ("Unsqueeze", (3, 2), None, [np.array([-1, 0])]),
    "reshape_zero_and_minus_one": ("Reshape", (2, 3, 4), None, [np.array([0, -1])]),
    "instance_norm": ("InstanceNormalization", (2, 3, 5), None, [np.ones(3, np.float32), np.zeros(3, np.float32)]),
    "gelu": ("Gelu", (3, 8), None, [], 1, 20),
    "elu": ("Elu", (3, 8), {"alpha": 0.7}, []),
    "leaky_relu": ("LeakyRelu", (3, 8), {"alpha": 0.2}, []),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_equals_onnx_runtime(name):
    spec = CASES[name]
    op, shape, attrs, extra = spec[:4]
    outputs = spec[4] if len(spec) > 4 else 1
    opset = spec[5] if len(spec) > 5 else 17
    x = spec[6] if len(spec) > 6 else None
    model, x = _case(op, shape, attrs, extra, outputs=outputs, x=x)
    model.opset_import[0].version = opset
    got, want = TorchRunner(model, DEVICE).run({"x": x}), OrtRunner(model).run({"x": x})
    assert len(got) == len(want) == outputs
    for a, b in zip(got, want):
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


def test_integer_shape_arithmetic_divides_towards_zero_and_stays_exact():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Div", ["s", "d"], ["q"], name="div"),
             helper.make_node("Mul", ["q", "d"], ["m"], name="mul"),
             helper.make_node("Sub", ["s", "m"], ["r"], name="sub"),
             helper.make_node("Div", ["neg", "d"], ["qn"], name="div_negative")]
    inits = [numpy_helper.from_array(np.array([3, 2, 4, 5]), "d"), numpy_helper.from_array(np.array([-7, 7, -8, 9]), "neg")]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [7, 5, 9, 4])],
                   [helper.make_tensor_value_info("r", I64, [4]), helper.make_tensor_value_info("qn", I64, [4])], inits)
    x = {"x": np.zeros((7, 5, 9, 4), np.float32)}
    got, want = TorchRunner(model, DEVICE).run(x), OrtRunner(model).run(x)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[1], [-2, 3, -2, 1])  # truncation, as ORT (floor would give -3 ... -2)


def test_an_unknown_op_names_the_op_and_the_node():
    model, _ = _case("Hardmax", (2, 3))
    with pytest.raises(quant.QuantError, match=r"no implementation of the ONNX op Hardmax \(node 'hardmax_node', "
                                                r"opset 17\)"):
        TorchRunner(model, DEVICE)


def test_an_unsupported_attribute_value_names_the_node():
    model, _ = _case("Resize", (1, 2, 3, 4), {"mode": "cubic"}, [None, np.array([1, 1, 2, 2], np.float32)])
    runner = TorchRunner(model, DEVICE)
    with pytest.raises(quant.QuantError, match=r"does not implement Resize mode cubic .*node 'resize_node'"):
        runner.run({"x": np.zeros((1, 2, 3, 4), np.float32)})
