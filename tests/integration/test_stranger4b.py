"""Printed numbers checked against an independent computation (fourth stranger round, numbers): own models of odd
output shapes, eval vs gate vs fallback, rounding at the bound."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from bad_inputs.cases_stranger4b import info as _info, save_model as _save
from conftest import run_cli


def _run(model, x, emulate=False, name="x"):
    options = ort.SessionOptions()
    if emulate:  # Q/DQ as separate float ops: quant's default --runtime emulate
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return [np.float64(o) for o in session.run(None, {name: x})]


def _calibrate(tmp_path, model, x, *extra):
    np.save(tmp_path / "x.npy", x)
    proc = run_cli(["calibrate", model, "--data", tmp_path / "x.npy", "--output", tmp_path / "cal", *extra])
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "cal" / "model.int8.onnx", tmp_path / "x.npy"


def relu_model(path):
    """x [N, 8] -> MatMul [8, 2] -> Add -2 -> Relu -> feat [N, 2]: most rows are zero in FP32, and INT8 zeroes
    some rows that FP32 does not."""
    w = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    return _save([helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
                  helper.make_node("Add", ["m", "b"], ["a"], name="add"),
                  helper.make_node("Relu", ["a"], ["feat"], name="relu")],
                 [_info("x", ["N", 8])], [_info("feat", ["N", 2])], {"W": w, "b": np.full(2, -2.0, np.float32)}, path)


def _cosine(ref, out):
    """Mean per-sample cosine, computed here: 1 for two zero rows, 0 when only one row is zero."""
    values = []
    for r, o in zip(ref.reshape(len(ref), -1), out.reshape(len(out), -1)):
        nr, no = np.linalg.norm(r), np.linalg.norm(o)
        values.append(r @ o / (nr * no) if nr and no else 1.0 if not nr and not no else 0.0)
    return float(np.mean(values))


def test_gate_cosine_is_the_cosine_eval_prints_when_int8_zeroes_a_row(tmp_path):
    """Before: eval printed cosine 0.99499 and the gate 'INT8 1.0000' for the same models: the gate counted an
    INT8 row of zeros (FP32 not zero) as a perfect match, eval as no match."""
    x = np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32)
    model = relu_model(tmp_path / "relu.onnx")
    int8, data = _calibrate(tmp_path, model, x)
    ref, out = _run(model, x)[0], _run(int8, x, emulate=True)[0]
    lost = int(np.sum(ref.any(axis=1) & ~out.any(axis=1)))
    assert lost > 0  # the case under test: rows INT8 zeroes
    expected = _cosine(ref, out)
    proc = run_cli(["eval", model, int8, "--data", data, "--output-json", tmp_path / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["outputs"]["feat"]["cosine"] == pytest.approx(expected)
    proc = run_cli(["gate", model, int8, "--data", data, "--metric", "cosine", "--max-drop", "1",
                    "--output-json", tmp_path / "gate.json"])
    assert proc.returncode == 0, proc.stderr
    check = json.loads((tmp_path / "gate.json").read_text())["checks"][0]
    assert check["int8"] == pytest.approx(expected) and check["fp32"] == pytest.approx(1.0)
    assert f"INT8 {expected:.4f}" in proc.stdout, proc.stdout


def test_a_failing_gate_never_prints_a_drop_equal_to_its_bound():
    """Before: 'FAIL: cosine@logits FP32 1.0000, INT8 1.0000 ...; drop 0.0000 > max 0.0' (a drop of 3e-05, and
    an INT8 cosine of 0.99997, which eval printed, both rounded away); and '-0' echoed as 'max -0.0'."""
    from quant.eval.gate import CheckResult, decide
    from quant.eval.scoring import get_metric

    cosine = get_metric("cosine")
    passed, drop, criterion = decide(cosine, 1.0, 0.99997, 0.0)
    assert not passed and criterion == "drop 0.00003 > max 0.0"
    line = CheckResult("cosine", "", 1.0, 0.99997, drop, passed, criterion).format_line("emulate", 540)
    assert "FP32 1.0000, INT8 0.99997 " in line, line
    assert decide(get_metric("sqnr"), float("nan"), 39.99996, None, min_value=40.0)[2] == "INT8 39.99996 < min 40.0"
    assert decide(get_metric("top1"), 98.5, 98.5 + 1e-15, -0.0)[2] == "drop 0.0000 pp <= max 0.0 pp"  # no '-0'


def test_gate_prints_a_noiseless_sqnr_as_inf_in_both_places(tmp_path):
    """An output multiplied by 0: FP32 and INT8 are both exactly 0, SQNR inf (eval prints inf). Before, the gate
    line said 'INT8 n/a' and, in the same line, 'INT8 inf >= min 30.0'."""
    w = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    model = _save([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
                   helper.make_node("Mul", ["y", "z"], ["zero"], name="times0")],
                  [_info("x", ["N", 8])], [_info("y", ["N", 4]), _info("zero", ["N", 4])],
                  {"W": w, "z": np.zeros(1, np.float32)}, tmp_path / "zero.onnx")
    int8, data = _calibrate(tmp_path, model, np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32))
    proc = run_cli(["eval", model, int8, "--data", data])
    assert proc.returncode == 0, proc.stderr
    assert next(line for line in proc.stdout.splitlines() if line.startswith("zero ")).split()[5] == "inf"
    proc = run_cli(["gate", model, int8, "--data", data, "--metric", "sqnr@zero", "--min-value", "30"])
    assert proc.returncode == 0, proc.stderr
    assert "INT8 inf dB (emulate, 40 samples); INT8 inf >= min 30.0" in proc.stdout, proc.stdout


def test_sequence_logits_are_not_scored_over_their_time_steps(tmp_path):
    """logits [N, 5, 4]: 5 time steps, 4 classes. Before: eval printed '99.38% (axis 1)', argmax over the time
    steps. Now: n/a with the reason until --class-axis says where the classes are; then the per-step agreement
    computed here."""
    from bad_inputs.cases_stranger4b import calibrated, sequence_model

    model, int8, held = calibrated(tmp_path, sequence_model(tmp_path / "seq.onnx"), (5, 8))
    x = np.load(held)
    ref, out = _run(model, x)[0], _run(int8, x, emulate=True)[0]
    per_step = 100.0 * np.mean(ref.argmax(2) == out.argmax(2))
    assert per_step != pytest.approx(100.0 * np.mean(ref.argmax(1) == out.argmax(1)))  # the axis matters here
    proc = run_cli(["eval", model, int8, "--data", held, "--json"])
    assert proc.returncode == 0, proc.stderr
    logits = json.loads(proc.stdout)["outputs"]["logits"]
    assert logits["agreement"] is None and "pass --class-axis 1 or 2" in logits["agreement_basis"]
    proc = run_cli(["eval", model, int8, "--data", held, "--class-axis", "2", "--json"])
    assert json.loads(proc.stdout)["outputs"]["logits"]["agreement"] == pytest.approx(per_step)
    proc = run_cli(["gate", model, int8, "--data", held, "--metric", "agreement", "--class-axis", "-1",
                    "--max-drop", "50", "--output-json", tmp_path / "gate.json"])
    assert proc.returncode == 0, proc.stderr
    check = json.loads((tmp_path / "gate.json").read_text())["checks"][0]
    assert check["int8"] == pytest.approx(per_step) and check["class_axis"] == 2


def test_sequence_probabilities_find_their_class_axis(tmp_path):
    """Softmax over the last axis: the values say where the classes are (as for PP-OCR rec's per-step softmax)."""
    from bad_inputs.cases_stranger4b import calibrated, sequence_model

    model, int8, held = calibrated(tmp_path, sequence_model(tmp_path / "seq.onnx", softmax=True), (5, 8))
    x = np.load(held)
    ref, out = _run(model, x)[0], _run(int8, x, emulate=True)[0]
    proc = run_cli(["eval", model, int8, "--data", held, "--json"])
    assert proc.returncode == 0, proc.stderr
    probs = json.loads(proc.stdout)["outputs"]["probs"]
    assert probs["class_axis"] == 2 and "class agreement on axis 2" in probs["agreement_basis"]
    assert probs["agreement"] == pytest.approx(100.0 * np.mean(ref.argmax(2) == out.argmax(2)))


def test_a_binary_logit_gets_no_agreement_that_cannot_fail(tmp_path):
    """logit [N, 1]: argmax over one value is always 0. Before: eval --output-name logit printed
    '100.00% (axis 1)' (and the gate passed on it, see cases_stranger4b)."""
    from bad_inputs.cases_stranger4b import binary_model, calibrated

    model, int8, held = calibrated(tmp_path, binary_model(tmp_path / "bin.onnx"), (8,), ("include", ("mm",)))
    proc = run_cli(["eval", model, int8, "--data", held, "--output-name", "logit", "--json"])
    assert proc.returncode == 0, proc.stderr
    logit = json.loads(proc.stdout)["outputs"]["logit"]
    assert logit["agreement"] is None and "100% whatever the model does" in logit["agreement_basis"]


def test_fallback_table_says_which_rows_were_scored_on_the_screening_subset(tmp_path):
    """The bisect search scores its steps on a subset (156 of 540 digits) and confirms on all of them; the table
    printed both kinds of value in one column with nothing to tell them apart (fallback.json had 'data')."""
    from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL

    assert run_cli(["calibrate", MODEL, "--data", CALIBRATION, "--method", "minmax", "--output",
                    tmp_path / "cal"]).returncode == 0
    proc = run_cli(["fallback", MODEL, "--calibration", tmp_path / "cal", "--data", HELDOUT, "--metric", "sqnr",
                    "--min-value", "40", "--output", tmp_path / "fb"])
    assert proc.returncode == 0, proc.stderr
    path = json.loads((tmp_path / "fb" / "fallback.json").read_text())["path"]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split() and line.split()[0].isdigit() and "layer(s)" not in line]
    assert len(rows) == len(path) and {step["data"] for step in path} == {"subset", "full"}
    for row, step in zip(rows, path):
        assert row[2:4] == (["all", "540"] if step["data"] == "full" else ["subset", str(step["samples"])]), row
        assert float(row[4]) == pytest.approx(step["value"], abs=5e-5)
    x = np.load(HELDOUT)["input"]  # the last row, recomputed here on the model fallback wrote
    ref, out = _run(MODEL, x, name="input")[0], _run(tmp_path / "fb" / "model.int8.onnx", x, True, "input")[0]
    assert path[-1]["value"] == pytest.approx(10 * np.log10(np.sum(ref ** 2) / np.sum((out - ref) ** 2)), abs=1e-6)
    assert run_cli(["report", tmp_path / "fb"]).returncode == 0  # the report's path table says it too
    table = [line for line in (tmp_path / "fb" / "report.md").read_text().splitlines() if line.startswith("| ")]
    scored = [row.split(" | ")[1] for row in table[1:] if row.split(" | ")[0][2:].isdigit()][:len(path)]
    assert scored == [("all 540" if s["data"] == "full" else f"subset {s['samples']}") for s in path], table


