"""Custom metrics (module:function, file.py:function): every way a user's function can go wrong is bad input.

A function returning a string, None, an array, a 3-tuple or NaN, one that fails to import (SyntaxError,
raising on import, sys.exit on import), a malformed spec, a missing function: exit 2 with one Error line
naming the metric -- not a traceback, and NaN is not an accuracy drop (exit 1). sys.exit() inside it is
a user error; Ctrl-C inside it stays an interrupt (130). A module in the current folder loads under the
console script, and a third parameter receives the FP32 outputs.
"""
import itertools
import subprocess
import sys
import textwrap

import pytest

from conftest import DIGITS, ROOT
from quant.cli.main import main

METRICS = textwrap.dedent('''
    import sys
    import numpy as np

    def accuracy(outputs, labels):
        return float(np.mean(outputs[0].argmax(1) == labels))

    def agreement_with_fp32(outputs, labels, fp32_outputs):
        return float(np.mean(outputs[0].argmax(1) == fp32_outputs[0].argmax(1)))

    def pair(outputs, labels):
        return np.sum(outputs[0].argmax(1) == labels), np.int64(len(labels))

    def string(outputs, labels): return "0.9"
    def none(outputs, labels): return None
    def array(outputs, labels): return outputs[0].argmax(1) == labels
    def triple(outputs, labels): return (1, 2, 3)
    def pair_of_text(outputs, labels): return ("a", 2)
    def zero_count(outputs, labels): return (1.0, 0)
    def nan(outputs, labels): return float("nan")
    def inf(outputs, labels): return np.float32("inf")
    def exits(outputs, labels): sys.exit(3)
    def interrupted(outputs, labels): raise KeyboardInterrupt
    def raises(outputs, labels): raise ValueError("boom")
    not_a_function = 3
''')
_counter = itertools.count()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding the user's metric modules, as the current folder; returns (folder, module name)."""
    name = f"user_metrics_{next(_counter)}"  # a fresh module name: imports are cached per process
    (tmp_path / f"{name}.py").write_text(METRICS)
    (tmp_path / f"broken_syntax_{name}.py").write_text("def f(:\n")
    (tmp_path / f"raising_{name}.py").write_text("raise RuntimeError('at import')\n")
    (tmp_path / f"exiting_{name}.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path, name


def _gate(metric, capsys, *extra):
    capsys.readouterr()
    code = main(["gate", str(DIGITS / "model.onnx"), str(DIGITS / "model.onnx"), "--data", str(DIGITS / "heldout.npz"),
                 "--num-samples", "64", "--metric", metric, "--max-drop", "1", *extra])
    return code, capsys.readouterr()


def _one_error(captured, *parts):
    lines = captured.err.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), captured.err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), captured.err
    for part in parts:
        assert part in lines[0], captured.err


@pytest.mark.parametrize("function,message", [
    ("string", "returned the string '0.9'"),
    ("none", "returned None"),
    ("array", "returned an array of shape [32] (bool)"),  # the first batch (default batch size 32)
    ("triple", "returned a tuple of 3"),
    ("pair_of_text", "a (sum, count) pair holds two numbers"),
    ("zero_count", "count of 0"),
    ("nan", "not a finite value"),
    ("inf", "not a finite value"),
    ("exits", "called sys.exit(3) on a batch"),
    ("raises", "failed on a batch: ValueError: boom"),
    ("not_a_function", "is not a function"),
    ("missing", "has no function 'missing'"),
])
def test_bad_function_is_bad_input(workdir, capsys, function, message):
    folder, name = workdir
    code, captured = _gate(f"{name}:{function}", capsys)
    assert code == 2, captured.out + captured.err  # NaN included: bad input, not an accuracy drop (1)
    _one_error(captured, f"metric '{name}:{function}'", message)


@pytest.mark.parametrize("spec,message", [
    ("broken_syntax_{name}:f", "failed on import: SyntaxError"),
    ("raising_{name}:f", "failed on import: RuntimeError: at import"),
    ("exiting_{name}:f", "called sys.exit(0) on import"),
    (":f", "is not MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("{name}:", "is not MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("no_such_module_{name}:f", "no module named"),
    ("./missing_{name}.py:f", "does not exist"),
])
def test_bad_spec_or_import_is_bad_input(workdir, capsys, spec, message):
    folder, name = workdir
    spec = spec.format(name=name)
    code, captured = _gate(spec, capsys)
    assert code == 2, captured.out + captured.err
    _one_error(captured, message)


def test_keyboard_interrupt_in_the_metric_is_an_interrupt(workdir, capsys):
    folder, name = workdir
    code, captured = _gate(f"{name}:interrupted", capsys)
    assert code == 130 and "Interrupted" in captured.err and "Error" not in captured.err


def test_good_functions_pass_with_the_right_values(workdir, capsys):
    folder, name = workdir
    code, captured = _gate(f"{name}:accuracy", capsys)
    assert code == 0, captured.err
    by_module = captured.out.splitlines()[0]
    code, captured = _gate(f"./{name}.py:accuracy", capsys)  # by file path: the same numbers
    assert code == 0 and captured.out.splitlines()[0].split("FP32", 1)[1] == by_module.split("FP32", 1)[1]
    code, captured = _gate(f"{folder / name}.py:pair", capsys)
    assert code == 0 and captured.out.splitlines()[0].split("FP32", 1)[1] == by_module.split("FP32", 1)[1]
    # FP32 against itself agrees 100%; the same model as "INT8" too
    code, captured = _gate(f"{name}:agreement_with_fp32", capsys)
    assert code == 0 and "FP32 1.0000, INT8 1.0000" in captured.out, captured.out


def test_nan_metric_in_sensitivity_and_fallback_is_bad_input(workdir, capsys, tmp_path):
    folder, name = workdir
    assert main(["calibrate", str(DIGITS / "model.onnx"), "--data", str(DIGITS / "calibration.npz"),
                 "--output", str(tmp_path / "cal"), "--method", "minmax"]) == 0
    common = ["--calibration", str(tmp_path / "cal"), "--data", str(DIGITS / "heldout.npz"), "--num-samples", "32",
              "--metric", f"{name}:nan"]
    capsys.readouterr()
    assert main(["sensitivity", str(DIGITS / "model.onnx"), *common, "--output", str(tmp_path / "s")]) == 2
    _one_error(capsys.readouterr(), "not a finite value")
    assert main(["fallback", str(DIGITS / "model.onnx"), *common, "--max-drop", "1", "--output",
                 str(tmp_path / "fb")]) == 2
    _one_error(capsys.readouterr(), "not a finite value")
    assert not (tmp_path / "fb").exists() and not (tmp_path / "s").exists()


def test_module_in_the_current_folder_under_the_console_script(tmp_path):
    """The console script's sys.path[0] is its bin folder, not the current folder (issue 17)."""
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir(), work.mkdir()
    (bin_dir / "quant").write_text("import sys\nfrom quant.cli.main import main\nsys.exit(main())\n")
    (work / "my_metric.py").write_text(METRICS)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(bin_dir / "quant"), "gate", DIGITS / "model.onnx", DIGITS / "model.onnx",
                           "--data", DIGITS / "heldout.npz", "--num-samples", "32", "--metric", "my_metric:accuracy",
                           "--max-drop", "0"], cwd=work, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PASS: my_metric:accuracy")
