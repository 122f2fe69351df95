"""Test models in other float types and IR versions (built with onnx.helper, no torch)."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import dynamic_conv


def as_float16(src, path):
    """``src`` (a float32 model file) with every float32 initializer and graph input/output in float16; no Cast."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for value in list(model.graph.input) + list(model.graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def float16_conv(path, seed=0):
    """dynamic_conv (Conv -> Relu -> Conv + skip -> GAP -> Flatten -> Gemm) entirely in float16."""
    fp32 = dynamic_conv(str(path) + ".fp32.onnx", seed=seed)
    return as_float16(fp32, path)


def bfloat16_conv(path, seed=0):
    """dynamic_conv in bfloat16 (opset 22: Conv takes bfloat16 from there)."""
    import ml_dtypes

    model = onnx.load(str(dynamic_conv(str(path) + ".fp32.onnx", seed=seed)))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init).astype(ml_dtypes.bfloat16)
        init.CopyFrom(helper.make_tensor(init.name, TensorProto.BFLOAT16, array.shape,
                                         array.view(np.uint16).tobytes(), raw=True))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.elem_type = TensorProto.BFLOAT16
    model.opset_import[0].version, model.ir_version = 22, 10
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def ir3_conv_matmul(path, seed=0):
    """IR version 3, opset 8 (initializers listed as graph inputs, as IR < 4 requires): Conv -> Relu -> Reshape -> MatMul."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1")
    wfc = numpy_helper.from_array(rng.standard_normal((8 * 10 * 10, 5)).astype(np.float32) * 0.1, "wfc")
    shape = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Reshape", ["r1", "shape"], ["f"], name="reshape"),
             helper.make_node("MatMul", ["f", "wfc"], ["y"], name="fc")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])]
    inputs += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in (w1, wfc, shape)]
    graph = helper.make_graph(nodes, "ir3", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              [w1, wfc, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def shared_weight(path, seed=0):
    """x [N, 6] -> MatMul(x, W) [N, 8] -> Transpose -> MatMul(W, .) [6, N] -> Transpose -> y [N, 6], plus
    MatMul(V, .) with V used once on the left (its channels on its first axis). W [6, 8] is shared by a
    use whose output channels are W's columns and one whose output channels are W's rows."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((6, 8)).astype(np.float32) * np.linspace(0.2, 2, 8, dtype=np.float32), "W")
    v = numpy_helper.from_array((rng.standard_normal((5, 6)) * np.array([[0.1], [0.5], [1.0], [2.0], [4.0]]))
                                .astype(np.float32), "V")  # rows (its output channels) of very different ranges
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm_right"),
             helper.make_node("Transpose", ["h"], ["ht"], name="t1", perm=[1, 0]),
             helper.make_node("MatMul", ["W", "ht"], ["z"], name="mm_left"),
             helper.make_node("Relu", ["z"], ["zr"], name="relu"),
             helper.make_node("MatMul", ["V", "zr"], ["u"], name="mm_v"),
             helper.make_node("Transpose", ["u"], ["y"], name="t2", perm=[1, 0])]
    graph = helper.make_graph(nodes, "shared_weight", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w, v])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def narrow_conv_resize(path, seed=0):
    """x [N, 3, 8, 8] -> Conv(2 output channels) -> Relu -> Resize(x2, float32 scales) -> Conv(8) -> GAP -> Flatten -> Gemm(4).

    The first conv has too few output channels for the speed heuristic (kept in float unless --include);
    Resize's `scales` input is float32-only in ONNX (stays float32 under --high-precision fp16)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32) * 0.4, "w_narrow"),
             numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3)).astype(np.float32) * 0.4, "w2"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "wfc"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "bfc")]
    nodes = [helper.make_node("Conv", ["x", "w_narrow"], ["c1"], name="narrow", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Resize", ["r1", "", "scales"], ["up"], name="resize", mode="nearest"),
             helper.make_node("Conv", ["up", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wfc", "bfc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def mixed_float16_island(path, seed=0):
    """float32 I/O, opset 13: Cast -> float16 Conv -> Cast -> float32 Conv (a float16 island in a float32 model)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float16), "w16"),
             numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.3).astype(np.float32), "w32")]
    nodes = [helper.make_node("Cast", ["x"], ["x16"], name="to16", to=TensorProto.FLOAT16),
             helper.make_node("Conv", ["x16", "w16"], ["y16"], name="conv16", pads=[1, 1, 1, 1]),
             helper.make_node("Cast", ["y16"], ["y32"], name="to32", to=TensorProto.FLOAT),
             helper.make_node("Conv", ["y32", "w32"], ["y"], name="conv32")]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
