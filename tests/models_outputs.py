"""Purpose-built models with several outputs, so tests can check which output a metric scores.

* ``features_then_logits``: an MLP trained with numpy on scikit-learn's digits; its outputs are
  ``features`` [N, 32] (the hidden ReLU layer) first and ``logits`` [N, 10] second.
* ``class_map``: an NCHW detector head: ``boxes`` [N, 4, H, W] (a regression) first and
  ``facemap`` [N, 2, H, W] (softmax over axis 1, a per-pixel class map, named so that only its values tell) second.
"""
from functools import lru_cache

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@lru_cache(maxsize=1)
def digits_split():
    """(train_x, train_y, calibration_x, heldout_x, heldout_y): a seeded split of sklearn's digits, x in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, calibration, heldout = order[:1000], order[1000:1200], order[1200:]
    return x[train], y[train], x[calibration], x[heldout], y[heldout]


@lru_cache(maxsize=1)
def _trained_mlp():
    """Weights of a 64-32-10 ReLU MLP trained by full-batch gradient descent on softmax cross-entropy."""
    train_x, train_y, *_ = digits_split()
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 32)) * np.sqrt(2 / 64)
    b1 = np.zeros(32)
    w2 = rng.standard_normal((32, 10)) * np.sqrt(1 / 32)
    b2 = np.zeros(10)
    x, onehot = train_x.astype(np.float64), np.eye(10)[train_y]
    for _ in range(400):
        hidden = np.maximum(x @ w1 + b1, 0)
        logits = hidden @ w2 + b2
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(x)
        grad_hidden = (grad @ w2.T) * (hidden > 0)
        w2 -= 0.5 * hidden.T @ grad
        b2 -= 0.5 * grad.sum(0)
        w1 -= 0.5 * x.T @ grad_hidden
        b1 -= 0.5 * grad_hidden.sum(0)
    return tuple(a.astype(np.float32) for a in (w1, b1, w2, b2))


def mlp_forward(x):
    """(features, logits) of the trained MLP in float64 numpy: the ground truth for tests."""
    w1, b1, w2, b2 = (a.astype(np.float64) for a in _trained_mlp())
    features = np.maximum(np.asarray(x, np.float64) @ w1 + b1, 0)
    return features, features @ w2 + b2


def features_then_logits(path):
    """x [N, 64] -> Gemm -> Relu = features [N, 32] -> Gemm = logits [N, 10]; outputs: features, logits."""
    w1, b1, w2, b2 = _trained_mlp()
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["features"], name="relu1"),
             helper.make_node("Gemm", ["features", "w2", "b2"], ["logits"], name="fc2")]
    graph = helper.make_graph(nodes, "features_then_logits",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 32]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return _save(graph, path)


def class_map(path, seed=0):
    """x [N, 3, H, W] -> Conv3x3(8) -> Relu -> Conv1x1(4) = boxes, Conv1x1(2) -> Softmax(axis=1) = facemap."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5, "w1"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32) * 0.5, "wbox"),
             numpy_helper.from_array(rng.standard_normal((2, 8, 1, 1)).astype(np.float32), "wcls")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "wbox"], ["boxes"], name="box_head"),
             helper.make_node("Conv", ["r1", "wcls"], ["cls"], name="cls_head"),
             helper.make_node("Softmax", ["cls"], ["facemap"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "class_map",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4, 12, 12]),
                               helper.make_tensor_value_info("facemap", TensorProto.FLOAT, ["N", 2, 12, 12])], inits)
    return _save(graph, path)
