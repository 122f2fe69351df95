"""Models for the evaluation-function tests: a recurrent cell with its state as input/output, and a detector.

``h_out = tanh(x @ Wx + h @ Wh)``, ``logits = h_out @ Wo``: inputs ``x`` [N, 8] and ``h`` [N, 32], outputs
``logits`` [N, 2] and ``h_out`` [N, 32]. ``Wh`` is 1.3 x an orthogonal matrix, so an error in the state
grows while it is carried (as a voice-activity LSTM's does over a stream). The data files hold one stream of
frames ``x``, the FP32 state ``h`` before each frame (what per-sample scoring feeds) and ``label``, the FP32
model's streaming decision (so FP32 scores 100% both ways).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES, STATE = 8, 32

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "eval_fn"
STREAMING = EXAMPLES / "streaming.py"  # streaming_accuracy(run, data): the state carried, as deployed
DETECTION = EXAMPLES / "detection.py"  # mean_ap(run, data): threshold, NMS, AP at IoU 0.5


def _weights(seed: int = 0, radius: float = 1.3):
    rng = np.random.default_rng(seed)
    wx = (rng.standard_normal((FEATURES, STATE)) / np.sqrt(FEATURES)).astype(np.float32)
    orthogonal, _ = np.linalg.qr(rng.standard_normal((STATE, STATE)))
    wh = (radius * orthogonal).astype(np.float32)
    wo = rng.standard_normal((STATE, 2)).astype(np.float32)
    return wx, wh, wo


def recurrent_cell(path: Path, seed: int = 0) -> Path:
    wx, wh, wo = _weights(seed)
    nodes = [helper.make_node("MatMul", ["x", "Wx"], ["a"], name="input_proj"),
             helper.make_node("MatMul", ["h", "Wh"], ["b"], name="recurrent"),
             helper.make_node("Add", ["a", "b"], ["s"], name="sum"),
             helper.make_node("Tanh", ["s"], ["h_out"], name="tanh"),
             helper.make_node("MatMul", ["h_out", "Wo"], ["logits"], name="head")]
    graph = helper.make_graph(
        nodes, "cell", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES]),
                        helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", STATE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", STATE])],
        [numpy_helper.from_array(wx, "Wx"), numpy_helper.from_array(wh, "Wh"), numpy_helper.from_array(wo, "Wo")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def stream(path: Path, frames: int, seed: int, model_seed: int = 0) -> Path:
    """One stream of ``frames`` frames with the FP32 state before each and the FP32 streaming decision."""
    wx, wh, wo = _weights(model_seed)
    x = (0.2 * np.random.default_rng(seed).standard_normal((frames, FEATURES))).astype(np.float32)
    h = np.zeros((1, STATE), np.float32)
    states, labels = [], []
    for t in range(frames):
        states.append(h[0])
        h = np.tanh(x[t:t + 1] @ wx + h @ wh).astype(np.float32)
        labels.append(int((h @ wo)[0].argmax()))
    np.savez(path, x=x, h=np.asarray(states, np.float32), label=np.asarray(labels, np.int64))
    return path


def stateful_setup(folder: Path) -> dict[str, Path]:
    """The cell, a calibration stream (300 frames), a held-out stream (600), the streaming function's file
    (examples/eval_fn/streaming.py) and the entropy calibration folder."""
    import quant

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": recurrent_cell(folder / "cell.onnx"), "calibration": stream(folder / "cal.npz", 300, seed=1),
             "heldout": stream(folder / "held.npz", 600, seed=2), "streaming": STREAMING}
    quant.calibrate(paths["model"], paths["calibration"], methods=("entropy",)).save(folder / "cal")
    paths["folder"] = folder / "cal"
    paths["int8"] = folder / "cal" / "model.int8.onnx"
    return paths


ANCHORS = 8


def detector(path: Path, seed: int = 0) -> Path:
    """x [N, 16] -> boxes [N, 8, 4] (cx, cy, w, h) and scores [N, 8] (sigmoid): one Gemm, split and squashed."""
    rng = np.random.default_rng(seed)
    weight = (0.4 * rng.standard_normal((16, ANCHORS * 5))).astype(np.float32)
    bias = np.zeros((ANCHORS, 5), np.float32)
    bias[:, 0], bias[:, 1] = np.arange(ANCHORS) * 2.0, np.arange(ANCHORS) % 3 * 2.0  # centres on a grid
    bias[:, 2:4] = 2.0  # sizes about 2
    weight.reshape(16, ANCHORS, 5)[:, :, 4] *= 3  # scores spread over (0, 1)
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["raw"], name="head"),
             helper.make_node("Reshape", ["raw", "shape"], ["anchors"], name="reshape"),
             helper.make_node("Split", ["anchors", "sizes"], ["boxes", "logit"], axis=2, name="split"),
             helper.make_node("Squeeze", ["logit", "axis"], ["squeezed"], name="squeeze"),
             helper.make_node("Sigmoid", ["squeezed"], ["scores"], name="sigmoid")]
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias.reshape(-1), "B"),
             numpy_helper.from_array(np.array([-1, ANCHORS, 5], np.int64), "shape"),
             numpy_helper.from_array(np.array([4, 1], np.int64), "sizes"),
             numpy_helper.from_array(np.array([2], np.int64), "axis")]
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", ANCHORS, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", ANCHORS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def detection_data(model: Path, path: Path, samples: int, seed: int) -> Path:
    """Inputs ``x`` and ``gt_boxes`` [N, 8, 4] (x1, y1, x2, y2; -1 rows pad): the FP32 model's own detections
    after the example's threshold and NMS, so FP32 scores AP50 = 100."""
    import importlib.util

    import onnxruntime

    spec = importlib.util.spec_from_file_location("quant_example_detection", DETECTION)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x = np.random.default_rng(seed).standard_normal((samples, 16)).astype(np.float32)
    boxes, scores = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    truth = -np.ones((samples, ANCHORS, 4), np.float32)
    for i in range(samples):
        found, _ = example.detections(boxes[i], scores[i])
        truth[i, :len(found)] = found
    np.savez(path, x=x, gt_boxes=truth)
    return path
