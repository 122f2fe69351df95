"""Which output a metric scores, on purpose-built models with several outputs.

* features [N, 32] then logits [N, 10] (an MLP trained on digits): labels must score 'logits', and the
  printed top-1 must be the model's real accuracy (numpy ground truth), not output 0's.
* boxes [N, 4, H, W] then facemap [N, 2, H, W] (a class map): agreement is per pixel on axis 1, checked
  against numpy; the box regression gets no agreement number.
"""
import json

import numpy as np
import onnxruntime as ort
import pytest

import quant
from conftest import run_cli
from models_outputs import class_map, digits_split, features_then_logits, mlp_forward


def _emulated(path, x):
    """The INT8 model's outputs with Q/DQ computed in float (graph optimizations off), straight from ORT."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftl")
    _, _, calibration_x, heldout_x, heldout_y = digits_split()
    model = features_then_logits(root / "ftl.onnx")
    np.savez(root / "calibration.npz", x=calibration_x)
    np.savez(root / "heldout.npz", x=heldout_x, label=heldout_y)
    quant.calibrate(model, root / "calibration.npz", methods=("minmax",)).save(root / "cal")
    return {"model": model, "int8": root / "cal" / "model.int8.onnx", "heldout": root / "heldout.npz",
            "x": heldout_x, "y": heldout_y, "root": root}


def test_labels_score_the_logits_output_not_output_0(mlp):
    out = mlp["root"] / "eval.json"
    proc = run_cli(["eval", mlp["model"], mlp["int8"], "--data", mlp["heldout"], "--output-json", out])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    top1 = report["task"]["top1"]
    truth = 100.0 * np.mean(mlp_forward(mlp["x"])[1].argmax(1) == mlp["y"])
    assert truth > 95.0  # the model is a real classifier
    int8_truth = 100.0 * np.mean(_emulated(mlp["int8"], mlp["x"])[1].argmax(1) == mlp["y"])
    assert top1["output"] == "logits" and top1["class_axis"] == 1
    assert top1["fp32"] == pytest.approx(truth, abs=1e-9) and top1["int8"] == pytest.approx(int8_truth, abs=1e-9)
    assert top1["unit"] == "%" and top1["drop"] == pytest.approx(top1["fp32"] - top1["int8"]) and top1["drop_unit"] == "pp"
    # output 0 scored against the labels would give a number near chance: the old bug
    assert 100.0 * np.mean(mlp_forward(mlp["x"])[0][:, :10].argmax(1) == mlp["y"]) < 50.0
    assert "top1 scored output 'logits' [N, 10], classes on axis 1" in proc.stdout
    assert f"{truth:.2f}%" in proc.stdout
    # a row per output; the hidden features get no class agreement, with the reason
    assert set(report["outputs"]) == {"features", "logits"}
    assert report["outputs"]["features"]["agreement"] is None
    assert "not known to hold class scores" in report["outputs"]["features"]["agreement_basis"]
    assert report["outputs"]["logits"]["agreement"] is not None and report["outputs"]["logits"]["class_axis"] == 1
    rows = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith(("features ", "logits "))]
    assert rows == ["features", "logits"]


def test_output_name_and_ambiguous_labels(mlp):
    named = quant.evaluate(mlp["model"], mlp["int8"], mlp["heldout"], output_name="logits")
    assert named.task["top1"]["output"] == "logits" and named.task["top1"]["why"] == "named by the user"
    # labels 0..5: both outputs have more than 5 columns and neither has exactly 6: refuse, naming both
    few = mlp["root"] / "few.npy"
    np.save(few, np.minimum(mlp["y"], 5))
    proc = run_cli(["eval", mlp["model"], mlp["int8"], "--data", mlp["heldout"], "--labels", few])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error, hint = proc.stderr.strip().splitlines()
    assert error.startswith("Error: several outputs could hold the class scores") and "'features'" in error \
        and "'logits'" in error
    assert hint.startswith("Hint: ") and "--output-name" in hint
    proc = run_cli(["eval", mlp["model"], mlp["int8"], "--data", mlp["heldout"], "--labels", few,
                    "--output-name", "logits"])
    assert proc.returncode == 0 and "top1 scored output 'logits'" in proc.stdout
    proc = run_cli(["eval", mlp["model"], mlp["int8"], "--data", mlp["heldout"], "--output-name", "nosuch"])
    assert proc.returncode == 2 and "no output 'nosuch' (its outputs: features, logits)" in proc.stderr


def test_gate_metrics_name_their_output(mlp):
    truth = 100.0 * np.mean(mlp_forward(mlp["x"])[1].argmax(1) == mlp["y"])
    result = quant.gate(mlp["model"], mlp["int8"], mlp["heldout"], metric="top1", max_drop=1.0)
    assert result.checks[0].output == "logits" and result.fp32 == pytest.approx(truth, abs=1e-9)
    # SQNR of one output, computed here from the two models' logits
    sqnr = quant.gate(mlp["model"], mlp["int8"], mlp["heldout"], metric="sqnr@logits", min_value=10.0)
    fp32_logits = ort.InferenceSession(str(mlp["model"]), providers=["CPUExecutionProvider"]).run(
        None, {"x": mlp["x"]})[1].astype(np.float64)
    int8_logits = _emulated(mlp["int8"], mlp["x"])[1].astype(np.float64)
    expected = 10 * np.log10(np.sum(fp32_logits ** 2) / np.sum((int8_logits - fp32_logits) ** 2))
    assert sqnr.checks[0].output == "logits" and sqnr.int8 == pytest.approx(expected, rel=1e-6)
    # with two outputs and no name, SQNR does not guess (nor pool the outputs)
    proc = run_cli(["gate", mlp["model"], mlp["int8"], "--data", mlp["heldout"], "--metric", "sqnr",
                    "--min-value", "30"])
    assert proc.returncode == 2 and "does not know which output to score" in proc.stderr
    assert "--metric sqnr@logits" in proc.stderr
    # agreement with labels scores the labelled output
    agreement = quant.gate(mlp["model"], mlp["int8"], mlp["heldout"], metric="agreement", max_drop=5.0)
    assert agreement.checks[0].output == "logits" and agreement.checks[0].class_axis == 1


@pytest.fixture(scope="module")
def heatmap(tmp_path_factory):
    root = tmp_path_factory.mktemp("map")
    model = class_map(root / "map.onnx")
    rng = np.random.default_rng(3)
    np.savez(root / "calibration.npz", x=rng.standard_normal((32, 3, 12, 12)).astype(np.float32))
    held = rng.standard_normal((48, 3, 12, 12)).astype(np.float32)
    np.savez(root / "heldout.npz", x=held)
    quant.calibrate(model, root / "calibration.npz", methods=("minmax",)).save(root / "cal")
    return {"model": model, "int8": root / "cal" / "model.int8.onnx", "heldout": root / "heldout.npz", "x": held}


def test_class_map_agreement_is_per_pixel_on_axis_1(heatmap):
    report = quant.evaluate(heatmap["model"], heatmap["int8"], heatmap["heldout"])
    fp32 = ort.InferenceSession(str(heatmap["model"]), providers=["CPUExecutionProvider"]).run(None, {"x": heatmap["x"]})
    int8 = _emulated(heatmap["int8"], heatmap["x"])
    # pixels whose ReLU features are all 0 score 0.5/0.5 in FP32 and INT8 alike: no class, not counted
    both_tied = (fp32[1][:, 0] == fp32[1][:, 1]) & (int8[1][:, 0] == int8[1][:, 1])
    per_pixel = 100.0 * np.mean((fp32[1].argmax(1) == int8[1].argmax(1))[~both_tied])
    last_axis = 100.0 * np.mean(fp32[1].argmax(-1) == int8[1].argmax(-1))
    assert per_pixel != pytest.approx(last_axis)  # the axis matters on this model: the test can tell them apart
    prob = report.outputs["facemap"]
    assert prob["class_axis"] == 1 and prob["agreement"] == pytest.approx(per_pixel, abs=1e-9)
    assert "probabilities over axis 1" in prob["agreement_basis"]
    assert report.outputs["boxes"]["agreement"] is None  # a box regression has no classes
    text = report.format_text()
    assert f"{per_pixel:.2f}% (axis 1)" in text and "output 'boxes' [N, 4, 12, 12] is not known to hold class scores" in text
    # the gate scores the class map too, per pixel, and names it
    result = quant.gate(heatmap["model"], heatmap["int8"], heatmap["heldout"], metric="agreement", max_drop=50.0)
    assert result.checks[0].output == "facemap" and result.int8 == pytest.approx(per_pixel, abs=1e-9)


def test_class_axis_flag(heatmap):
    fp32 = ort.InferenceSession(str(heatmap["model"]), providers=["CPUExecutionProvider"]).run(None, {"x": heatmap["x"]})
    int8 = _emulated(heatmap["int8"], heatmap["x"])
    proc = run_cli(["eval", heatmap["model"], heatmap["int8"], "--data", heatmap["heldout"], "--output-name", "facemap",
                    "--class-axis", "-1", "--json"])
    assert proc.returncode == 0, proc.stderr
    prob = json.loads(proc.stdout)["outputs"]["facemap"]
    assert prob["class_axis"] == 3 and prob["agreement"] == pytest.approx(
        100.0 * np.mean(fp32[1].argmax(-1) == int8[1].argmax(-1)), abs=1e-9)
    proc = run_cli(["eval", heatmap["model"], heatmap["int8"], "--data", heatmap["heldout"], "--class-axis", "7"])
    assert proc.returncode == 2 and "--class-axis 7 does not fit" in proc.stderr
