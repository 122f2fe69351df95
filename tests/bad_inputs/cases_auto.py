"""Bad inputs around --method auto (its choice needs the calibration data; quant.json records it)."""
from __future__ import annotations

import json
from pathlib import Path

from bad_inputs.cases import CALIBRATION, MODEL, Case


def _folder(d: Path, method: str) -> Path:
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=(method,)).save(d / method)
    return d / method


def recalibrate_auto_from_histograms(d: Path):
    return ["recalibrate", _folder(d, "mse"), "--method", "auto", "--output", d / "new"]


def auto_record_without_a_tensor(d: Path):
    folder = _folder(d, "auto")
    manifest = json.loads((folder / "quant.json").read_text())
    manifest["auto"]["tensors"].pop("/block1/relu/Relu_output_0")
    (folder / "quant.json").write_text(json.dumps(manifest))
    return ["recalibrate", folder, "--method", "auto", "--output", d / "new"]


def auto_record_with_a_negative_amax(d: Path):
    folder = _folder(d, "auto")
    manifest = json.loads((folder / "quant.json").read_text())
    manifest["auto"]["tensors"]["input"]["amax"] = -1.0
    (folder / "quant.json").write_text(json.dumps(manifest))
    return ["fallback", MODEL, "--calibration", folder, "--data", CALIBRATION, "--metric", "top1", "--max-drop", "1",
            "--output", d / "fb"]


def auto_twice(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--method", "auto,mse,auto", "--output", d / "out"]


CASES = [
    Case("recalibrate_auto_from_histograms", recalibrate_auto_from_histograms, "holds histograms only"),
    Case("auto_record_without_a_tensor", auto_record_without_a_tensor,
         "no valid amax for tensor '/block1/relu/Relu_output_0'"),
    Case("auto_record_with_a_negative_amax", auto_record_with_a_negative_amax, "no valid amax for tensor 'input'"),
    Case("auto_twice", auto_twice, "a method is listed twice"),
]
