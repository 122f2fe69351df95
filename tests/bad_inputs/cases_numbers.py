"""Bad inputs about which output a metric scores, gate bounds, build commands and command-line flags."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _two_outputs(d: Path):
    """features [N, 32] then logits [N, 10], its held-out data with labels, and its INT8 model."""
    import quant
    from models_outputs import digits_split, features_then_logits

    _, _, calibration, held_x, held_y = digits_split()
    model = features_then_logits(d / "ftl.onnx")
    np.savez(d / "cal.npz", x=calibration)
    np.savez(d / "held.npz", x=held_x, label=held_y)
    quant.calibrate(model, d / "cal.npz", methods=("minmax",)).save(d / "cal")
    return model, d / "cal" / "model.int8.onnx", d / "held.npz", held_y


def ambiguous_labels(d: Path):
    model, int8, held, labels = _two_outputs(d)
    np.save(d / "few.npy", np.minimum(labels, 5))  # 0..5: both outputs have more columns, neither exactly 6
    return ["eval", model, int8, "--data", held, "--labels", d / "few.npy"]


def sqnr_of_which_output(d: Path):
    model, int8, held, _ = _two_outputs(d)
    return ["gate", model, int8, "--data", held, "--metric", "sqnr", "--min-value", "30"]


def no_such_output(d: Path):
    model, int8, held, _ = _two_outputs(d)
    return ["eval", model, int8, "--data", held, "--output-name", "scores"]


def metric_at_unknown_output(d: Path):
    model, int8, held, _ = _two_outputs(d)
    return ["gate", model, int8, "--data", held, "--metric", "top1@probs", "--max-drop", "1"]


def class_axis_out_of_range(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--class-axis", "4"]


def bound_given_twice(d: Path):
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", "top1", "--max-drop", "1", "--max-drop", "2"]


def sensitivity_with_two_metrics(d: Path):
    return ["sensitivity", MODEL, "--calibration", d, "--data", HELDOUT, "--metric", "top1", "--metric", "sqnr"]


def unknown_option_of_a_subcommand(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--output-jsn", d / "eval.json"]


def _calibrated(d: Path, *extra: str) -> Path:
    from conftest import run_cli

    proc = run_cli(["calibrate", MODEL, "--data", CALIBRATION, "--method", "minmax", "--output", d / "cal", *extra])
    assert proc.returncode == 0, proc.stderr
    return d / "cal"


def implicit_on_tensorrt_11(d: Path):
    return ["build", _calibrated(d, "--trt-version", "11.0"), "--implicit", "--output", d / "e", "--print-command"]


def build_shape_changes_a_fixed_axis(d: Path):
    return ["build", _calibrated(d), "--output", d / "e", "--shape", "input:8x3x8x8", "--print-command"]


def build_bad_trt_version(d: Path):
    return ["build", _calibrated(d), "--output", d / "e", "--trt-version", "ten", "--print-command"]


CASES = [
    Case("ambiguous_labels", ambiguous_labels, "several outputs could hold the class scores"),
    Case("sqnr_of_which_output", sqnr_of_which_output, "metric 'sqnr' does not know which output to score"),
    Case("no_such_output", no_such_output, "the model has no output 'scores' (its outputs: features, logits)"),
    Case("metric_at_unknown_output", metric_at_unknown_output, "the model has no output 'probs'"),
    Case("class_axis_out_of_range", class_axis_out_of_range, "--class-axis 4 does not fit"),
    Case("bound_given_twice", bound_given_twice, "--max-drop is given twice for top1"),
    Case("sensitivity_with_two_metrics", sensitivity_with_two_metrics, "scores one metric, got 2"),
    Case("unknown_option_of_a_subcommand", unknown_option_of_a_subcommand, "unrecognized arguments: --output-jsn"),
    Case("implicit_on_tensorrt_11", implicit_on_tensorrt_11, "TensorRT 11.0.0 has no implicit INT8 calibration"),
    Case("build_shape_changes_a_fixed_axis", build_shape_changes_a_fixed_axis, "changes axis 1, which the model fixes at 1"),
    Case("build_bad_trt_version", build_bad_trt_version, "'ten' is not a TensorRT version"),
]
