"""Bugs found by trying the merged tool end to end through the CLI, as a newcomer would."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import run_cli
from models_outputs import digits_split, features_then_logits


def _run(model, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


@pytest.fixture(scope="module")
def two_outputs_folder(tmp_path_factory):
    """features [N, 32] then logits [N, 10]; calibrated with entropy and mse into one folder, eval'd on the folder."""
    d = tmp_path_factory.mktemp("two")
    _, _, calibration, held_x, held_y = digits_split()
    model = features_then_logits(d / "ftl.onnx")
    np.savez(d / "cal.npz", x=calibration)
    np.savez(d / "held.npz", x=held_x, label=held_y)
    proc = run_cli(["calibrate", model, "--data", d / "cal.npz", "--method", "entropy,mse", "--output", d / "out"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["eval", model, d / "out", "--data", d / "held.npz", "--output-json", d / "out" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    return d, model, held_x, held_y, proc.stdout


def test_folder_eval_prints_percent_once_and_names_the_scored_output(two_outputs_folder):
    # Found: `quant eval MODEL DIR` printed "top1 8000.00%" and "agreement 9900.00%" (percent scaled twice).
    d, model, held_x, held_y, stdout = two_outputs_folder
    fp32 = _run(model, held_x)
    lines = stdout.splitlines()
    top1 = next(line for line in lines if line.startswith("top1"))
    expected = [100 * np.mean(fp32[1].argmax(1) == held_y)]
    for method in ("entropy", "mse"):
        int8 = _run(d / "out" / method / "model.int8.onnx", held_x)
        expected.append(100 * np.mean(int8[1].argmax(1) == held_y))
    assert top1.split() == ["top1@logits"] + [f"{v:.2f}%" for v in expected]
    agreement = next(line for line in lines if line.startswith("'logits' agreement")).split()[2:]
    for method, cell in zip(("entropy", "mse"), agreement):
        int8 = _run(d / "out" / method / "model.int8.onnx", held_x)
        assert cell == f"{100 * np.mean(int8[1].argmax(1) == fp32[1].argmax(1)):.2f}%"
    best = next(line for line in lines if line.startswith("highest INT8 top1"))
    assert f"{max(expected[1:]):.2f}%" in best


def test_folder_report_table_is_in_percent(two_outputs_folder):
    d, *_ = two_outputs_folder
    proc = run_cli(["report", d / "out"])
    assert proc.returncode == 0, proc.stderr
    folder = json.loads((d / "out" / "eval.json").read_text())
    row = (d / "out" / "report.md").read_text().split("| `top1` |")[1].splitlines()[0]
    cells = [c.strip() for c in row.strip(" |").split("|")]
    assert cells == [f"{folder['methods']['entropy']['task']['top1']['fp32']:.2f}%"] + [
        f"{folder['methods'][m]['task']['top1']['int8']:.2f}%" for m in ("entropy", "mse")]
    assert all(float(c.rstrip("%")) <= 100 for c in cells)
