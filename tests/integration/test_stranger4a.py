"""Bugs found by trying quant as a stranger would (fourth round, files and the output contract): models with external
data, output folders, permissions, names in every file written."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import onnx
import pytest

from bad_inputs.cases_stranger4a import external_model


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "cal.npz", x=rng.normal(size=(24, 3, 8, 8)).astype(np.float32))
    return tmp_path / "cal.npz"


def _cli(args, umask=None):
    return subprocess.run([sys.executable, "-m", "quant", *map(str, args)], capture_output=True, text=True,
                          timeout=600, preexec_fn=None if umask is None else (lambda: os.umask(umask)))


@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_external_data_files_quant_writes_get_the_umask_mode(tmp_path, data, umask):
    """model.int8.onnx.data and model.ort-cpu.int8.onnx.data (--external-data) get 0666 & ~umask like every other file.
    Before: onnx creates them 0600, so under umask 002 a group could read model.int8.onnx but not its weights."""
    model = external_model(tmp_path / "m.onnx")
    proc = _cli(["calibrate", model, "--data", data, "--method", "minmax,mse", "--target", "all", "--external-data",
                 "--output", tmp_path / "out"], umask=umask)
    assert proc.returncode == 0, proc.stderr
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert sum(p.name.endswith(".onnx.data") for p in files) == 4
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (path, oct(path.stat().st_mode))
    int8 = onnx.load(str(tmp_path / "out" / "mse" / "model.int8.onnx"))
    onnx.checker.check_model(int8, full_check=True)
