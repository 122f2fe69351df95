"""The GPU install extra needs torch alone: beside a CPU torch, pip resolves it with no index and installs only quant."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _extras():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_the_gpu_and_torch_extras_require_torch_only():
    extras = _extras()
    assert extras["gpu"] == extras["torch"] == ["torch>=2.1"]
    every = [req for reqs in extras.values() for req in reqs]
    assert not any("onnx2torch" in req or "torchvision" in req for req in every)


def test_pip_installs_nothing_but_quant_for_the_gpu_extra_beside_the_installed_torch(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("setuptools")
    for name in ("pyproject.toml", "setup.py", "README.md"):  # a copy: pip's metadata build writes nothing here
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "quant").mkdir()
    (tmp_path / "quant" / "__init__.py").write_text("")
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                           "--quiet", "--report", str(report), ".[gpu]"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr  # with no index, every requirement is already met: torch by this torch
    install = json.loads(report.read_text())["install"]
    assert [item["metadata"]["name"] for item in install] == ["quant-trt"]
    requires = install[0]["metadata"]["requires_dist"]
    assert [r for r in requires if 'extra == "gpu"' in r] == ['torch>=2.1; extra == "gpu"']
