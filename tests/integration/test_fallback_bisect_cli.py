"""quant fallback (bisect search) on the bundled model and a transformer: passes the gate, within its evaluation
budget, and prints a progress line per step and probe on a stderr that is not a terminal."""
import json
import re

import numpy as np
import pytest

import quant
from conftest import run_cli
from quant import pipeline
from quant.eval.fallback import evaluation_budget
from tests.models_accuracy import bert_encoder

LINE = re.compile(r"^fallback (step \d+|probe): \d+ layer\(s\) in float, \S+ -?[\d.]+ on (all|subset of) \d+ samples "
                  r"\((meets|misses) the bound; .*\); evaluations .*; \d+\.\d s$")


def _check(proc, out, layers):
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fallback ")]
    assert lines and all(LINE.match(line) for line in lines), lines  # captured: stderr is a pipe, not a tty
    outcome = json.loads((out / "fallback.json").read_text())
    steps = [line for line in lines if line.startswith("fallback step")]
    assert len(steps) == len(outcome["path"])
    assert outcome["passed"] and outcome["evaluations"] <= outcome["evaluation_budget"]["full"]
    assert outcome["screen_evaluations"] <= outcome["evaluation_budget"]["screen"]
    return outcome


def test_digits_fallback_passes_the_gate_within_budget(digits, tmp_path):
    cal = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",)).save(cal)
    out = tmp_path / "fb"
    proc = run_cli(["fallback", digits["model"], "--calibration", cal, "--data", digits["heldout"],
                    "--metric", "sqnr", "--min-value", "40", "--output", out])
    outcome = _check(proc, out, layers=7)
    assert any("subset of" in line for line in proc.stderr.splitlines())  # 540 held-out digits: screened
    assert pipeline.gate(digits["model"], out / "model.int8.onnx", digits["heldout"], metric="sqnr", min_value=40.0)
    assert outcome["evaluations"] <= 3


def test_transformer_fallback_with_a_sensitivity_ranking(tmp_path):
    model = bert_encoder(tmp_path / "bert.onnx", layers=2, hidden=64, heads=4)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((32, 12, 64)).astype(np.float32))
    np.savez(tmp_path / "held.npz", x=rng.standard_normal((48, 12, 64)).astype(np.float32))
    cal = tmp_path / "cal"
    quant.calibrate(model, tmp_path / "cal.npz", methods=("entropy",)).save(cal)
    plain = pipeline.gate(model, cal / "model.int8.onnx", tmp_path / "held.npz", metric="sqnr", min_value=40.0)
    assert not plain
    ranking = list(reversed([layer.node for layer in quant.pipeline.load_calibration(cal).plan.layers]))
    (tmp_path / "sens.json").write_text(json.dumps({"metric": "sqnr", "layers": [{"node": n} for n in ranking]}))
    out = tmp_path / "fb"
    proc = run_cli(["fallback", model, "--calibration", cal, "--data", tmp_path / "held.npz", "--metric", "sqnr",
                    "--min-value", "40", "--output", out, "--sensitivity", tmp_path / "sens.json"])
    outcome = _check(proc, out, layers=len(ranking))
    assert pipeline.gate(model, out / "model.int8.onnx", tmp_path / "held.npz", metric="sqnr", min_value=40.0)
    greedy = tmp_path / "greedy"
    proc = run_cli(["fallback", model, "--calibration", cal, "--data", tmp_path / "held.npz", "--metric", "sqnr",
                    "--min-value", "40", "--output", greedy, "--sensitivity", tmp_path / "sens.json", "--search", "greedy"])
    assert proc.returncode == 0, proc.stderr
    # here every layer matters a little (11 of 16 end in float): the bisection's rounds cost about 2
    # evaluations each after the first, within its budget, and it keeps no more layers in float than greedy
    greedy_outcome = json.loads((greedy / "fallback.json").read_text())
    assert len(outcome["float_layers"]) <= len(greedy_outcome["float_layers"])
    assert outcome["evaluations"] <= 3 * len(outcome["float_layers"]) + 2 * len(ranking).bit_length()


def test_a_sensitivity_file_naming_other_layers_is_refused(digits, tmp_path):
    cal = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(cal)
    (tmp_path / "sens.json").write_text(json.dumps({"metric": "sqnr", "layers": [{"node": "not_a_layer"}]}))
    proc = run_cli(["fallback", digits["model"], "--calibration", cal, "--data", digits["heldout"], "--metric", "sqnr",
                    "--min-value", "40", "--output", tmp_path / "fb", "--sensitivity", tmp_path / "sens.json"])
    assert proc.returncode == 2 and proc.stderr.startswith("Error: the layer ranking names layers this calibration does not quantize")
    assert "Traceback" not in proc.stderr and not (tmp_path / "fb").exists()


def test_refine_rounds_zero_keeps_the_bisection_prefix_and_passes_the_gate(digits, tmp_path):
    cal = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",)).save(cal)
    out = tmp_path / "fb"
    proc = run_cli(["fallback", digits["model"], "--calibration", cal, "--data", digits["heldout"],
                    "--metric", "sqnr", "--min-value", "50", "--refine-rounds", "0", "--output", out])
    outcome = _check(proc, out, layers=7)
    assert outcome["float_layers"]
    assert pipeline.gate(digits["model"], out / "model.int8.onnx", digits["heldout"], metric="sqnr", min_value=50.0)
