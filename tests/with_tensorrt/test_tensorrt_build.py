"""Runs only where TensorRT (and a GPU) exist; skipped with a reason elsewhere. Never mocked."""
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
pytestmark = pytest.mark.tensorrt


def test_build_engine_from_calibration_folder_and_evaluate(digits, tmp_path):
    import json

    import quant
    from quant.build import build

    quant.calibrate(digits["model"], digits["calibration"]).save(tmp_path / "cal")
    plan = build(tmp_path / "cal", tmp_path / "model.engine")
    assert (tmp_path / "model.engine").stat().st_size > 0
    manifest = json.loads((tmp_path / "cal" / "quant.json").read_text())
    assert manifest["tensorrt"]["version"] == ".".join(map(str, plan.version))
    report = quant.evaluate(digits["model"], tmp_path / "model.engine", digits["heldout"], runtime="tensorrt")
    assert report.task["top1"]["drop"] <= 1.0


def test_implicit_build_with_cache_calibrator(digits, tmp_path):
    import quant
    from quant.backends.tensorrt import implicit_supported, parse_version
    from quant.build import build

    if not implicit_supported(parse_version(trt.__version__)):
        pytest.skip("TensorRT >= 11 has no implicit calibration")
    quant.calibrate(digits["model"], digits["calibration"]).save(tmp_path / "cal")
    build(tmp_path / "cal", tmp_path / "implicit.engine", implicit=True)
    assert (tmp_path / "implicit.engine").stat().st_size > 0
