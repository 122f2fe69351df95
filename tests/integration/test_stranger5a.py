"""Models and data nobody on the team made (fifth stranger round, models): the artifacts checked by hand against
numpy on the model's own tensors and onnx.numpy_helper on the written model."""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bad_inputs.cases_stranger4b import info as _info, save_model as _save
from bad_inputs.cases_stranger5a import if_model
from conftest import run_cli


def _calibrate(tmp_path, model, x, *extra, name="x.npy"):
    np.save(tmp_path / name, x)
    proc = run_cli(["calibrate", model, "--data", tmp_path / name, "--output", tmp_path / "cal", *extra])
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "cal", proc


def test_convs_inside_an_if_are_named_as_left_in_float(tmp_path):
    """Before: 'weighted ops left in float: 0' and quant.json named only the If ('no Q/DQ for this op type'): the two
    Convs of its branches ran in float and no output said so."""
    model = if_model(tmp_path / "if.onnx")
    x = np.random.default_rng(1).normal(size=(10, 3, 6, 6)).astype(np.float32)
    cal, proc = _calibrate(tmp_path, model, x, "--batch-size", "1")
    assert "quantized layers: 1, residual Adds: 0, weighted ops left in float: 2" in proc.stdout
    manifest = json.loads((cal / "quant.json").read_text())
    assert [layer["node"] for layer in manifest["layers"]] == ["conv1"]
    inner = {u["node"]: u["reason"] for u in manifest["unquantized"] if u["op_type"] == "Conv"}
    assert set(inner) == {"then_conv", "else_conv"}
    assert all("inside a subgraph of If 'branch'" in reason for reason in inner.values())
    written = onnx.load(str(cal / "model.int8.onnx"))
    branches = [a.g for n in written.graph.node if n.op_type == "If" for a in n.attribute]
    assert all(n.op_type == "Conv" for g in branches for n in g.node)  # really left in float: no Q/DQ in there


