"""Bad inputs found by trying the merged tool end to end as a newcomer (see tests/integration/test_stranger.py)."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _methods_folder(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("entropy", "mse")).save(d / "cal")
    return d / "cal"


def recalibrate_a_methods_folder(d: Path):
    return ["recalibrate", _methods_folder(d), "--method", "percentile", "--output", d / "new"]


def sensitivity_on_a_methods_folder(d: Path):
    return ["sensitivity", MODEL, "--calibration", _methods_folder(d), "--data", HELDOUT]


def fallback_on_a_methods_folder(d: Path):
    return ["fallback", MODEL, "--calibration", _methods_folder(d), "--data", HELDOUT, "--metric", "top1",
            "--max-drop", "1", "--output", d / "fb"]


def eval_json_over_the_calibration_record(d: Path):
    folder = _methods_folder(d)
    return ["eval", MODEL, folder, "--data", HELDOUT, "--output-json", folder / "entropy" / "quant.json"]


def gate_json_over_the_histograms(d: Path):
    folder = _methods_folder(d)
    return ["gate", MODEL, folder / "mse" / "model.int8.onnx", "--data", HELDOUT, "--metric", "top1",
            "--max-drop", "1", "--output-json", folder / "mse" / "histograms.npz", "--junit", d / "gate.xml"]


CASES = [
    Case("recalibrate_a_methods_folder", recalibrate_a_methods_folder, "holds several methods (entropy, mse)"),
    Case("sensitivity_on_a_methods_folder", sensitivity_on_a_methods_folder, "holds several methods (entropy, mse)"),
    Case("fallback_on_a_methods_folder", fallback_on_a_methods_folder, "holds several methods (entropy, mse)"),
    Case("eval_json_over_the_calibration_record", eval_json_over_the_calibration_record, "quant.json' is the input"),
    Case("gate_json_over_the_histograms", gate_json_over_the_histograms, "histograms.npz' is the input"),
]
