"""--eval-fn / eval_fn=: a user evaluation function that runs the model itself (state carried, NMS, perplexity).

The acceptance story: a recurrent cell scored per sample with the FP32 state loses a third of a point in
INT8, while streamed as deployed (its own state carried) it loses about six, so the per-sample gate passes
a model that fails in use and the gate with --eval-fn fails it.
"""
import json
import xml.etree.ElementTree as ET

import jsonschema
import numpy as np
import pytest

import quant
from conftest import run_cli
from models_evalfn import stateful_setup
from quant.schemas import load_schema


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    return stateful_setup(tmp_path_factory.mktemp("cell"))


def _gate(cell, *extra):
    return run_cli(["gate", cell["model"], cell["int8"], "--data", cell["heldout"], "--labels", "label", *extra])


def test_streaming_gate_fails_where_the_per_sample_gate_passes(cell, tmp_path):
    per_sample = _gate(cell, "--metric", "top1@logits", "--max-drop", "1", "--output-json", tmp_path / "p.json")
    assert per_sample.returncode == 0, per_sample.stdout + per_sample.stderr
    streaming = _gate(cell, "--eval-fn", f"{cell['streaming']}:streaming_accuracy", "--max-drop", "1",
                      "--metric", "top1@logits", "--max-drop", "1",
                      "--output-json", tmp_path / "g.json", "--junit", tmp_path / "g.xml")
    assert streaming.returncode == 1, streaming.stdout + streaming.stderr
    assert streaming.stdout.startswith(f"FAIL: {cell['streaming']}:streaming_accuracy FP32 100.0000, INT8 ")

    document = json.loads((tmp_path / "g.json").read_text())
    jsonschema.Draft202012Validator(load_schema("gate")).validate(document)
    by_source = {c["source"]: c for c in document["checks"]}
    user, top1 = by_source["evaluation function"], by_source["metric"]
    assert user["metric"].endswith("streaming.py:streaming_accuracy") and user["output"] is None
    assert user["fp32"] == 100.0 and not user["passed"] and user["drop"] > 3  # the real, streaming drop
    assert top1["passed"] and 0 < top1["drop"] < 1  # per sample: within a point
    assert top1["drop"] == json.loads((tmp_path / "p.json").read_text())["checks"][0]["drop"]
    # the per-sample top-1 and the streaming score differ by much more than rounding
    assert user["drop"] > 5 * top1["drop"]

    suite = ET.parse(tmp_path / "g.xml").getroot().find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {user["metric"], "top1@logits"}
    assert cases[user["metric"]].find("failure") is not None and cases["top1@logits"].find("failure") is None


def test_eval_prints_and_records_fp32_and_int8_scores(cell, tmp_path):
    out = tmp_path / "eval.json"
    proc = run_cli(["eval", cell["model"], cell["int8"], "--data", cell["heldout"], "--labels", "label",
                    "--eval-fn", f"{cell['streaming']}:streaming_accuracy", "--output-json", out])
    assert proc.returncode == 0, proc.stderr
    document = json.loads(out.read_text())
    jsonschema.Draft202012Validator(load_schema("eval")).validate(document)
    (row,) = document["user_evaluation"]
    assert row["score"] is None and row["higher_is_better"] and row["fp32"] == 100.0
    assert row["drop"] == pytest.approx(100.0 - row["int8"]) and row["drop"] > 3
    header = proc.stdout.splitlines().index(next(l for l in proc.stdout.splitlines()
                                                 if l.startswith("evaluation function ")))
    line = proc.stdout.splitlines()[header + 1]
    assert line.split()[0].endswith("streaming.py:streaming_accuracy")  # a long path is cut on its left
    assert line.split()[1:4] == ["100", f"{row['int8']:.6g}", f"{row['drop']:.4g}"] and "higher is better" in line
    assert document["task"]["top1"]["drop"] < 1  # the per-sample top-1 of the same run


def _streaming_dict(calls):
    """A Python-API evaluation function returning named scores; counts its calls by model."""

    def evaluate(run, data):
        calls.append(run.model)
        state, hits, margins = None, 0, []
        for feeds, label in data.samples():
            state = np.zeros((1, 32)) if state is None else state  # float64: cast to the input's float32
            logits, state = run({"x": feeds["x"], "h": state})
            hits += int(logits.argmax(1)[0] == label)
            margins.append(abs(float(logits[0, 1] - logits[0, 0])))
        return {"accuracy": 100.0 * hits / len(data), "error_rate": 100.0 - 100.0 * hits / len(data)}

    evaluate.higher_is_better = {"accuracy": True, "error_rate": False}
    return evaluate