def unfolded_model(path):
    """x [N, 3, 6, 6] -> Conv(x, Identity(Wc)) -> GlobalAveragePool -> Flatten -> MatMul(f, Transpose(Wl)) -> y [N, 64],
    as exporters write it without constant folding (Wl is a torch Linear weight [out, in])."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Identity", ["Wc"], ["Wc_id"], name="identity"),
             helper.make_node("Conv", ["x", "Wc_id"], ["c"], name="conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Transpose", ["Wl"], ["Wl_t"], name="transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["f", "Wl_t"], ["y"], name="linear")]
    weights = {"Wc": rng.normal(size=(256, 3, 3, 3)).astype(np.float32),
               "Wl": rng.normal(size=(64, 256)).astype(np.float32)}
    return _save(nodes, [_info("x", ["N", 3, 6, 6])], [_info("y", ["N", 64])], weights, path), weights


def test_weights_behind_identity_and_transpose_are_quantized_per_channel(tmp_path):
    """Before: the Conv was left in float ('weight is not a constant') and Transpose(Wl) was calibrated as an
    activation: one per-tensor scale, its amax clipped by entropy below max |w|, a 'Wl_t' line in the cache."""
    model, weights = unfolded_model(tmp_path / "unfolded.onnx")
    x = np.random.default_rng(3).normal(size=(64, 3, 6, 6)).astype(np.float32)
    cal, proc = _calibrate(tmp_path, model, x)
    assert "quantized layers: 2, residual Adds: 0, weighted ops left in float: 0" in proc.stdout
    manifest = json.loads((cal / "quant.json").read_text())
    assert set(manifest["activations"]) == {"x", "f"}
    cache = (cal / "calibration.cache").read_text().splitlines()
    assert sorted(line.split(": ")[0] for line in cache[1:]) == ["f", "x"]
    written = onnx.load(str(cal / "model.int8.onnx"))
    arrays = {i.name: numpy_helper.to_array(i) for i in written.graph.initializer}
    nodes = {n.name: n for n in written.graph.node}
    for layer, (array, axis, over) in {"conv": (weights["Wc"], 0, (1, 2, 3)),
                                       "linear": (weights["Wl"].T, 1, (0,))}.items():
        dq = next(n for n in written.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == nodes[layer].input[1])
        assert next(a.i for a in dq.attribute if a.name == "axis") == axis
        expected = (np.abs(array).max(axis=over) / np.float32(127)).astype(np.float32)
        assert np.array_equal(arrays[dq.input[1]], expected)  # per output channel, max |w| / 127, bit for bit
        q = arrays[dq.input[0]]
        assert q.dtype == np.int8 and np.array_equal(q, np.clip(np.round(array / np.expand_dims(expected, over)), -127, 127))
        assert not np.any(arrays[dq.input[2]])
    assert "Wl" not in arrays and "Wc" not in arrays  # the float weights are not carried along


def test_class_indices_get_no_agreement_and_the_worst_samples_come_from_the_scores(tmp_path):
    """logits [N, 4, 5] -> ArgMax -> cls [N, 4] int64. Before: eval printed 'cls [N, 4] 9x.xx% (axis 1)' (an argmax
    over the 4 class indices of a sample) and listed the worst samples 'by SQNR of output cls' (integers, whose SQNR
    it prints as n/a); with labels 0..3, top-1 scored that argmax of indices."""
    import onnxruntime as ort

    from bad_inputs.cases_stranger5a import calibrated_token_classes

    model, int8, _ = calibrated_token_classes(tmp_path)
    x = np.random.default_rng(4).normal(size=(60, 4, 3)).astype(np.float32)
    np.save(tmp_path / "held.npy", x)
    proc = run_cli(["eval", model, int8, "--data", tmp_path / "held.npy", "--output-json", tmp_path / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    outputs = report["outputs"] if "outputs" in report else report
    assert outputs["cls"]["agreement"] is None
    row = next(line for line in proc.stdout.splitlines() if line.startswith("cls "))
    assert "%" not in row
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # --runtime emulate
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]
    out = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]
    ref, out = ref.reshape(60, -1).astype(np.float64), out.reshape(60, -1).astype(np.float64)
    sqnr = 10 * np.log10(np.sum(ref ** 2, axis=1) / np.sum((out - ref) ** 2, axis=1))
    worst = np.argsort(sqnr, kind="stable")[:5]
    assert f"worst samples by SQNR of output 'logits': #{worst[0]} ({sqnr[worst[0]]:.1f} dB)" in proc.stdout
    assert [s["index"] for s in report["worst_samples"]] == worst.tolist()


def test_float16_scales_below_the_normal_range_never_clip_the_largest_value(tmp_path):
    """A float16 Conv whose output channels have max |w| from 2.5e-5 to 2.5, and an input of amax ~0.004: their
    scales fall below float16's normal range (2**-14), where rounding to nearest moved them by up to 10%. Before:
    channel 0's scale was 1.79e-07 for max|w|/127 = 1.99e-07, and its largest weight dequantized 9.9% short (14
    steps of its scale): every value must stay within half a step of the float16 weight, and the input's amax must fit."""
    rng = np.random.default_rng(9)
    w = (rng.normal(size=(16, 8, 3, 3)) * np.geomspace(1e-5, 1, 16)[:, None, None, None]).astype(np.float16)
    model = _save([helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1] * 4)],
                  [_info("x", ["N", 8, 6, 6], onnx.TensorProto.FLOAT16)],
                  [_info("y", ["N", 16, 6, 6], onnx.TensorProto.FLOAT16)], {"W": w}, tmp_path / "fp16.onnx")
    x = (rng.normal(size=(20, 8, 6, 6)) * 1e-3).astype(np.float16)
    cal, _ = _calibrate(tmp_path, model, x)
    written = onnx.load(str(cal / "model.int8.onnx"))
    arrays = {i.name: numpy_helper.to_array(i) for i in written.graph.initializer}
    dq = next(n for n in written.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in arrays)
    q, scale = arrays[dq.input[0]], arrays[dq.input[1]]
    assert scale.dtype == np.float16
    w32, s32 = w.astype(np.float64), scale.astype(np.float64)
    top = np.abs(w32).max(axis=(1, 2, 3))
    error = np.abs(q.astype(np.float64) * s32[:, None, None, None] - w32).max(axis=(1, 2, 3))
    assert np.all(error <= s32 / 2 * (1 + 1e-6)), (error / s32).round(2).tolist()
    assert np.all(np.abs(s32 - top / 127) <= np.spacing(np.float16(top / 127)).astype(np.float64))  # one float16 step
    normal = top / 127 >= 2.0 ** -14
    assert np.array_equal(scale[normal], (top[normal] / 127).astype(np.float32).astype(np.float16))  # nearest, as before
    quantize = next(n for n in written.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    amax = json.loads((cal / "quant.json").read_text())["activations"]["x"]["amax"]
    assert amax < 127 * 2.0 ** -14 and float(arrays[quantize.input[1]]) * 127.5 >= amax


def test_metric_at_an_output_named_as_tf2onnx_and_torch_name_them(tmp_path):
    """Outputs 'logits:0' (tf2onnx) and '/head/Gemm_output_0' (torch). Before: --metric sqnr@logits:0 was taken for
    a user metric 'sqnr@logits' in module '0' ("no module named 'sqnr@logits'"), although eval's own note suggests
    '--metric agreement@NAME'; '/' in the name did the same."""
    rng = np.random.default_rng(5)
    weights = {"W": rng.normal(size=(16, 8)).astype(np.float32), "W2": rng.normal(size=(8, 4)).astype(np.float32)}
    model = _save([helper.make_node("MatMul", ["x", "W"], ["/head/Gemm_output_0"], name="head"),
                   helper.make_node("MatMul", ["/head/Gemm_output_0", "W2"], ["logits:0"], name="cls_head")],
                  [_info("x", ["N", 16])], [_info("/head/Gemm_output_0", ["N", 8]), _info("logits:0", ["N", 4])],
                  weights, tmp_path / "named.onnx")
    x = rng.normal(size=(48, 16)).astype(np.float32)
    cal, _ = _calibrate(tmp_path, model, x)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for name in ("logits:0", "/head/Gemm_output_0"):
        ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run([name], {"x": x})[0]
        out = ort.InferenceSession(str(cal / "model.int8.onnx"), options,
                                   providers=["CPUExecutionProvider"]).run([name], {"x": x})[0]
        ref, out = ref.astype(np.float64), out.astype(np.float64)
        sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((out - ref) ** 2))
        proc = run_cli(["gate", model, cal / "model.int8.onnx", "--data", tmp_path / "x.npy",
                        "--metric", f"sqnr@{name}", "--min-value", "10", "--output-json", tmp_path / "gate.json"])
        assert proc.returncode == 0, proc.stderr
        assert f"PASS: sqnr@{name} FP32 n/a, INT8 {sqnr:.4f} dB" in proc.stdout
        assert f"sqnr scored output '{name}' (named by the user)" in proc.stdout


