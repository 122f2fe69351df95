"""Bad inputs found by trying quant as a stranger would, third round (see tests/integration/test_stranger3.py)."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import HELDOUT, MODEL, Case


def _int8(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, HELDOUT, num_samples=32).save(d / "cal")
    return d / "cal" / "model.int8.onnx"


def gate_with_an_ambiguous_output_flag(d: Path):
    # argparse refuses '--output' (--output-name or --output-json?); the error report must not take it as --output-json
    return ["gate", MODEL, _int8(d), "--data", HELDOUT, "--metric", "top1", "--max-drop", "1", "--output", d / "gate.json"]


def _program(d: Path) -> Path:
    (d / "model.pt2").write_bytes(b"PK\x03\x04" + bytes(200))  # a zip, as torch.export.save writes
    return d / "model.pt2"


def eval_of_a_torch_program(d: Path):
    return ["eval", _program(d), MODEL, "--data", HELDOUT]


def gate_of_a_torch_program(d: Path):
    return ["gate", _program(d), MODEL, "--data", HELDOUT, "--metric", "top1", "--max-drop", "1"]


CASES = [
    Case("gate_with_an_ambiguous_output_flag", gate_with_an_ambiguous_output_flag, "ambiguous option: --output"),
    Case("eval_of_a_torch_program", eval_of_a_torch_program, "is a torch.export program: only 'quant calibrate'"),
    Case("gate_of_a_torch_program", gate_of_a_torch_program, "is a torch.export program: only 'quant calibrate'"),
]
