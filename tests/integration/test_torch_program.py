"""`quant calibrate model.pt2`: a torch.export program from the CLI, exported to ONNX as the Python API's module path."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from quant.backends.onnxruntime import OrtRunner  # noqa: E402
from quant.core.onnx_model import load_model  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)  # 8 channels: a multiple of 4 (1 -> 6 stays in float)
        self.fc = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, input):  # noqa: A002  (named after the digits data's key)
        return self.fc(torch.flatten(torch.relu(self.conv(input)), 1))


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    net = Net().eval()
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    exported = torch.export.export(net, (torch.zeros(2, 1, 8, 8),))  # static shapes: quant still gets a dynamic batch
    torch.export.save(exported, str(path))
    return net, path


def test_cli_calibrates_a_torch_export_program_and_writes_its_fp32_onnx(program, digits, tmp_path):
    net, path = program
    out = tmp_path / "out"
    proc = run_cli(["calibrate", path, "--data", digits["calibration"], "--output", out, "--device", "cpu"])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "collection pass: PyTorch" in proc.stdout
    assert (out / "model.int8.onnx").exists() and (out / "model.fp32.onnx").exists()
    fp32 = load_model(out / "model.fp32.onnx")
    assert [i.name for i in fp32.graph.input] == ["input"]
    assert fp32.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch axis is dynamic
    data = np.load(digits["calibration"])["input"][:5]  # 5 samples; the program was exported with 2
    with torch.no_grad():
        expected = net(torch.from_numpy(data)).numpy()
    got = OrtRunner(fp32).run({"input": data})[0]
    assert float(np.abs(got - expected).max()) <= 1e-5 * max(1.0, float(np.abs(expected).max()))
    manifest = json.loads((out / "quant.json").read_text())
    assert manifest["model"]["path"] == str((out / "model.fp32.onnx").resolve())
    int8 = OrtRunner(load_model(out / "model.int8.onnx")).run({"input": data})[0]
    assert np.mean(int8.argmax(1) == expected.argmax(1)) >= 0.8  # a usable INT8 model of this program


def test_a_pt2_without_torch_installed_is_one_error_line(program, digits, tmp_path):
    _, path = program
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent)] + sys.path))
    proc = subprocess.run([sys.executable, "-m", "quant", "calibrate", str(path), "--data", str(digits["calibration"]),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0] == (f"Error: '{path}' is a torch.export program: reading it needs torch, "
                                            "which is not installed"), proc.stderr
    assert lines[1].startswith("Hint: ") and not (tmp_path / "out").exists()