def test_report_without_labels_has_no_empty_task_table(tmp_path):
    """Before: report.md of a folder eval'd without labels held a '| metric | output | FP32 | INT8 | drop |' header
    with no row under it. The output table it keeps gives eval.json's numbers."""
    from bad_inputs.cases_stranger5a import calibrated_token_classes

    model, int8, _ = calibrated_token_classes(tmp_path)
    cal = int8.parent
    proc = run_cli(["eval", model, int8, "--data", tmp_path / "cal.npy", "--output-json", cal / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    assert run_cli(["report", cal]).returncode == 0
    text = (cal / "report.md").read_text()
    assert "| metric | output |" not in text
    logits = json.loads((cal / "eval.json").read_text())["outputs"]["logits"]
    assert f"| `logits` | \\[N\\, 4\\, 5\\] | n/a | {logits['cosine']:.5f} | {logits['sqnr_db']:.2f} |" in text


def test_channels_on_the_wrong_side_get_the_layout_hint(tmp_path):
    """An NCHW model given NHWC arrays, an NHWC model given an image folder (NCHW by default). Before: 'Hint: resize
    the data (for image folders: --resize H,W) to the model's input size', though the size was right; the hint's
    fix (--layout NHWC) then calibrates the NHWC model with the pixels in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng(6)
    conv = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    nchw = _save([helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], [_info("x", ["N", 3, 8, 8])],
                 [_info("y", ["N", 8, 6, 6])], {"W": conv}, tmp_path / "nchw.onnx")
    np.save(tmp_path / "nhwc.npy", rng.normal(size=(6, 8, 8, 3)).astype(np.float32))
    proc = run_cli(["calibrate", nchw, "--data", tmp_path / "nhwc.npy", "--output", tmp_path / "out"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[1] == ("Hint: the samples are channels-last (NHWC) and the model takes NCHW: "
                                           "transpose the arrays (np.transpose(x, (0, 3, 1, 2))), or for an image "
                                           "folder drop --layout NHWC (NCHW is the default)")
    nhwc = _save([helper.make_node("Transpose", ["x"], ["xt"], name="to_nchw", perm=[0, 3, 1, 2]),
                  helper.make_node("Conv", ["xt", "W"], ["y"], name="conv")], [_info("x", ["N", 8, 8, 3])],
                 [_info("y", ["N", 8, 6, 6])], {"W": conv}, tmp_path / "nhwc.onnx")
    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    args = ["calibrate", nhwc, "--data", tmp_path / "images", "--output", tmp_path / "out"]
    proc = run_cli(args)
    assert proc.returncode == 2
    assert "--layout NHWC" in proc.stderr.splitlines()[1]
    proc = run_cli(args + ["--layout", "NHWC", "--method", "minmax"])
    assert proc.returncode == 0, proc.stderr
    xt = json.loads((tmp_path / "out" / "quant.json").read_text())["activations"]["xt"]
    pixels = np.stack([np.asarray(Image.open(tmp_path / "images" / f"{i}.png")) for i in range(4)]) / 255.0
    assert xt["amax"] == np.float32(pixels.max())


def test_weights_listed_as_graph_inputs_are_not_kept_in_float_beside_their_int8_copy(tmp_path):
    """IR 6, every initializer also a graph input (torch's keep_initializers_as_inputs, old model zoos). Before:
    model.int8.onnx kept the float weight (an input nothing read any more) beside its INT8 copy: 2.95 MB for a
    2.36 MB FP32 model, with an input 'W' whose value no longer changed anything."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(128, 128, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1] * 4)], "inputs",
                              [_info("x", ["N", 128, 4, 4]), _info("W", [128, 128, 3, 3])],
                              [_info("y", ["N", 128, 4, 4])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp_path / "inputs.onnx"))
    cal, _ = _calibrate(tmp_path, tmp_path / "inputs.onnx", rng.normal(size=(8, 128, 4, 4)).astype(np.float32))
    written = onnx.load(str(cal / "model.int8.onnx"))
    assert [v.name for v in written.graph.input] == ["x"]
    arrays = {i.name: numpy_helper.to_array(i) for i in written.graph.initializer}
    assert "W" not in arrays and not any(a.dtype == np.float32 and a.size == w.size for a in arrays.values())
    assert (cal / "model.int8.onnx").stat().st_size < 0.3 * (tmp_path / "inputs.onnx").stat().st_size
    q = next(a for a in arrays.values() if a.dtype == np.int8 and a.shape == w.shape)
    scale = (np.abs(w).max(axis=(1, 2, 3)) / np.float32(127)).astype(np.float32)
    assert np.array_equal(q, np.clip(np.round(w / scale[:, None, None, None]), -127, 127))


def test_uint8_images_are_fed_and_recorded_as_stored(tmp_path):
    """A model taking raw uint8 pixels, --dtype uint8: the pixels go in as stored (scale, mean and std are for float
    dtypes). Before: quant.json recorded the default scale 1/255 that was never applied; a grayscale folder for it
    got 'Hint: resize the data' instead of --color."""
    from PIL import Image

    from bad_inputs.cases_stranger5a import uint8_image_model

    model, images = uint8_image_model(tmp_path)
    proc = run_cli(["calibrate", model, "--data", images, "--dtype", "uint8", "--method", "minmax",
                    "--output", tmp_path / "cal"])
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "cal" / "quant.json").read_text())
    assert manifest["data"]["preprocess"]["scale"] == 1.0 and manifest["data"]["preprocess"]["dtype"] == "uint8"
    pixels = np.stack([np.asarray(Image.open(images / f"{i}.png")) for i in range(4)])
    assert manifest["activations"]["xf"]["amax"] == float(pixels.max())
    proc = run_cli(["calibrate", model, "--data", images, "--dtype", "uint8", "--color", "L", "--output", tmp_path / "o"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[1] == ("Hint: the model takes 3 channel(s), the samples have 1: for an image "
                                           "folder use --color RGB (or BGR)")


def test_a_model_input_named_label_is_fed_by_eval_as_by_calibrate(tmp_path):
    """Inputs x [N, 16] and label [N] int64 (a class-conditional model: Gather of a class embedding). calibrate fed
    'label'; before, eval and gate took it for the labels and refused: "the data has no array for model input
    'label' (data keys: x)", with a hint to map it to a key that the message said did not exist."""
    import onnxruntime as ort

    rng = np.random.default_rng(8)
    weights = {"E": rng.normal(size=(10, 16)).astype(np.float32), "W": rng.normal(size=(16, 8)).astype(np.float32)}
    model = _save([helper.make_node("Gather", ["E", "label"], ["e"], name="embed"),
                   helper.make_node("Add", ["x", "e"], ["h"], name="add"),
                   helper.make_node("MatMul", ["h", "W"], ["y"], name="mm")],
                  [_info("x", ["N", 16]), _info("label", ["N"], onnx.TensorProto.INT64)], [_info("y", ["N", 8])],
                  weights, tmp_path / "conditional.onnx")
    feeds = {"x": rng.normal(size=(20, 16)).astype(np.float32), "label": rng.integers(0, 10, 20)}
    np.savez(tmp_path / "data.npz", **feeds)
    proc = run_cli(["calibrate", model, "--data", tmp_path / "data.npz", "--output", tmp_path / "cal"])
    assert proc.returncode == 0, proc.stderr
    int8 = tmp_path / "cal" / "model.int8.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0].astype(np.float64)
    out = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((out.astype(np.float64) - ref) ** 2))
    proc = run_cli(["gate", model, int8, "--data", tmp_path / "data.npz", "--metric", "sqnr", "--min-value", "20"])
    assert proc.returncode == 0, proc.stderr
    assert f"INT8 {sqnr:.4f} dB" in proc.stdout
    proc = run_cli(["eval", model, int8, "--data", tmp_path / "data.npz"])
    assert proc.returncode == 0, proc.stderr
    assert f"{sqnr:.2f}" in next(line for line in proc.stdout.splitlines() if line.startswith("y "))
