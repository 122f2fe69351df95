"""Bad inputs around bias correction (--bias-correction) and cross-layer equalization (--equalize)."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import CALIBRATION, MODEL, Case


def _corrected(d: Path) -> Path:
    from conftest import run_cli

    proc = run_cli(["calibrate", MODEL, "--data", CALIBRATION, "--method", "minmax", "--bias-correction",
                    "--num-samples", "16", "--output", d / "cal"])
    assert proc.returncode == 0, proc.stderr
    return d / "cal"


def recalibrate_corrected_to_another_method(d: Path):
    """The shifts were measured with minmax's ranges: mse's ranges need the data again, not a silent reuse."""
    return ["recalibrate", _corrected(d), "--method", "mse", "--output", d / "mse"]


def damaged_bias_correction_file(d: Path):
    folder = _corrected(d)
    (folder / "bias_correction.npz").write_bytes(b"not an npz archive")
    return ["recalibrate", folder, "--method", "minmax", "--output", d / "again"]


def bias_correction_file_removed(d: Path):
    folder = _corrected(d)
    (folder / "bias_correction.npz").unlink()
    return ["sensitivity", MODEL, "--calibration", folder, "--data", CALIBRATION, "--metric", "sqnr",
            "--output", d / "sens.json"]


def bias_correction_given_a_value(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--bias-correction=yes", "--output", d / "out"]


def quantize_op_type_not_in_model(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--quantize-op-types", "Add,Resize", "--output", d / "out"]


def bias_correction_for_ort_cpu_only(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--bias-correction", "--target", "ort-cpu", "--output", d / "out"]


CASES = [
    Case("bias_correction_for_ort_cpu_only", bias_correction_for_ort_cpu_only, "which --target ort-cpu does not write"),
    Case("quantize_op_type_not_in_model", quantize_op_type_not_in_model, "--quantize-op-types"),
    Case("recalibrate_corrected_to_another_method", recalibrate_corrected_to_another_method,
         "bias correction was measured with its own ranges"),
    Case("damaged_bias_correction_file", damaged_bias_correction_file, "cannot read the bias correction"),
    Case("bias_correction_file_removed", bias_correction_file_removed, "cannot read the bias correction"),
    Case("bias_correction_given_a_value", bias_correction_given_a_value, "--bias-correction: ignored explicit argument"),
]
