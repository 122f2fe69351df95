"""quant calibrate says when entropy clips a tensor hard, on stderr and in quant.json, and names a gentler method."""
import json

import numpy as np

from conftest import run_cli
from tests.models_accuracy import probs_matmul, softmax_probs


def test_entropy_on_a_softmax_fed_matmul_warns_and_names_mse(tmp_path):
    model = probs_matmul(tmp_path / "probs.onnx")
    np.savez(tmp_path / "data.npz", probs=softmax_probs(300))
    proc = run_cli(["calibrate", model, "--data", tmp_path / "data.npz", "--method", "entropy", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: entropy clips")]
    assert len(warnings) == 1 and "'probs'" in warnings[0] and "mse keeps it within" in warnings[0]
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    [entry] = manifest["hard_clipping"]
    assert entry["tensor"] == "probs" and entry["energy_share"] > 0.1 and entry["instead"]["method"] == "mse"
    assert entry["instead"]["energy_share"] < 0.01 and entry["instead"]["amax"] > 3 * entry["amax"]
    assert manifest["activations"]["probs"]["clipped_energy_share"] == entry["energy_share"]


def test_no_warning_on_the_bundled_digits(digits, tmp_path):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "entropy",
                    "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert "clips" not in proc.stderr
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    assert manifest["hard_clipping"] == [] and manifest["activations"]["input"]["amax"] == 1.0
