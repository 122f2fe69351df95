"""Bad inputs around --smooth (per-channel scaling of depthwise convolutions' inputs)."""
from __future__ import annotations

import json
from pathlib import Path

from bad_inputs.cases import CALIBRATION, MODEL, Case


def _smoothed(d: Path) -> Path:
    from conftest import run_cli

    proc = run_cli(["calibrate", MODEL, "--data", CALIBRATION, "--method", "minmax", "--smooth",
                    "--num-samples", "16", "--output", d / "cal"])
    assert proc.returncode == 0, proc.stderr
    return d / "cal"


def smoothing_record_removed(d: Path):
    folder = _smoothed(d)
    manifest = json.loads((folder / "quant.json").read_text())
    del manifest["smoothing"]
    (folder / "quant.json").write_text(json.dumps(manifest))
    return ["recalibrate", folder, "--method", "mse", "--output", d / "again"]


def smoothing_scale_negative(d: Path):
    folder = _smoothed(d)
    manifest = json.loads((folder / "quant.json").read_text())
    manifest["smoothing"]["layers"] = [{"node": "conv1", "scales": [-1.0]}]
    (folder / "quant.json").write_text(json.dumps(manifest))
    return ["sensitivity", MODEL, "--calibration", folder, "--data", CALIBRATION, "--metric", "sqnr",
            "--output", d / "sens"]


def smooth_given_a_value(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--smooth=yes", "--output", d / "out"]


CASES = [
    Case("smoothing_record_removed", smoothing_record_removed, "field 'smoothing' is missing"),
    Case("smoothing_scale_negative", smoothing_scale_negative, "without positive finite scales"),
    Case("smooth_given_a_value", smooth_given_a_value, "--smooth: ignored explicit argument"),
]
