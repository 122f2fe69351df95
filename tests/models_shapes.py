"""Small ONNX models of the shapes on which ONNX Runtime may run no integer kernel (tests of --target ort-cpu).

Each builder takes a path and returns (path, feeds) where feeds is a dict of float32 calibration arrays
(16 samples). Built with onnx.helper only.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import _save

SAMPLES = 16


def _rng(seed=0):
    return np.random.default_rng(seed)


def _w(rng, shape, scale=0.3, name="w"):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _x(*shape, seed=1):
    return (_rng(seed).standard_normal((SAMPLES, *shape))).astype(np.float32)


def _io(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def depthwise_conv(path):
    """x [N,4,8,8] -> depthwise Conv (group 4) -> y."""
    rng = _rng()
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=4, pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "depthwise", [_io("x", ["N", 4, 8, 8])], [_io("y", ["N", 4, 8, 8])],
                              [_w(rng, (4, 1, 3, 3))])
    return _save(graph, path), {"x": _x(4, 8, 8)}


def conv_transpose(path):
    """x [N,4,6,6] -> ConvTranspose(4->8, stride 2) -> y."""
    rng = _rng()
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", strides=[2, 2])]
    graph = helper.make_graph(nodes, "deconv", [_io("x", ["N", 4, 6, 6])], [_io("y", ["N", 8, 13, 13])],
                              [_w(rng, (4, 8, 3, 3))])
    return _save(graph, path), {"x": _x(4, 6, 6)}


def weight_left_matmul(path):
    """x [N,8,5] -> MatMul(W [6,8], x) -> y [N,6,5] (the weight is the left operand)."""
    rng = _rng()
    nodes = [helper.make_node("MatMul", ["w", "x"], ["y"], name="mm_left")]
    graph = helper.make_graph(nodes, "mm_left", [_io("x", ["N", 8, 5])], [_io("y", ["N", 6, 5])],
                              [_w(rng, (6, 8))])
    return _save(graph, path), {"x": _x(8, 5)}


def weight_left_gemm(path):
    """x [8, N]: Gemm(W [6,8], x) -> y [6, N]; the batch is the LAST axis of input and output."""
    rng = _rng()
    nodes = [helper.make_node("Gemm", ["w", "x"], ["y"], name="gemm_left")]
    graph = helper.make_graph(nodes, "gemm_left", [_io("x", [8, "N"])], [_io("y", [6, "N"])], [_w(rng, (6, 8))])
    return _save(graph, path), None  # batch on the last axis: fed by hand in the tests


def gemm_const_a(path):
    """x [N,8] -> Gemm(x, W^T) with transB and alpha 0.5, plus a Gemm whose A is constant and B the activation."""
    rng = _rng()
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1, alpha=0.5),
             helper.make_node("Transpose", ["h"], ["ht"], name="t", perm=[1, 0]),
             helper.make_node("Gemm", ["w2", "ht"], ["yt"], name="fc_left"),
             helper.make_node("Transpose", ["yt"], ["y"], name="t2", perm=[1, 0])]
    graph = helper.make_graph(nodes, "gemm_const_a", [_io("x", ["N", 8])], [_io("y", ["N", 4])],
                              [_w(rng, (6, 8)), _w(rng, (4, 6), name="w2")])
    return _save(graph, path), {"x": _x(8)}


def if_model(path):
    """x [N,4] -> MatMul -> If(sum > 0) with a branch per sign -> y."""
    rng = _rng()
    then_g = helper.make_graph([helper.make_node("Relu", ["h"], ["o_then"], name="then_relu")], "then", [],
                               [_io("o_then", ["N", 3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["h"], ["o_else"], name="else_neg")], "else", [],
                               [_io("o_else", ["N", 3])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("ReduceSum", ["h"], ["s"], name="sum", keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    graph = helper.make_graph(nodes, "if_model", [_io("x", ["N", 4])], [_io("y", ["N", 3])], [_w(rng, (4, 3)), zero])
    return _save(graph, path), {"x": _x(4)}


def loop_model(path):
    """x [N,4] -> Loop (3 iterations of MatMul with a constant 4x4 weight inside the body) -> y."""
    rng = _rng()
    body = helper.make_graph(
        [helper.make_node("MatMul", ["v_in", "w_body"], ["v_mm"], name="body_mm"),
         helper.make_node("Tanh", ["v_mm"], ["v_out"], name="body_tanh"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond")],
        "body", [_io("i", [], TensorProto.INT64), _io("cond_in", [], TensorProto.BOOL), _io("v_in", ["N", 4])],
        [_io("cond_out", [], TensorProto.BOOL), _io("v_out", ["N", 4])], [_w(rng, (4, 4), name="w_body")])
    trip = numpy_helper.from_array(np.array(3, np.int64), "trip")
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Loop", ["trip", "cond", "h"], ["y"], name="loop", body=body)]
    graph = helper.make_graph(nodes, "loop_model", [_io("x", ["N", 4])], [_io("y", ["N", 4])],
                              [_w(rng, (4, 4)), trip, cond])
    return _save(graph, path), {"x": _x(4)}


def int_second_output(path):
    """x [N,8] -> Gemm -> logits [N,5], plus ArgMax(logits) as an int64 second output."""
    rng = _rng()
    nodes = [helper.make_node("Gemm", ["x", "w"], ["logits"], name="fc", transB=1),
             helper.make_node("ArgMax", ["logits"], ["cls"], name="argmax", axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "int_out", [_io("x", ["N", 8])],
                              [_io("logits", ["N", 5]), _io("cls", ["N"], TensorProto.INT64)], [_w(rng, (5, 8))])
    return _save(graph, path), {"x": _x(8)}


def bool_output(path):
    """x [N,8] -> MatMul -> y [N,3] and y > 0 as a bool second output."""
    rng = _rng()
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
             helper.make_node("Greater", ["y", "zero"], ["positive"], name="gt")]
    graph = helper.make_graph(nodes, "bool_out", [_io("x", ["N", 8])],
                              [_io("y", ["N", 3]), _io("positive", ["N", 3], TensorProto.BOOL)], [_w(rng, (8, 3)), zero])
    return _save(graph, path), {"x": _x(8)}


def conv1d(path):
    """x [N,3,16] -> Conv1d -> Relu -> Conv1d -> y (1-D convolutions)."""
    rng = _rng()
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1])]
    graph = helper.make_graph(nodes, "conv1d", [_io("x", ["N", 3, 16])], [_io("y", ["N", 4, 16])],
                              [_w(rng, (8, 3, 3)), _w(rng, (4, 8, 3), name="w2")])
    return _save(graph, path), {"x": _x(3, 16)}


def batched_matmul_3d(path):
    """x [N,5,8] -> MatMul with W [8,6] -> Softmax -> y (a transformer-style 3-D MatMul)."""
    rng = _rng()
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Softmax", ["h"], ["y"], name="softmax", axis=-1)]
    graph = helper.make_graph(nodes, "mm3d", [_io("x", ["N", 5, 8])], [_io("y", ["N", 5, 6])], [_w(rng, (8, 6))])
    return _save(graph, path), {"x": _x(5, 8)}


def activation_matmul(path):
    """a [N,4,8], b [N,8,3] -> MatMul(a, b) (no weight) + MatMul with a weight -> y."""
    rng = _rng()
    nodes = [helper.make_node("MatMul", ["a", "b"], ["h"], name="mm_act"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="mm_w")]
    graph = helper.make_graph(nodes, "mm_act", [_io("a", ["N", 4, 8]), _io("b", ["N", 8, 3])],
                              [_io("y", ["N", 4, 2])], [_w(rng, (3, 2))])
    return _save(graph, path), {"a": _x(4, 8), "b": _x(8, 3, seed=2)}


def conv_gemm(path):
    """A plain Conv -> Relu -> GAP -> Gemm classifier: ORT does run integer kernels here (control case)."""
    rng = _rng()
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wfc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "conv_gemm", [_io("x", ["N", 3, 8, 8])], [_io("y", ["N", 5])],
                              [_w(rng, (16, 3, 3, 3)), _w(rng, (5, 16), name="wfc")])
    return _save(graph, path), {"x": _x(3, 8, 8)}


SHAPES = {f.__name__: f for f in (depthwise_conv, conv_transpose, weight_left_matmul, gemm_const_a, if_model,
                                   loop_model, int_second_output, bool_output, conv1d, batched_matmul_3d,
                                   activation_matmul, conv_gemm)}
