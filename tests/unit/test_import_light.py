import subprocess
import sys

HEAVY = ("onnxruntime", "torch", "datasets", "tensorrt", "onnx", "sklearn", "PIL")


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_quant_pulls_no_heavy_dependency():
    loaded = _imported_after("import quant")
    assert not {m for m in HEAVY if m in loaded}


def test_import_calibrators_is_numpy_only():
    loaded = _imported_after("import quant.calibrators, quant.core.histogram")
    assert not {m for m in HEAVY if m in loaded}


def test_cli_help_is_light():
    loaded = _imported_after("from quant.cli.main import build_parser; build_parser()")
    assert not {m for m in ("onnxruntime", "torch", "datasets", "tensorrt") if m in loaded}
