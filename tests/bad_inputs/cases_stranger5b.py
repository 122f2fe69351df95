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


def _int8(d: Path) -> Path:
    return _calibrated(d) / "model.int8.onnx"


def bench_batch_given_twice(d: Path):
    # measured batch 1 twice and printed two rows (two different latencies) for the same thing
    return ["bench", MODEL, _int8(d), "--batch", "1,1", "--repeat", "1", "--warmup", "0"]


def bench_runtime_given_twice(d: Path):
    return ["bench", MODEL, _int8(d), "--runtime", "ort,ort", "--repeat", "1", "--warmup", "0"]


def bench_model_given_twice(d: Path):
    int8 = _int8(d)
    return ["bench", MODEL, int8, int8, "--repeat", "1", "--warmup", "0"]


def bench_shape_of_one_input_twice(d: Path):
    return ["bench", MODEL, _int8(d), "--shape", "input:1x1x8x8", "--shape", "input:2x1x8x8"]


def build_shape_of_one_input_twice(d: Path):
    # the second --shape replaced the first in the trtexec command
    return ["build", _calibrated(d), "--output", d / "m.engine", "--print-command",
            "--shape", "input:1x1x8x8", "--shape", "input:2x1x8x8"]


def input_map_of_one_input_twice(d: Path):
    return _calibrate("--output", d / "out", "--input-map", "input=input", "--input-map", "input=label")


CASES += [
    Case("bench_batch_given_twice", bench_batch_given_twice, "--batch gives batch size 1 twice"),
    Case("bench_runtime_given_twice", bench_runtime_given_twice, "--runtime gives runtime 'ort' twice"),
    Case("bench_model_given_twice", bench_model_given_twice, "the INT8_MODEL list gives model"),
    Case("bench_shape_of_one_input_twice", bench_shape_of_one_input_twice, "--shape gives input 'input' twice"),
    Case("build_shape_of_one_input_twice", build_shape_of_one_input_twice, "--shape gives input 'input' twice"),
    Case("input_map_of_one_input_twice", input_map_of_one_input_twice,
         "--input-map gives input 'input' twice (input, then label)"),
]