def test_padded_time_steps_are_not_counted_as_agreeing(tmp_path):
    """Sequence logits with zero-padded steps: FP32 and INT8 scores there are all 0, argmax index 0 in both, a match
    for free. Before: they were counted, raising per-step agreement toward 100% with the padding share."""
    from bad_inputs.cases_stranger4b import sequence_model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5, 8)).astype(np.float32)
    lengths = rng.integers(1, 6, len(x))
    for row, length in enumerate(lengths):
        x[row, length:] = 0.0  # padding: the MatMul gives exact zeros there
    model = sequence_model(tmp_path / "seq.onnx", close=True)
    int8, data = _calibrate(tmp_path, model, x)
    ref, out = _run(model, x)[0], _run(int8, x, emulate=True)[0]
    real = np.arange(5)[None, :] < lengths[:, None]
    expected = 100.0 * np.mean((ref.argmax(2) == out.argmax(2))[real])
    counted_all = 100.0 * np.mean(ref.argmax(2) == out.argmax(2))
    assert expected != pytest.approx(counted_all)  # the padding changes the number on this data
    proc = run_cli(["eval", model, int8, "--data", data, "--class-axis", "2", "--output-name", "logits",
                    "--output-json", tmp_path / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["outputs"]["logits"]["agreement"] == pytest.approx(expected)
    assert f"{int((~real).sum())} of {real.size} positions are not counted" in proc.stdout, proc.stdout
    gate = run_cli(["gate", model, int8, "--data", data, "--metric", "agreement@logits", "--class-axis", "2",
                    "--max-drop", "100", "--output-json", tmp_path / "gate.json"])
    assert gate.returncode == 0, gate.stderr
    assert json.loads((tmp_path / "gate.json").read_text())["checks"][0]["int8"] == pytest.approx(expected)


def test_one_value_per_sample_gets_no_cosine(tmp_path):
    """[N, 1] and [N]: the per-sample cosine of one value is +1 or -1. Before: eval printed cosine 1.00000 for both
    (SQNR 30.3 dB), and a cosine gate passed whatever the size of the error."""
    from bad_inputs.cases_stranger4b import binary_and_score_model, calibrated

    model, int8, held = calibrated(tmp_path, binary_and_score_model(tmp_path / "m.onnx"), (8,), ("include", ("mm",)))
    x = np.load(held)
    ref, out = _run(model, x)[1], _run(int8, x, emulate=True)[1]
    proc = run_cli(["eval", model, int8, "--data", held, "--json"])
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)["outputs"]
    for name in ("logit", "score"):
        assert outputs[name]["cosine"] is None and "its cosine is only the sign" in outputs[name]["agreement_basis"]
        assert outputs[name]["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(ref ** 2) / np.sum((out - ref) ** 2)))


def test_sensitivity_header_gives_the_unit_and_no_fp32_sqnr(tmp_path):
    """Before: 'metric sqnr: FP32 inf, all layers INT8 35.4534' where the gate prints 'FP32 n/a' for the same SQNR
    (FP32 against itself has no value), and no unit for any metric. The all-INT8 value is recomputed here."""
    from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL

    assert run_cli(["calibrate", MODEL, "--data", CALIBRATION, "--method", "minmax", "--output",
                    tmp_path / "cal"]).returncode == 0
    proc = run_cli(["sensitivity", MODEL, "--calibration", tmp_path / "cal", "--data", HELDOUT, "--metric", "sqnr"])
    assert proc.returncode == 0, proc.stderr
    x = np.load(HELDOUT)["input"]
    ref, out = _run(MODEL, x, name="input")[0], _run(tmp_path / "cal" / "model.int8.onnx", x, True, "input")[0]
    sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((out - ref) ** 2))
    assert proc.stdout.splitlines()[0] == f"metric sqnr (dB): FP32 n/a, all layers INT8 {sqnr:.4f}"
    gate = run_cli(["gate", MODEL, tmp_path / "cal" / "model.int8.onnx", "--data", HELDOUT, "--metric", "sqnr",
                    "--min-value", "1"])
    assert f"FP32 n/a, INT8 {sqnr:.4f} dB" in gate.stdout, gate.stdout


def test_one_miss_in_20000_is_not_printed_as_100_percent():
    """Before: eval printed top-1 99.995% as '100.00%' and its drop of 0.005 pp as '-0.01 pp' or '0.00 pp', and the
    gate 99.99999% (one miss in ten million) as '100.0000%'; '-0.00 pp' for a tiny gain."""
    from quant.eval.compare import EvalReport
    from quant.eval.gate import format_value

    fp32, int8 = 100.0 * 20000 / 20000, 100.0 * 19999 / 20000
    task = {"top1": {"output": "logits", "shape": "[N, 10]", "class_axis": 1, "why": "the only output",
                     "unit": "%", "fp32": fp32, "int8": int8, "drop": fp32 - int8, "drop_unit": "pp"}}
    text = EvalReport("emulate", "exact Q/DQ", 20000, {}, task).format_text()
    row = next(line for line in text.splitlines() if line.startswith("top1 "))
    assert row.split()[2:] == ["100.00%", "99.995%", "0.005", "pp"], row
    task["top1"].update(int8=100.0, drop=-1e-3)
    row = next(line for line in EvalReport("emulate", "", 1, {}, task).format_text().splitlines()
               if line.startswith("top1 "))
    assert row.split()[-2:] == ["-0.001", "pp"], row
    assert format_value(100.0 * 9999999 / 10000000, "%") == "99.99999%"
    assert format_value(0.0, "%") == "0.0000%" and format_value(100.0, "%") == "100.0000%"


def test_an_axis_that_changes_per_batch_is_printed_as_its_range(tmp_path):
    """Samples of 1 to 4 steps (x_0000, x_0001, ... of different shapes): eval printed the first batch's shape
    '[N, 1, 3]' for every sample. The SQNR over all of them is recomputed here."""
    from bad_inputs.cases_stranger4b import info, save_model

    w = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    model = save_model([helper.make_node("MatMul", ["x", "W"], ["scores"], name="mm")], [info("x", ["N", "T", 8])],
                       [info("scores", ["N", "T", 3])], {"W": w}, tmp_path / "var.onnx")
    rng = np.random.default_rng(1)
    samples = {f"x_{i:04d}": rng.normal(size=(1 + i % 4, 8)).astype(np.float32) for i in range(24)}
    np.savez(tmp_path / "var.npz", **samples)
    assert run_cli(["calibrate", model, "--data", tmp_path / "var.npz", "--output", tmp_path / "cal"]).returncode == 0
    proc = run_cli(["eval", model, tmp_path / "cal" / "model.int8.onnx", "--data", tmp_path / "var.npz", "--json"])
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)["outputs"]["scores"]
    assert scores["shape"] == "[N, 1..4, 3]"
    signal = noise = 0.0
    for x in samples.values():
        ref, out = _run(model, x[None])[0], _run(tmp_path / "cal" / "model.int8.onnx", x[None], emulate=True)[0]
        signal, noise = signal + np.sum(ref ** 2), noise + np.sum((out - ref) ** 2)
    assert scores["sqnr_db"] == pytest.approx(10 * np.log10(signal / noise))


