"""Bad inputs from the lead's own tries this stop: a selection flag that matches only layers inside If/Loop/Scan
subgraphs said the model had no such node (quant.json lists those layers as left in float)."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import Case
from bad_inputs.cases_stranger5a import _if_model, nan_in_one_sample


def exclude_regex_of_subgraph_convs(d: Path):
    model, data = _if_model(d)  # then_conv and else_conv live in the If's branches; was 'matches no node name'
    return ["calibrate", model, "--data", data, "--output", d / "out", "--exclude-regex", "_conv$"]


def exclude_op_type_only_in_a_subgraph(d: Path):
    import numpy as np
    from onnx import helper

    from bad_inputs.cases_stranger4b import info, save_model

    rng = np.random.default_rng(0)
    then_branch = helper.make_graph([helper.make_node("MatMul", ["r", "W2"], ["t"], name="then_matmul")],
                                    "then", [], [info("t", ["N", 8])])
    else_branch = helper.make_graph([helper.make_node("Relu", ["r"], ["e"], name="else_relu")],
                                    "else", [], [info("e", ["N", 8])])
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["g"], name="gemm"), helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0), helper.make_node("Greater", ["m", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    model = save_model(nodes, [info("x", ["N", 8])], [info("y", ["N", 8])],
                       {"W1": rng.normal(size=(8, 8)).astype(np.float32), "W2": rng.normal(size=(8, 8)).astype(np.float32),
                        "zero": np.array(0, np.float32)}, d / "m.onnx")
    np.save(d / "x.npy", rng.normal(size=(6, 8)).astype(np.float32))
    return ["calibrate", model, "--data", d / "x.npy", "--output", d / "out", "--exclude-op-type", "MatMul"]


def nan_in_one_sample_on_torch(d: Path):
    return nan_in_one_sample(d) + ["--device", "cpu"]  # the PyTorch collector said only 'samples 0..11'


CASES = [
    Case("exclude_regex_of_subgraph_convs", exclude_regex_of_subgraph_convs,
         "--exclude-regex '_conv$' matches only nodes inside subgraphs (else_conv in If 'branch')"),
    Case("exclude_op_type_only_in_a_subgraph", exclude_op_type_only_in_a_subgraph,
         "--exclude-op-type MatMul: every MatMul of the model is inside a subgraph (then_matmul in If 'branch')"),
    Case("nan_in_one_sample_on_torch", nan_in_one_sample_on_torch,
         "input 'x' contains NaN or Inf in the batch of samples 0..11 (first: sample 7)"),
]
