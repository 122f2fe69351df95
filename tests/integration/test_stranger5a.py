"""Models and data nobody on the team made (fifth stranger round, models): the artifacts checked by hand against
numpy on the model's own tensors and onnx.numpy_helper on the written model."""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bad_inputs.cases_stranger4b import info as _info, save_model as _save
from conftest import run_cli


def _calibrate(tmp_path, model, x, *extra, name="x.npy"):
    np.save(tmp_path / name, x)
    proc = run_cli(["calibrate", model, "--data", tmp_path / name, "--output", tmp_path / "cal", *extra])
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "cal", proc


def if_model(path):
    """x [N, 3, 6, 6] -> Conv (16) -> Relu -> If(mean(x) > 0): then Conv 3x3, else Conv 1x1 (both read r)."""
    rng = np.random.default_rng(0)
    then_branch = helper.make_graph([helper.make_node("Conv", ["r", "W2"], ["t"], name="then_conv", pads=[1] * 4)],
                                    "then", [], [_info("t", ["N", 16, 6, 6])])
    else_branch = helper.make_graph([helper.make_node("Conv", ["r", "Wb"], ["e"], name="else_conv")],
                                    "else", [], [_info("e", ["N", 16, 6, 6])])
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["x"], ["m"], name="mean", keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    return _save(nodes, [_info("x", ["N", 3, 6, 6])], [_info("y", ["N", 16, 6, 6])],
                 {"W1": rng.normal(size=(16, 3, 3, 3)).astype(np.float32),
                  "W2": rng.normal(size=(16, 16, 3, 3)).astype(np.float32),
                  "Wb": rng.normal(size=(16, 16, 1, 1)).astype(np.float32), "zero": np.array(0, np.float32)}, path)


def test_convs_inside_an_if_are_named_as_left_in_float(tmp_path):
    """Before: 'weighted ops left in float: 0' and quant.json named only the If ('no Q/DQ for this op type'): the two
    Convs of its branches ran in float and no output said so."""
    model = if_model(tmp_path / "if.onnx")
    x = np.random.default_rng(1).normal(size=(10, 3, 6, 6)).astype(np.float32)
    cal, proc = _calibrate(tmp_path, model, x, "--batch-size", "1")
    assert "quantized layers: 1, residual Adds: 0, weighted ops left in float: 2" in proc.stdout
    manifest = json.loads((cal / "quant.json").read_text())
    assert [layer["node"] for layer in manifest["layers"]] == ["conv1"]
    inner = {u["node"]: u["reason"] for u in manifest["unquantized"] if u["op_type"] == "Conv"}
    assert set(inner) == {"then_conv", "else_conv"}
    assert all("inside a subgraph of If 'branch'" in reason for reason in inner.values())
    written = onnx.load(str(cal / "model.int8.onnx"))
    branches = [a.g for n in written.graph.node if n.op_type == "If" for a in n.attribute]
    assert all(n.op_type == "Conv" for g in branches for n in g.node)  # really left in float: no Q/DQ in there
