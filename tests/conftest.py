import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"


@pytest.fixture(scope="session")
def digits():
    """Paths of the bundled example: model, calibration and held-out data."""
    return {"model": DIGITS / "model.onnx", "calibration": DIGITS / "calibration.npz", "heldout": DIGITS / "heldout.npz"}


def run_cli(args, cwd=None, timeout=600):
    """Run `python -m quant ARGS` in a subprocess; returns CompletedProcess with text output."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "quant", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)
