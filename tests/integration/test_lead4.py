"""Regression tests from the lead's own tries this stop."""
import json

import numpy as np

from conftest import run_cli


def test_bias_correction_line_counts_one_layer_in_the_singular(tmp_path):
    """A Gemm with a bias (corrected) and a MatMul without one: the line said 'applied to 1 layers ... (1 layers have
    no bias ...)'; the counts must be quant.json's and read right."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("A", (16, 8)), ("c", (8,)), ("B", (8, 5)))]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "A", "c"], ["h"], name="proj"), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "B"], ["y"], name="head")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "cal.npz", x=rng.normal(size=(20, 16)).astype(np.float32))
    proc = run_cli(["calibrate", tmp_path / "m.onnx", "--data", tmp_path / "cal.npz", "--output", tmp_path / "out",
                    "--method", "minmax", "--bias-correction"])
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((tmp_path / "out" / "quant.json").read_text())["bias_correction"]
    assert entry["applied"] is True and len(entry["layers"]) == 1 and len(entry["not_corrected"]) == 1
    line = next(line for line in proc.stdout.splitlines() if line.startswith("bias correction (minmax)"))
    assert line.startswith("bias correction (minmax): applied to 1 layer, ") and "1 layers" not in line
    assert line.endswith("(1 layer has no bias to absorb a shift)")


def test_ctrl_c_while_the_cli_modules_load_is_an_interrupt_not_a_traceback(tmp_path):
    """A Ctrl-C in the first second of `quant ...`, while quant.cli.main still imports numpy and the subcommands,
    printed a Python traceback (a stranger's try: 8 of 30 early interrupts). The interrupt is raised here at the
    import itself, as the signal would raise it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'quant.cli.main':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "sys.argv = ['quant', 'calibrate', '--help']\n"
        "import runpy\n"
        "runpy.run_module('quant', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr == "Interrupted: nothing was written.\n" and proc.stdout == ""


def test_fallback_that_floats_every_layer_says_the_model_is_fp32(digits, tmp_path):
    """A bound only met with every layer in float (SQNR >= 120 dB; 134 dB then, the residual Adds' Q/DQ remain):
    fallback printed '7 layer(s) in float meets the bound' and nothing more, as if an INT8 model had passed; it
    must say that no weighted layer is left in INT8."""
    import quant

    calibration = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(calibration)
    layers = len(json.loads((calibration / "quant.json").read_text())["layers"])
    proc = run_cli(["fallback", digits["model"], "--calibration", calibration, "--data", digits["heldout"],
                    "--metric", "sqnr", "--min-value", "120", "--output", tmp_path / "x"])
    assert proc.returncode == 0, proc.stderr
    assert f"{layers} layer(s) in float meets the bound" in proc.stdout
    assert f"note: that is every layer the calibration quantizes ({layers}): no weighted layer is left in INT8" \
        in proc.stdout
    fewer = run_cli(["fallback", digits["model"], "--calibration", calibration, "--data", digits["heldout"],
                     "--metric", "sqnr", "--min-value", "30", "--output", tmp_path / "y"])
    assert fewer.returncode == 0 and "left in INT8" not in fewer.stdout
