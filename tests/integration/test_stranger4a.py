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

from bad_inputs.cases_stranger3 import conv_fc_model
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


def test_recalibrate_of_a_moved_folder_finds_the_exported_model_inside_it(tmp_path, data):
    """A torch module's folder holds model.fp32.onnx; moved elsewhere, recalibrate takes that file (its sha256 checked)
    and gives the ranges of the original. Before: 'the FP32 model recorded ... does not exist any more'."""
    torch = pytest.importorskip("torch")
    import shutil

    import quant

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 6 * 6, 10)).eval()
    quant.calibrate(module, data, example_inputs=(torch.zeros(1, 3, 8, 8),)).save(tmp_path / "cal")
    shutil.move(tmp_path / "cal", tmp_path / "moved")
    proc = _cli(["recalibrate", tmp_path / "moved", "--method", "entropy", "--output", tmp_path / "rec"])
    assert proc.returncode == 0, proc.stderr
    import json

    old = json.loads((tmp_path / "moved" / "quant.json").read_text())["activations"]
    new = json.loads((tmp_path / "rec" / "quant.json").read_text())["activations"]
    assert {t: v["amax"] for t, v in new.items()} == {t: v["amax"] for t, v in old.items()} and len(old) == 2
    (tmp_path / "moved" / "model.fp32.onnx").write_bytes(onnx.load(str(tmp_path / "moved" / "model.int8.onnx"))
                                                         .SerializeToString())  # another model under that name
    proc = _cli(["recalibrate", tmp_path / "moved", "--method", "mse", "--output", tmp_path / "rec2"])
    assert proc.returncode == 2 and "is not the one" in proc.stderr and not (tmp_path / "rec2").exists()


def test_another_model_given_to_sensitivity_gets_a_hint_it_can_follow(tmp_path, data):
    """sensitivity and fallback take the FP32 model as an argument and have no --model: the hint names the recorded
    model instead. Before: 'Hint: pass --model with the original FP32 model', a flag they refuse."""
    import quant

    model = external_model(tmp_path / "m.onnx")
    other = conv_fc_model(tmp_path / "other.onnx", outputs=("logits",))
    quant.calibrate(model, data).save(tmp_path / "cal")
    for command in (["sensitivity", other, "--calibration", tmp_path / "cal", "--data", data, "--metric", "sqnr"],
                    ["fallback", other, "--calibration", tmp_path / "cal", "--data", data, "--metric", "sqnr",
                     "--min-value", "50", "--output", tmp_path / "fb"]):
        proc = _cli(command)
        assert proc.returncode == 2, proc.stderr
        error, hint = proc.stderr.strip().splitlines()
        assert "is not the one" in error and "--model" not in hint, proc.stderr
        assert hint == f"Hint: pass the FP32 model that quant.json records: {model.resolve()}"
    proc = _cli(["recalibrate", tmp_path / "cal", "--model", other, "--method", "mse", "--output", tmp_path / "r"])
    assert proc.returncode == 2 and "records" in proc.stderr and not (tmp_path / "r").exists()


def _renamed_output(path, name):
    model = onnx.load(str(conv_fc_model(path, outputs=("logits",))))
    for node in model.graph.node:
        node.input[:] = [name if t == "logits" else t for t in node.input]
        node.output[:] = [name if t == "logits" else t for t in node.output]
    model.graph.output[0].name = name
    onnx.save(model, str(path))
    return path