def test_python_api_named_scores_and_directions(cell):
    calls = []
    function = _streaming_dict(calls)
    with pytest.raises(quant.QuantError, match="returned 2 scores .*accuracy, error_rate.*name the one"):
        quant.gate(cell["model"], cell["int8"], cell["heldout"], eval_fn=function, max_drop=1.0)
    calls.clear()
    result = quant.gate(cell["model"], cell["int8"], cell["heldout"], checks=[
        {"eval_fn": f"{cell['streaming']}:streaming_accuracy", "max_drop": 10.0},
        {"eval_fn": (function, "accuracy"), "max_drop": 1.0},
        {"eval_fn": (function, "error_rate"), "max_drop": 1.0},
    ])
    assert not result and [c.passed for c in result.checks] == [True, False, False]
    assert calls == ["FP32", "INT8"]  # two scores of one function: one call per model
    check = result.checks[2]
    assert check.metric == "evaluate@error_rate" and check.fp32 == 0.0 and check.int8 > 3  # lower is better
    assert check.drop == pytest.approx(check.int8) and check.drop == pytest.approx(result.checks[1].drop)
    report = quant.evaluate(cell["model"], cell["int8"], cell["heldout"], labels="label", eval_fn=function)
    rows = {row["score"]: row for row in report.user_scores}
    assert rows["accuracy"]["higher_is_better"] and not rows["error_rate"]["higher_is_better"]
    assert rows["accuracy"]["drop"] == pytest.approx(rows["error_rate"]["drop"]) and rows["accuracy"]["drop"] > 3


def test_sensitivity_calls_the_function_once_per_candidate(cell):
    calls = []
    report = quant.sensitivity(cell["model"], cell["folder"], cell["heldout"], eval_fn=(_streaming_dict(calls), "accuracy"))
    layers = len(report.layers)
    assert layers == 3  # input_proj, recurrent, head
    assert calls == ["FP32"] + ["INT8"] * (1 + 2 * layers)  # all quantized, then only-this / all-but-this per layer
    assert report.fp32 == 100.0 and report.all_quantized < 97
    assert report.output is None and "evaluation function" in report.notes[0]


def test_fallback_keeps_layers_in_float_until_the_stream_passes(cell, tmp_path):
    proc = run_cli(["fallback", cell["model"], "--calibration", cell["folder"], "--data", cell["heldout"],
                    "--eval-fn", f"{cell['streaming']}:streaming_accuracy", "--max-drop", "1",
                    "--output", tmp_path / "fb"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads((tmp_path / "fb" / "fallback.json").read_text())
    jsonschema.Draft202012Validator(load_schema("fallback")).validate(document)
    kept = [layer["node"] for layer in document["float_layers"]]
    assert kept  # all-INT8 fails the stream (see the gate test)
    result = quant.gate(cell["model"], tmp_path / "fb" / "model.int8.onnx", cell["heldout"],
                        eval_fn=f"{cell['streaming']}:streaming_accuracy", max_drop=1.0)
    assert result, result.format_text()  # what fallback wrote passes the streaming gate


def test_interrupt_inside_the_function_is_130(cell, tmp_path):
    (tmp_path / "stop.py").write_text("def evaluate(run, data):\n    raise KeyboardInterrupt\n")
    proc = _gate(cell, "--eval-fn", f"{tmp_path / 'stop.py'}:evaluate", "--max-drop", "1")
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    from models_evalfn import detection_data, detector

    folder = tmp_path_factory.mktemp("detector")
    model = detector(folder / "detector.onnx")
    calibration = detection_data(model, folder / "cal.npz", 200, seed=1)
    heldout = detection_data(model, folder / "held.npz", 300, seed=2)
    quant.calibrate(model, calibration).save(folder / "cal")
    return {"model": model, "int8": folder / "cal" / "model.int8.onnx", "heldout": heldout}


def test_detector_example_threshold_nms_and_ap(detector_files):
    """examples/eval_fn/detection.py: ground truth read with data.column('gt_boxes'), two named scores."""
    from models_evalfn import DETECTION

    files = detector_files
    report = quant.evaluate(files["model"], files["int8"], files["heldout"], eval_fn=f"{DETECTION}:mean_ap")
    rows = {row["score"]: row for row in report.user_scores}
    assert set(rows) == {"AP50", "recall"}
    assert rows["AP50"]["fp32"] == 100.0 and rows["recall"]["fp32"] == 100.0  # the truth is FP32's own detections
    assert 80 < rows["AP50"]["int8"] < 100 and rows["AP50"]["drop"] == pytest.approx(100 - rows["AP50"]["int8"])
    gate = ["gate", files["model"], files["int8"], "--data", files["heldout"], "--eval-fn", f"{DETECTION}:mean_ap@AP50"]
    tight = run_cli([*gate, "--max-drop", str(rows["AP50"]["drop"] / 2)])
    loose = run_cli([*gate, "--max-drop", str(rows["AP50"]["drop"] * 2)])
    assert (tight.returncode, loose.returncode) == (1, 0), tight.stderr + loose.stderr
    assert f"INT8 {rows['AP50']['int8']:.4f}" in loose.stdout


@pytest.mark.parametrize("device", ["ort", "cpu"])
def test_every_variant_of_one_switched_graph_is_scored_by_the_function(cell, device):
    """Sensitivity runs every variant on one switched graph (one runner object, set per variant): the function
    must be called, and score differently, for each (it was called once and its score reused for all)."""
    if device == "cpu":
        pytest.importorskip("torch")
    calls = []
    report = quant.sensitivity(cell["model"], cell["folder"], cell["heldout"], device=device,
                               eval_fn=(_streaming_dict(calls), "accuracy"))
    assert calls == ["FP32"] + ["INT8"] * (1 + 2 * len(report.layers))
    recurrent = next(layer for layer in report.layers if layer.node == "recurrent")
    assert recurrent.all_but_this > report.all_quantized  # the variant with 'recurrent' in float scored as such
