"""Bad inputs of the bounded fallback search (quant fallback --refine-rounds)."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _calibrated(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("entropy",)).save(d / "cal")
    return d / "cal"


def refine_rounds(value: str):
    def build(d: Path):
        return ["fallback", MODEL, "--calibration", _calibrated(d), "--data", HELDOUT, "--metric", "top1",
                "--max-drop", "1", "--refine-rounds", value, "--output", d / "fb"]
    return build


CASES = [
    Case("refine_rounds_negative", refine_rounds("-1"), "refine-rounds"),
    Case("refine_rounds_not_a_number", refine_rounds("two"), "refine-rounds"),
]
