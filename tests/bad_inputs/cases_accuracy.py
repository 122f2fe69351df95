"""Bad inputs of the accuracy area (fallback search options); checked by tests/integration/test_bad_inputs_accuracy.py."""
from __future__ import annotations

import json
from pathlib import Path

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _calibrated(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("minmax",)).save(d / "cal")
    return d / "cal"


def _fallback(d: Path, sensitivity: Path) -> list:
    return ["fallback", MODEL, "--calibration", _calibrated(d), "--data", HELDOUT, "--metric", "sqnr",
            "--min-value", "40", "--output", d / "fb", "--sensitivity", sensitivity]


def sensitivity_missing(d: Path):
    return _fallback(d, d / "nowhere.json")


def sensitivity_not_json(d: Path):
    (d / "sens.json").write_text("{not json")
    return _fallback(d, d / "sens.json")


def sensitivity_without_layers(d: Path):
    (d / "sens.json").write_text(json.dumps({"metric": "sqnr"}))
    return _fallback(d, d / "sens.json")


def sensitivity_of_another_model(d: Path):
    (d / "sens.json").write_text(json.dumps({"metric": "sqnr", "layers": [{"node": "conv_of_another_model"}]}))
    return _fallback(d, d / "sens.json")


CASES = [
    Case("fallback_sensitivity_missing", sensitivity_missing, "does not exist"),
    Case("fallback_sensitivity_not_json", sensitivity_not_json, "is not valid JSON"),
    Case("fallback_sensitivity_without_layers", sensitivity_without_layers, "is malformed: field 'layers' is missing"),
    Case("fallback_sensitivity_of_another_model", sensitivity_of_another_model,
         "the layer ranking names layers this calibration does not quantize"),
]
