"""Bugs found by trying quant as a stranger would (third round): own models, odd names, the newest features."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli


def _save(nodes, inputs, outputs, initializers, path, opset=17):
    graph = helper.make_graph(nodes, "stranger", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def conv_fc_model(path, outputs=("logits", "cls"), names=None):
    """x [N, 3, 8, 8] -> Conv -> Relu (feat) -> Flatten -> MatMul + Add (logits [N, 10]) -> ArgMax (cls, int64)."""
    names = names or {}
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("W1", rng.normal(size=(4, 3, 3, 3))), ("B1", rng.normal(size=4) * 0.1),
        ("W2", rng.normal(size=(256, 10)) * 0.1), ("B2", rng.normal(size=10) * 0.1))]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c"], name=names.get("conv", "conv"), pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["feat"], name="relu"),
             helper.make_node("Flatten", ["feat"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "W2"], ["m"], name=names.get("fc", "fc")),
             helper.make_node("Add", ["m", "B2"], ["logits"], name="fc_add"),
             helper.make_node("ArgMax", ["logits"], ["cls"], name="argmax", axis=1, keepdims=0)]
    infos = {"logits": helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
             "feat": helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 4, 8, 8]),
             "cls": helper.make_tensor_value_info("cls", TensorProto.INT64, ["N"])}
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                 [infos[o] for o in outputs], inits, path)


@pytest.fixture
def calibration(tmp_path):
    x = np.random.default_rng(1).normal(size=(24, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=x)
    return tmp_path / "cal.npz", x


def _emulate(model, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_auto_whole_model_check_scores_float_outputs_only(tmp_path, calibration):
    """A class-index output (ArgMax, int64) is no signal: the whole-model SQNR is that of 'logits' alone, computed
    here independently on every sample, and the CLI line and quant.json name the output scored. Before: the int64
    output was cast to float64 first and its squared class-index differences averaged in (38.44 dB shown as 41.45)."""
    path, x = calibration
    model = conv_fc_model(tmp_path / "m.onnx")
    proc = run_cli(["calibrate", model, "--data", path, "--method", "auto", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    whole = json.loads((tmp_path / "out" / "quant.json").read_text())["auto"]["whole_model"]
    assert whole["outputs"] == ["logits"]
    assert whole["samples"] == len(x)  # fewer than 64: the subset is all of them
    signal = noise = 0.0
    for i in range(len(x)):  # one sample per run, as the check does
        ref = np.float64(_emulate(model, x[i:i + 1])[0])
        out = np.float64(_emulate(tmp_path / "out" / "model.int8.onnx", x[i:i + 1])[0])
        signal, noise = signal + np.sum(ref ** 2), noise + np.sum((out - ref) ** 2)
    assert whole["candidates"][whole["chosen"]] == pytest.approx(10 * np.log10(signal / noise), abs=1e-3)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("auto: 2 tensors"))
    assert "whole-model output SQNR (output 'logits')" in line, line


def test_auto_on_a_model_with_only_an_integer_output_says_nothing_was_scored(tmp_path, calibration):
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("cls",))
    proc = run_cli(["calibrate", model, "--data", path, "--method", "auto", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out" / "quant.json").read_text())["auto"]
    assert "whole_model" not in record  # before: a record of five candidates, every SQNR None ("no error at all")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("auto: 2 tensors"))
    assert "no float output to score the whole model on" in line, line


def test_auto_names_both_outputs_and_the_methods_it_did_not_score_twice(tmp_path, calibration):
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits", "feat"))
    proc = run_cli(["calibrate", model, "--data", path, "--method", "auto", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    whole = json.loads((tmp_path / "out" / "quant.json").read_text())["auto"]["whole_model"]
    assert whole["outputs"] == ["logits", "feat"]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("auto: 2 tensors"))
    assert "(mean over outputs 'logits', 'feat')" in line, line
    for label, earlier in whole["same_ranges_as"].items():  # every method is accounted for on the line
        assert label not in whole["candidates"] and f"{earlier} (= {label})" in line or earlier == whole["chosen"], line
    assert set(whole["candidates"]) | set(whole["same_ranges_as"]) >= {"entropy", "minmax", "percentile", "mse"}


def test_device_cpu_ranges_do_not_depend_on_the_batch_size(tmp_path, calibration):
    """torch on the CPU picks Conv/MatMul kernels by shape: a batch of 24 and 24 batches of 1 differ in the last bits.
    README promises bit-identical scales for any --batch-size with --device cpu; before, minmax of the Flatten
    output (the MatMul's input) moved by an ulp between --batch-size 1 and 7."""
    pytest.importorskip("torch")
    import quant

    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))
    amax = [quant.calibrate(model, path, methods=("minmax", "entropy"), device="cpu", batch_size=b).activation_amax
            for b in (1, 7, 24)]
    assert amax[0] == amax[1] == amax[2]
