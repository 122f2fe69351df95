"""Small ONNX models built with onnx.helper for tests (no torch needed)."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def dynamic_conv(path, channels=3, seed=0):
    """input [N, C, H, W] with free H, W -> Conv(8) -> Relu -> Conv(8) + skip -> GAP -> Flatten -> Gemm(5)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3, "w1"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2, "w2"),
             numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "wfc"),
             numpy_helper.from_array(np.zeros(5, np.float32), "bfc")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "dynamic_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return _save(graph, path)


def two_inputs(path, seed=0):
    """a [N, 4] and b [N, 6] -> MatMul each with a weight -> Add -> y [N, 3]."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal((6, 3)).astype(np.float32), "wb")]
    nodes = [helper.make_node("MatMul", ["a", "wa"], ["ya"], name="mm_a"),
             helper.make_node("MatMul", ["b", "wb"], ["yb"], name="mm_b"),
             helper.make_node("Add", ["ya", "yb"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "two_inputs",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return _save(graph, path)


def no_weighted_ops(path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "relu_only", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    return _save(graph, path)


def pooled_residual(path, seed=0):
    """x [N, 3, 16, 16] -> Conv -> Relu -> MaxPool -> Conv -> Add(skip) -> Relu -> Sigmoid -> Conv -> GAP -> Flatten -> Gemm.

    Exercises the ort-cpu placement: a folded ReLU, a pass-through MaxPool, a residual Add with a folded
    ReLU after it, and an op without an integer kernel (Sigmoid) in the middle.
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.4, "w1"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2, "w2"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b2"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.3, "w3"),
             numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "wfc"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bfc")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["m1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["m1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "m1"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
             helper.make_node("Sigmoid", ["r2"], ["g"], name="gate"),
             helper.make_node("Conv", ["g", "w3"], ["c3"], name="conv3"),
             helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "pooled_residual",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return _save(graph, path)


def depthwise_spread(path, channels=8, decades=4.0, seed=0, share_weight=False):
    """x [N, 3, 16, 16] -> Conv -> HardSwish -> depthwise Conv -> Mul(per-channel 1/gain) -> y [N, C, 16, 16].

    The first conv's output channels carry gains spanning ``decades`` decades and the Mul after the depthwise
    conv undoes them (a BatchNormalization exported as Mul, as in PP-PicoDet): one per-tensor INT8 scale on
    the depthwise conv's input loses the quiet channels, which the output then amplifies. HardSwish between
    the convs rules out cross-layer equalization. ``share_weight``: a second depthwise conv reads the same
    weight initializer (its output is a second graph output, z).
    """
    rng = np.random.default_rng(seed)
    gains = np.logspace(-decades + 1, 1, channels).astype(np.float32)
    w1 = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * gains[:, None, None, None]
    inits = [numpy_helper.from_array(w1, "w1"),
             numpy_helper.from_array(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), "wd"),
             numpy_helper.from_array((1 / gains).reshape(1, channels, 1, 1).astype(np.float32), "bn_scale")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c1"], ["h"], name="hswish"),
             helper.make_node("Conv", ["h", "wd"], ["d"], name="dw", pads=[1, 1, 1, 1], group=channels),
             helper.make_node("Mul", ["d", "bn_scale"], ["y"], name="bn")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 16, 16])]
    if share_weight:
        nodes.append(helper.make_node("Conv", ["c1", "wd"], ["z"], name="dw_shared", pads=[1, 1, 1, 1],
                                      group=channels))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", channels, 16, 16]))
    graph = helper.make_graph(nodes, "depthwise_spread",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])], outputs, inits)
    return _save(graph, path)