def test_gate_junit_stays_well_formed_xml_with_any_output_name(tmp_path, data):
    """An output name with a vertical tab and U+FFFE (valid ONNX, UTF-8) is written into gate.xml as an escape:
    the file parses and names the escaped output, gate.json keeps the exact name. Before: gate.xml held the raw
    characters, which XML 1.0 cannot hold even as references, and no CI system could read it."""
    import json
    import xml.etree.ElementTree as ET

    import quant

    name = 'lo]]>\x0b<&"gits\ufffe'
    model = _renamed_output(tmp_path / "m.onnx", name)
    quant.calibrate(model, data).save(tmp_path / "cal")
    proc = _cli(["gate", model, tmp_path / "cal" / "model.int8.onnx", "--data", data, "--metric", "sqnr",
                 "--min-value", "90", "--junit", tmp_path / "g.xml", "--output-json", tmp_path / "g.json"])
    assert proc.returncode == 1, proc.stderr  # the bound is not met: a failure, reported in both files
    root = ET.parse(tmp_path / "g.xml").getroot()
    shown = 'lo]]>\\x0b<&"gits\\ufffe'
    assert [c.get("name") for c in root.iter("testcase")] == [f"sqnr@{shown}"]
    assert root.find(".//failure").text.startswith(f"FAIL: sqnr@{shown} ")
    assert json.loads((tmp_path / "g.json").read_text())["checks"][0]["output"] == name


def test_ctrl_c_during_a_native_import_is_an_interrupt_not_a_missing_package(monkeypatch):
    """A Ctrl-C while onnxruntime loads can come back as ImportError('import numpy failed'): the KeyboardInterrupt
    its Python code raised is swallowed by the native import. Before: 'Error: this step needs the Python package
    'onnxruntime', which is not installed', exit 2, for a user who pressed Ctrl-C (1 run in 30 of quant eval
    interrupted in its first second); now the interrupt (exit 130, 'Interrupted: nothing was written.')."""
    import signal
    import types

    import quant.core.lazy as lazy
    from quant.core.errors import QuantError

    def swallowing_import(name):
        try:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C arrives inside the import ...
        except KeyboardInterrupt:
            raise ImportError("import numpy failed") from None  # ... which reports a failed import instead
        return types.ModuleType(name)

    monkeypatch.setattr(lazy, "importlib", types.SimpleNamespace(import_module=swallowing_import))
    with pytest.raises(KeyboardInterrupt):
        lazy.require("quant_test_native_module")
    monkeypatch.setattr(lazy, "importlib", types.SimpleNamespace(import_module=lambda name: (_ for _ in ()).throw(
        ImportError(f"No module named '{name}'"))))
    with pytest.raises(QuantError, match="which is not installed"):  # a package that is really missing: as before
        lazy.require("quant_test_native_module")


def test_save_model_twice_to_one_path_writes_the_weights_once(tmp_path):
    """quant.pipeline.save_model (public) with external data, twice to one path: the data file holds one copy
    of the weights and the model loads. onnx alone appends to an existing data file (it grew by the weights
    at every save)."""
    from quant.pipeline import save_model

    model = onnx.load(str(conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))))
    for _ in range(2):
        save_model(onnx.load(str(tmp_path / "m.onnx")), tmp_path / "x.onnx", external_data=True)
    weights = sum(np.prod(t.dims) * 4 for t in model.graph.initializer if np.prod(t.dims) * 4 >= 1024)
    assert (tmp_path / "x.onnx.data").stat().st_size == weights
    onnx.checker.check_model(onnx.load(str(tmp_path / "x.onnx")), full_check=True)


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="process substitution needs bash")
def test_a_model_from_a_pipe_is_refused_not_recorded_with_the_hash_of_nothing(tmp_path, data):
    """quant calibrate <(cat m.onnx): the pipe can be read once. Before: the model was read, then hashed from the
    drained pipe: quant.json recorded sha256 e3b0c442... (of no bytes) and a path '/proc/PID/fd/pipe:[N]', which
    recalibrate, sensitivity and fallback can never match. Data and labels from a pipe: "is empty: no images"
    and "no labels column '/dev/fd/63'"."""
    model = external_model(tmp_path / "m.onnx")
    quant_cmd = f"{sys.executable} -m quant"
    for args, what in (('calibrate <(cat "$1") --data "$2" --output "$3"', "model"),
                       ('calibrate "$1" --data <(cat "$2") --output "$3"', "data"),
                       ('eval "$1" "$1" --data "$2" --labels <(seq 0 23)', "labels file")):
        proc = subprocess.run(["/bin/bash", "-c", f"{quant_cmd} {args}", "_", str(model), str(data),
                               str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"Error: {what} '/dev/fd/") and "is a pipe, not a file" in proc.stderr
        assert not (tmp_path / "out").exists()
