"""Models for the accuracy/speed tests and benchmarks (onnx.helper only, no torch): a softmax-fed MatMul and a
BERT-style encoder."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def softmax_probs(rows, width=40, seed=0):
    """Rows of softmax probabilities (a few near 1, most tiny): entropy clips these hard."""
    logits = np.random.default_rng(seed).standard_normal((rows, width)) * 3
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def probs_matmul(path, width=40, seed=0):
    """probs [N, width] -> MatMul [width, 16] -> Relu -> MatMul [16, 4] -> y [N, 4]."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((width, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["probs", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "probs_matmul",
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return _save(graph, path)


def bert_encoder(path, layers=6, hidden=256, heads=4, ffn=None, seq=None, seed=0):
    """x [N, seq, hidden] (token embeddings) -> ``layers`` post-LN encoder blocks (self-attention with
    Softmax, erf GELU feed-forward, residual Adds, LayerNormalization) -> y [N, seq, hidden]."""
    rng = np.random.default_rng(seed)
    ffn = ffn or 4 * hidden
    head = hidden // heads
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def linear(prefix, x, n_in, n_out):
        w = const(f"{prefix}.weight", rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        b = const(f"{prefix}.bias", rng.standard_normal(n_out) * 0.02)
        nodes.append(helper.make_node("MatMul", [x, w], [f"{prefix}.mm"], name=f"{prefix}/MatMul"))
        nodes.append(helper.make_node("Add", [f"{prefix}.mm", b], [f"{prefix}.out"], name=f"{prefix}/Add"))
        return f"{prefix}.out"

    inits.append(numpy_helper.from_array(np.array([0, 0, heads, head], np.int64), "split_shape"))
    inits.append(numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "merge_shape"))
    const("scale", 1.0 / np.sqrt(head))
    const("sqrt2", np.sqrt(2.0))
    const("one", 1.0)
    const("half", 0.5)
    x = "x"
    for layer in range(layers):
        p = f"layer{layer}"
        qkv = []
        for part in ("query", "key", "value"):
            y = linear(f"{p}.{part}", x, hidden, hidden)
            nodes.append(helper.make_node("Reshape", [y, "split_shape"], [f"{p}.{part}.r"], name=f"{p}.{part}/Reshape"))
            perm = [0, 2, 3, 1] if part == "key" else [0, 2, 1, 3]
            nodes.append(helper.make_node("Transpose", [f"{p}.{part}.r"], [f"{p}.{part}.t"], name=f"{p}.{part}/T", perm=perm))
            qkv.append(f"{p}.{part}.t")
        nodes += [helper.make_node("MatMul", qkv[:2], [f"{p}.scores"], name=f"{p}.attn/QK"),
                  helper.make_node("Mul", [f"{p}.scores", "scale"], [f"{p}.scaled"], name=f"{p}.attn/Scale"),
                  helper.make_node("Softmax", [f"{p}.scaled"], [f"{p}.probs"], name=f"{p}.attn/Softmax", axis=-1),
                  helper.make_node("MatMul", [f"{p}.probs", qkv[2]], [f"{p}.ctx"], name=f"{p}.attn/PV"),
                  helper.make_node("Transpose", [f"{p}.ctx"], [f"{p}.ctx.t"], name=f"{p}.attn/T", perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", [f"{p}.ctx.t", "merge_shape"], [f"{p}.ctx.m"], name=f"{p}.attn/Merge")]
        attn = linear(f"{p}.attn.out", f"{p}.ctx.m", hidden, hidden)
        x = _residual_norm(nodes, const, f"{p}.ln1", attn, x, hidden)
        h = linear(f"{p}.ffn.in", x, hidden, ffn)
        nodes += [helper.make_node("Div", [h, "sqrt2"], [f"{p}.g1"], name=f"{p}.gelu/Div"),
                  helper.make_node("Erf", [f"{p}.g1"], [f"{p}.g2"], name=f"{p}.gelu/Erf"),
                  helper.make_node("Add", [f"{p}.g2", "one"], [f"{p}.g3"], name=f"{p}.gelu/Add"),
                  helper.make_node("Mul", [h, f"{p}.g3"], [f"{p}.g4"], name=f"{p}.gelu/Mul"),
                  helper.make_node("Mul", [f"{p}.g4", "half"], [f"{p}.gelu"], name=f"{p}.gelu/Half")]
        out = linear(f"{p}.ffn.out", f"{p}.gelu", ffn, hidden)
        x = _residual_norm(nodes, const, f"{p}.ln2", out, x, hidden)
    nodes.append(helper.make_node("Identity", [x], ["y"], name="output"))
    dims = ["N", seq if seq else "S", hidden]
    graph = helper.make_graph(nodes, "bert_encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)
    return _save(graph, path)


def _residual_norm(nodes, const, prefix, branch, skip, hidden):
    nodes.append(helper.make_node("Add", [branch, skip], [f"{prefix}.sum"], name=f"{prefix}/Residual"))
    gamma = const(f"{prefix}.gamma", np.ones(hidden))
    beta = const(f"{prefix}.beta", np.zeros(hidden))
    nodes.append(helper.make_node("LayerNormalization", [f"{prefix}.sum", gamma, beta], [f"{prefix}.out"],
                                  name=f"{prefix}/LayerNorm", axis=-1, epsilon=1e-5))
    return f"{prefix}.out"
