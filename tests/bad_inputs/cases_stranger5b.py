"""Bad inputs found by trying quant's flags and Python API as a stranger would (fifth round; see
tests/integration/test_stranger5b.py): an option is its full name, given once, and never silently ignored."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _calibrate(*options):
    return ["calibrate", MODEL, "--data", CALIBRATION, *options]


def abbreviated_method(d: Path):
    # argparse's allow_abbrev took '--meth' for '--method' (and would take it for any later '--meth...' flag)
    return _calibrate("--output", d / "out", "--meth", "minmax")


def abbreviated_output(d: Path):
    return _calibrate("--out", d / "out")


def eval_abbreviated_output_json(d: Path):
    # '--output-js FILE' wrote eval.json to FILE as if it were '--output-json FILE'
    return ["eval", MODEL, _calibrated(d) / "model.int8.onnx", "--data", HELDOUT, "--output-js", d / "eval.json"]


def calibrate_with_a_gate_flag(d: Path):
    return _calibrate("--output", d / "out", "--metric", "top1", "--max-drop", "1")


def method_given_twice(d: Path):
    # '--method minmax --method mse' calibrated mse alone and said nothing of minmax
    return _calibrate("--output", d / "out", "--method", "minmax", "--method", "mse")


def data_given_twice(d: Path):
    return _calibrate("--data", HELDOUT, "--output", d / "out")


def output_given_twice(d: Path):
    return _calibrate("--output", d / "a", "--output", d / "b")


def batch_size_given_twice(d: Path):
    return _calibrate("--output", d / "out", "--batch-size", "8", "--batch-size", "16")


def eval_runtime_given_twice(d: Path):
    return ["eval", MODEL, _calibrated(d) / "model.int8.onnx", "--data", HELDOUT, "--runtime", "emulate",
            "--runtime", "ort-int8"]


def _calibrated(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("minmax",)).save(d / "cal")
    return d / "cal"


def recalibrate_percentile_of_mse(d: Path):
    # calibrate refused '--percentile' without the percentile method; recalibrate ignored it silently
    return ["recalibrate", _calibrated(d), "--method", "mse", "--percentile", "99.9", "--output", d / "mse"]


CASES = [
    Case("abbreviated_method", abbreviated_method, "unrecognized arguments: --meth"),
    Case("abbreviated_output", abbreviated_output, "unrecognized arguments: --out"),
    Case("eval_abbreviated_output_json", eval_abbreviated_output_json, "unrecognized arguments: --output-js"),
    Case("calibrate_with_a_gate_flag", calibrate_with_a_gate_flag, "unrecognized arguments: --metric --max-drop"),
    Case("method_given_twice", method_given_twice, "--method is given twice (minmax, then mse)"),
    Case("data_given_twice", data_given_twice, "--data is given twice"),
    Case("output_given_twice", output_given_twice, "--output is given twice"),
    Case("batch_size_given_twice", batch_size_given_twice, "--batch-size is given twice (8, then 16)"),
    Case("eval_runtime_given_twice", eval_runtime_given_twice, "--runtime is given twice (emulate, then ort-int8)"),
    Case("recalibrate_percentile_of_mse", recalibrate_percentile_of_mse,
         "--percentile applies to the percentile method, but --method is mse"),
]
