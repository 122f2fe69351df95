"""A small stateful model for the evaluation-function tests: a recurrent cell with its state as input/output.

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

STREAMING = '''
import numpy as np


def streaming_accuracy(run, data):
    """Frames in file order, the state carried from one call to the next, as the model is deployed."""
    state, hits = None, 0
    for feeds, label in data.samples():
        if state is None:
            state = np.zeros_like(feeds["h"])
        logits, state = run({"x": feeds["x"], "h": state})
        hits += int(logits.argmax(1)[0] == label)
    return 100.0 * hits / len(data)
'''


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
    """The cell, a calibration stream (300 frames), a held-out stream (600), the streaming function's file and
    the entropy calibration folder."""
    import quant

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": recurrent_cell(folder / "cell.onnx"), "calibration": stream(folder / "cal.npz", 300, seed=1),
             "heldout": stream(folder / "held.npz", 600, seed=2), "streaming": folder / "streaming.py"}
    paths["streaming"].write_text(STREAMING)
    quant.calibrate(paths["model"], paths["calibration"], methods=("entropy",)).save(folder / "cal")
    paths["folder"] = folder / "cal"
    paths["int8"] = folder / "cal" / "model.int8.onnx"
    return paths
