"""Bad inputs for the PyTorch backend (--device): each ends in one 'Error:' line, exit code 2, nothing written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def unknown_device(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--device", "gpu0"]


def cuda_device_out_of_range(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--device", "cuda:7"]


def op_the_converter_lacks(d: Path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
             helper.make_node("Hardmax", ["c"], ["y"], name="hardmax", axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(d / "hardmax.onnx"))
    np.save(d / "data.npy", rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    return ["calibrate", d / "hardmax.onnx", "--data", d / "data.npy", "--output", d / "out", "--device", "cpu"]


def nan_on_the_device(d: Path):
    data = np.load(CALIBRATION)["input"].copy()
    data[5, 0, 3, 3] = np.inf
    np.save(d / "inf.npy", data)
    return ["calibrate", MODEL, "--data", d / "inf.npy", "--output", d / "out", "--device", "cpu"]


def pt2_not_a_program(d: Path):
    (d / "model.pt2").write_bytes(Path(MODEL).read_bytes())  # an ONNX file under a .pt2 name
    return ["calibrate", d / "model.pt2", "--data", CALIBRATION, "--output", d / "out"]


def pt2_a_saved_tensor(d: Path):
    import torch

    torch.save({"weight": torch.zeros(3)}, d / "weights.pt2")  # torch.save, not torch.export.save
    return ["calibrate", d / "weights.pt2", "--data", CALIBRATION, "--output", d / "out"]


def pt2_missing(d: Path):
    return ["calibrate", d / "absent.pt2", "--data", CALIBRATION, "--output", d / "out"]


CASES = [
    Case("unknown_device", unknown_device, "--device 'gpu0' is not a device"),
    Case("cuda_device_out_of_range", cuda_device_out_of_range, "--device cuda:7"),
    Case("op_the_converter_lacks", op_the_converter_lacks, "no implementation of the ONNX op Hardmax (node 'hardmax'"),
    Case("nan_on_the_device", nan_on_the_device, "input 'input' contains NaN or Inf"),
    Case("pt2_not_a_program", pt2_not_a_program, "is not a torch.export program (ExportedProgram)"),
    Case("pt2_a_saved_tensor", pt2_a_saved_tensor, "is not a torch.export program (ExportedProgram)"),
    Case("pt2_missing", pt2_missing, "absent.pt2' does not exist"),
]