def test_report_prints_the_gate_values_the_gate_printed(tmp_path):
    """Before: report.md said 'FP32 98.89, INT8 99.07 %' (4 significant digits, the unit after INT8 only) where the
    gate printed 'FP32 98.8889%, INT8 99.0741%'; 99.995% would have read '100'."""
    from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL

    assert run_cli(["calibrate", MODEL, "--data", CALIBRATION, "--method", "minmax", "--output",
                    tmp_path / "cal"]).returncode == 0
    gate = run_cli(["gate", MODEL, tmp_path / "cal" / "model.int8.onnx", "--data", HELDOUT, "--metric", "top1",
                    "--max-drop", "0.5", "--output-json", tmp_path / "cal" / "gate.json"])
    assert gate.returncode == 0, gate.stderr
    printed = gate.stdout.split(": top1@logits ")[1].split(" (emulate")[0]  # 'FP32 98.8889%, INT8 99.0741%'
    assert run_cli(["report", tmp_path / "cal"]).returncode == 0
    line = next(line for line in (tmp_path / "cal" / "report.md").read_text().splitlines() if line.startswith("Gate:"))
    assert printed.replace(".", "\\.").replace("%", "\\%") in line, (printed, line)


def test_fallback_table_never_prints_a_missed_drop_as_zero():
    """A step that misses 'max 0.0' by a cosine drop of 3e-05 read '0.0000' in the drop column; float noise of -1e-17
    is 0 (the gate's tolerance), never '-0.0000'."""
    from quant.eval.fallback import FallbackResult

    path = [{"step": 0, "float_layers": [], "value": 0.99997, "drop": 3e-05, "passed": False, "action": "all layers INT8",
             "samples": 540},
            {"step": 1, "float_layers": ["conv"], "value": 1.0, "drop": -1e-17, "passed": True, "action": "+ conv",
             "samples": 540}]
    text = FallbackResult(True, [{"node": "conv", "score": 1.0}], path, 1.0, "cosine", "drop 0.0000 <= max 0.0")
    rows = [line.split() for line in text.format_text().splitlines()[1:3]]
    assert rows[0][5] == "0.00003" and rows[1][5] == "0.0000", rows


def test_hard_clipping_warning_never_rounds_a_share_to_zero(tmp_path):
    """One value in 32,000 above entropy's amax read '0.00% of its values' beside '2.07% of its energy'."""
    x = np.random.default_rng(3).normal(size=(4000, 8)).astype(np.float32)
    x[5, 0] = 30.0
    np.save(tmp_path / "x.npy", x)
    proc = run_cli(["calibrate", relu_model(tmp_path / "relu.onnx"), "--data", tmp_path / "x.npy", "--output",
                    tmp_path / "cal"])
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "cal" / "quant.json").read_text())["activations"]["x"]
    share = 100 * record["clipped_values_share"]
    assert 0 < share < 0.005 and share == pytest.approx(100 * np.mean(np.abs(x) > record["amax"]))
    line = next(line for line in proc.stderr.splitlines() if line.startswith("warning: entropy clips 'x'"))
    assert f"hard: {share:.3f}% of its values" in line, line
