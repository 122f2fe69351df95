"""The whole path on the bundled example: calibrate -> Q/DQ model -> evaluate, checked as a user would."""
import json

import numpy as np
import onnx
import pytest

import quant
from quant.qdq.cache import read_cache

METHODS = ("entropy", "minmax", "percentile", "mse")


@pytest.fixture(scope="module")
def calibrated(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "all"
    result = quant.calibrate(digits["model"], digits["calibration"], methods=METHODS)
    result.save(out)
    return result, out


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_every_method_within_one_point_of_fp32(calibrated, digits):
    result, out = calibrated
    for method in METHODS:
        report = quant.evaluate(digits["model"], out / method / "model.int8.onnx", digits["heldout"])
        top1 = report.task["top1"]
        assert top1["fp32"] > 97.0 and top1["unit"] == "%" and top1["drop_unit"] == "pp"
        assert top1["drop"] <= 1.0, (method, top1)
        assert report.runtime == "emulate" and "graph optimizations off" in report.runtime_description


def test_qdq_model_is_valid_and_tensorrt_shaped(calibrated):
    _, out = calibrated
    path = out / "entropy" / "model.int8.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    producers = _producers(model)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(weighted) == 7
    for node in weighted:
        act_dq = producers[node.input[0]]
        assert act_dq.op_type == "DequantizeLinear" and producers[act_dq.input[0]].op_type == "QuantizeLinear"
        assert inits[act_dq.input[1]].shape == () and inits[act_dq.input[2]].dtype == np.int8
        assert inits[act_dq.input[2]] == 0
        w_dq = producers[node.input[1]]  # weights: INT8 initializer -> DequantizeLinear (--weight-storage int8)
        assert w_dq.op_type == "DequantizeLinear" and inits[w_dq.input[0]].dtype == np.int8
        axis = next(a.i for a in w_dq.attribute if a.name == "axis")
        assert axis == 0
        assert inits[w_dq.input[1]].shape == (inits[w_dq.input[0]].shape[0],)
        if len(node.input) > 2:  # bias stays float, straight from an initializer
            assert node.input[2] in inits and node.input[2] not in producers
    outputs = {o.name for o in model.graph.output}
    assert all(producers[o].op_type not in ("QuantizeLinear", "DequantizeLinear") for o in outputs)
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert adds and all(any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                            for i in n.input) for n in adds)


def test_qdq_model_runs_in_onnxruntime(calibrated, digits):
    import onnxruntime as ort

    _, out = calibrated
    session = ort.InferenceSession(str(out / "mse" / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": np.load(digits["heldout"])["input"][:4]})[0]
    assert logits.shape == (4, 10) and np.all(np.isfinite(logits))


def test_cache_lines_decode_to_amax_over_127_from_quant_json(calibrated):
    _, out = calibrated
    for method in METHODS:
        manifest = json.loads((out / method / "quant.json").read_text())
        header, scales = read_cache(out / method / "calibration.cache")
        algo = "MinMaxCalibration" if method == "minmax" else "EntropyCalibration2"
        assert header == f"TRT-100300-{algo}" == manifest["calibration_cache"]["header"]
        assert set(scales) == set(manifest["activations"])
        for tensor, entry in manifest["activations"].items():
            assert scales[tensor] == float(np.float32(np.float32(entry["amax"]) / np.float32(127))) or \
                scales[tensor] == float(np.float32(entry["amax"] / 127))
            assert scales[tensor] == entry["scale"]


def test_manifest_names_every_unquantized_node_and_the_provenance(calibrated, digits):
    result, out = calibrated
    manifest = json.loads((out / "entropy" / "quant.json").read_text())
    assert manifest["model"]["sha256"] == result.model_sha256 and manifest["method"] == "entropy"
    assert manifest["data"]["samples"] == 200 and len(manifest["data"]["sha256"]) == 64
    nodes = {n.name for n in result.model.graph.node}
    covered = {l["node"] for l in manifest["layers"]} | {r["node"] for r in manifest["residual_adds"]} | \
        {u["node"] for u in manifest["unquantized"]}
    assert covered == nodes
    assert all(u["reason"] for u in manifest["unquantized"])
    assert {u["op_type"] for u in manifest["unquantized"]} >= {"Relu", "GlobalAveragePool", "Flatten"}
    assert set(manifest["weights"]) == {l["weight"]["tensor"] for l in manifest["layers"]}


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_scales_are_bit_identical_across_batch_sizes_and_order(digits, batch_size, calibrated, tmp_path):
    reference, _ = calibrated
    data = dict(np.load(digits["calibration"]))
    order = np.random.default_rng(batch_size).permutation(len(data["input"]))
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, input=data["input"][order], label=data["label"][order])
    for source in (digits["calibration"], shuffled):
        result = quant.calibrate(digits["model"], source, methods=METHODS, batch_size=batch_size)
        for method in METHODS:
            assert result.activation_amax[method] == reference.activation_amax[method]
        for tensor, hist in result.histograms.items():
            assert hist == reference.histograms[tensor]


def test_recalibrate_from_saved_histograms_equals_direct_calibration(calibrated, digits, tmp_path):
    result, out = calibrated
    again = quant.recalibrate(out / "entropy", ["mse", "percentile"])
    for method in ("mse", "percentile"):
        assert again.activation_amax[method] == result.activation_amax[method]
    again.save(tmp_path / "re")
    a = onnx.load(str(out / "mse" / "model.int8.onnx")).SerializeToString()
    b = onnx.load(str(tmp_path / "re" / "mse" / "model.int8.onnx")).SerializeToString()
    assert a == b


def test_two_runs_write_byte_identical_artifacts(digits, tmp_path):
    for name in ("a", "b"):
        quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",)).save(tmp_path / name)
    for artifact in ("model.int8.onnx", "calibration.cache", "quant.json", "histograms.npz"):
        assert (tmp_path / "a" / artifact).read_bytes() == (tmp_path / "b" / artifact).read_bytes(), artifact


def test_ort_int8_mode_is_labelled_and_reports_its_kernels(calibrated, digits):
    _, out = calibrated
    report = quant.evaluate(digits["model"], out / "entropy" / "model.int8.onnx", digits["heldout"], runtime="ort-int8")
    assert report.runtime == "ort-int8"
    assert any("integer kernels" in note for note in report.notes)
    assert report.to_json()["runtime"]["int8"] == "ort-int8"


def test_automatic_batch_size_follows_the_memory_budget_and_changes_nothing(digits, calibrated):
    reference, _ = calibrated
    small = quant.calibrate(digits["model"], digits["calibration"], methods=METHODS, memory_budget_mb=0.05)
    large = quant.calibrate(digits["model"], digits["calibration"], methods=METHODS)
    assert small.data["batches"] > large.data["batches"] >= 200 / 64
    assert small.activation_amax == large.activation_amax == reference.activation_amax
