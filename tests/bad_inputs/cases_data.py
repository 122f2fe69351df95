"""Bad-input cases of the data sources (run by tests/integration/test_bad_inputs_data.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bad_inputs.cases import CALIBRATION, GOOD, HELDOUT, MODEL, Case


def image_options_with_arrays(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--mean", "0.5"]


def eval_image_options_with_arrays(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--resize", "8,8"]


def per_sample_keys_uneven(d: Path):
    np.savez(d / "ragged.npz", input_0000=GOOD[0], input_0001=GOOD[1], label=np.zeros(5, np.int64))
    return ["calibrate", MODEL, "--data", d / "ragged.npz", "--output", d / "out"]


def per_sample_key_pickled(d: Path):
    np.savez(d / "objects.npz", input_0000=GOOD[0], input_0001=np.array([{"a": 1}], dtype=object))
    return ["calibrate", MODEL, "--data", d / "objects.npz", "--output", d / "out"]


def truncated_stored_npz(d: Path):
    np.savez(d / "full.npz", input=np.zeros((64, 1, 8, 8), np.float32))
    raw = (d / "full.npz").read_bytes()
    (d / "full.npz").unlink()
    (d / "cut.npz").write_bytes(raw[:-4000])
    return ["calibrate", MODEL, "--data", d / "cut.npz", "--output", d / "out"]


CASES = [
    Case("image_options_with_arrays", image_options_with_arrays, "holds arrays, not images"),
    Case("eval_image_options_with_arrays", eval_image_options_with_arrays, "holds arrays, not images"),
    Case("per_sample_keys_uneven", per_sample_keys_uneven, "'label' has 5 rows, but there are 2 samples"),
    Case("per_sample_key_pickled", per_sample_key_pickled, "cannot read NumPy data"),
    Case("truncated_stored_npz", truncated_stored_npz, "cannot read NumPy data"),
]
