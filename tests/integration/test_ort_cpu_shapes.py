"""--target all on model shapes where ONNX Runtime runs few or no integer kernels: every run ends well.

It used to write the folder and then crash formatting a None SQNR (TypeError). Now each run exits 0 and
says honestly what ORT ran: 'no integer kernel' with SQNR not available, or the kernels and the SQNR
(or 'identical'), and non-float outputs (int64 indices, bool masks) by the share of equal values.
"""
import json

import numpy as np
import pytest

from conftest import run_cli
from models_shapes import SHAPES


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    out = {}
    for name, build in SHAPES.items():
        model, feeds = build(folder / f"{name}.onnx")
        np.savez(folder / f"{name}.npz", **feeds)
        proc = run_cli(["calibrate", model, "--data", folder / f"{name}.npz", "--output", folder / f"out_{name}",
                        "--target", "all", "--method", "minmax"])
        out[name] = (proc, folder / f"out_{name}")
    return out


@pytest.mark.parametrize("name", list(SHAPES))
def test_target_all_ends_well_and_says_what_ran(runs, name):
    proc, folder = runs[name]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    check = json.loads((folder / "quant.json").read_text())["targets"]["ort-cpu"]["validation"]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("ort-cpu minmax:"))
    if not check["integer_kernels"]:
        assert "runs no integer kernel" in line and "SQNR not available" in line
    else:
        assert "ORT integer kernels" in line
        for op, count in check["integer_kernels"].items():
            assert f"{count} {op}" in line
        sqnrs = [v["sqnr_db_ort_kernels_vs_emulated"] for v in check["outputs"].values()
                 if v.get("sqnr_db_ort_kernels_vs_emulated") is not None]
        if sqnrs:
            assert f"SQNR {min(sqnrs):.1f} dB" in line
        else:
            assert "identical" in line
    assert (folder / "model.ort-cpu.int8.onnx").exists() and (folder / "model.int8.onnx").exists()


@pytest.mark.parametrize("name", ["depthwise_conv", "conv_transpose", "weight_left_matmul", "if_model"])
def test_shapes_without_integer_kernels_record_no_sqnr(runs, name):
    proc, folder = runs[name]
    check = json.loads((folder / "quant.json").read_text())["targets"]["ort-cpu"]["validation"]
    assert check["integer_kernels"] == {}
    assert all(v["identical"] and v["sqnr_db_ort_kernels_vs_emulated"] is None for v in check["outputs"].values())
    assert check["worst_sqnr_db"] is None and check["agrees"]


@pytest.mark.parametrize("name,output,dtype", [("int_second_output", "cls", "int64"), ("bool_output", "positive", "bool")])
def test_non_float_outputs_are_compared_by_equality(runs, name, output, dtype):
    proc, folder = runs[name]
    check = json.loads((folder / "quant.json").read_text())["targets"]["ort-cpu"]["validation"]
    entry = check["outputs"][output]
    assert entry["dtype"] == dtype and entry["equal_fraction"] >= 0.9
    assert f"{output} {100 * entry['equal_fraction']:.1f}% equal" in proc.stdout
    float_output = next(n for n in check["outputs"] if n != output)
    assert check["outputs"][float_output]["sqnr_db_ort_kernels_vs_emulated"] > 25


def test_all_excluded_is_refused_by_naming_the_reason(tmp_path):
    from models_shapes import conv_transpose

    model, feeds = conv_transpose(tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", **feeds)
    proc = run_cli(["calibrate", model, "--data", tmp_path / "d.npz", "--output", tmp_path / "o", "--exclude", "deconv"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: nothing to quantize: every weighted op is left in float (1; deconv: ")
