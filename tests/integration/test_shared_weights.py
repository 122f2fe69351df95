"""A weight shared by uses whose output channels lie on different axes gets one per-tensor scale."""
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

import quant
from float_models import shared_weight


def _qdq_of(model, tensor):
    """(scale, axis, DQ output) of a weight stored as INT8 initializer '<tensor>_quantized' behind a DequantizeLinear."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == f"{tensor}_quantized")
    assert inits[dq.input[0]].dtype == np.int8
    axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
    return inits[dq.input[1]], axis, dq.output[0]


def test_shared_weight_scale_fits_every_use(tmp_path):
    path = shared_weight(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = quant.calibrate(str(path), str(tmp_path / "x.npy"), methods=("minmax",), batch_size=8)
    model = result.qdq_model()
    onnx.checker.check_model(model, full_check=True)
    w = numpy_helper.to_array(next(i for i in onnx.load(str(path)).graph.initializer if i.name == "W"))
    v = numpy_helper.to_array(next(i for i in onnx.load(str(path)).graph.initializer if i.name == "V"))

    # W: used as MatMul(x, W) (channels = columns) and MatMul(W, h) (channels = rows): one per-tensor scale
    scale, axis, dq = _qdq_of(model, "W")
    assert axis is None and scale.shape == ()
    assert scale == np.float32(np.float32(np.abs(w).max()) / 127)
    users = [n.name for n in model.graph.node if dq in n.input]
    assert sorted(users) == ["mm_left", "mm_right"]
    # every element of W, whichever use reads it, is within half a step of its INT8 value
    assert np.max(np.abs(w - np.round(w / scale) * scale)) <= scale / 2 + 1e-7

    # V, used once on the left of MatMul: per channel along its rows (its own output axis)
    scale_v, axis_v, _ = _qdq_of(model, "V")
    assert axis_v == 0 and scale_v.shape == (5,)
    np.testing.assert_array_equal(scale_v, (np.abs(v).max(axis=1).astype(np.float32) / 127).astype(np.float32))

    manifest = result.manifest("minmax")
    assert manifest["weights"]["W"]["axis"] is None and "different axes" in manifest["weights"]["W"]["per_tensor"]
    assert manifest["weights"]["V"]["axis"] == 0

    options = ort.SessionOptions()  # exact Q/DQ (ORT's own u8s8 kernels saturate on CPUs without VNNI)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    out = session.run(None, {"x": x})[0]
    sqnr = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference - out).astype(np.float64) ** 2))
    assert sqnr > 25.0


def test_per_channel_weight_axis_is_each_layers_output_axis(tmp_path):
    """Unshared weights keep per-channel scales along the output axis of their own use (numpy reference)."""
    path = shared_weight(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((16, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = quant.calibrate(str(path), str(tmp_path / "x.npy"), methods=("minmax",))
    result.save(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    layers = {entry["node"]: entry for entry in manifest["layers"]}
    assert layers["mm_v"]["weight"] == {"tensor": "V", "axis": 0}
    assert layers["mm_right"]["weight"] == {"tensor": "W", "axis": None}
