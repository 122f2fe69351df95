"""Image preprocessing recorded in quant.json at calibration and reused by eval, gate and sensitivity."""
import json

import numpy as np
import pytest
from PIL import Image

import quant
from conftest import run_cli
from models import dynamic_conv
from quant.core.errors import QuantError

FLAGS = ["--resize", "12,12", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(0)
    images = root / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 16, 3), dtype=np.uint8)).save(images / label / f"{i}.png")
    model = dynamic_conv(root / "model.onnx")
    proc = run_cli(["calibrate", model, "--data", images, "--output", root / "cal", "--method", "minmax", *FLAGS])
    assert proc.returncode == 0, proc.stderr
    return root, model, images


def _top1(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if "top1" in line or "top-1" in line)


def test_calibrate_records_the_preprocessing(calibrated):
    root, _, _ = calibrated
    recorded = json.loads((root / "cal" / "quant.json").read_text())["data"]["preprocess"]
    assert recorded["resize"] == [12, 12] and recorded["mean"] == [0.485, 0.456, 0.406]
    assert recorded["std"] == [0.229, 0.224, 0.225] and recorded["layout"] == "NCHW"


def test_eval_of_a_model_in_the_folder_reuses_it_and_says_so(calibrated):
    root, model, images = calibrated
    reused = run_cli(["eval", model, root / "cal" / "model.int8.onnx", "--data", images, "--json"])
    explicit = run_cli(["eval", model, root / "cal" / "model.int8.onnx", "--data", images, "--json", *FLAGS])
    assert reused.returncode == 0 and explicit.returncode == 0, reused.stderr + explicit.stderr
    assert "preprocessing from" in reused.stderr and "mean 0.485,0.456,0.406" in reused.stderr
    assert json.loads(reused.stdout)["outputs"] == json.loads(explicit.stdout)["outputs"]
    elsewhere = root / "copy.int8.onnx"  # the same model outside the folder: nothing recorded, defaults apply
    elsewhere.write_bytes((root / "cal" / "model.int8.onnx").read_bytes())
    plain = run_cli(["eval", model, elsewhere, "--data", images, "--json", "--resize", "12,12"])
    assert "preprocessing from" not in plain.stderr
    assert json.loads(plain.stdout)["outputs"] != json.loads(explicit.stdout)["outputs"]


def test_preprocess_from_a_folder_for_a_model_elsewhere(calibrated):
    root, model, images = calibrated
    elsewhere = root / "moved.int8.onnx"
    elsewhere.write_bytes((root / "cal" / "model.int8.onnx").read_bytes())
    moved = run_cli(["eval", model, elsewhere, "--data", images, "--json", "--preprocess-from", root / "cal"])
    inside = run_cli(["eval", model, root / "cal" / "model.int8.onnx", "--data", images, "--json"])
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["outputs"] == json.loads(inside.stdout)["outputs"]
    assert "preprocessing from" in moved.stderr
    bad = run_cli(["eval", model, elsewhere, "--data", images, "--preprocess-from", root])
    assert bad.returncode == 2 and "has no quant.json with recorded image preprocessing" in bad.stderr


def test_explicit_options_win_and_are_named(calibrated):
    root, model, images = calibrated
    proc = run_cli(["eval", model, root / "cal" / "model.int8.onnx", "--data", images, "--mean", "0.5"])
    assert proc.returncode == 0, proc.stderr
    assert "--mean 0.5 replaces the calibration's mean 0.485,0.456,0.406" in proc.stderr
    assert "resize 12x12" in proc.stderr  # the rest still comes from the record


def test_sensitivity_and_gate_reuse_the_calibration_folder(calibrated, capsys):
    root, model, images = calibrated
    report = quant.sensitivity(model, root / "cal", images, metric="cosine")
    assert len(report.layers) == 3
    assert f"preprocessing from {root / 'cal' / 'quant.json'} (as calibrated): resize 12x12" in capsys.readouterr().err
    _, outcome = quant.fallback(model, root / "cal", images, metric="cosine", min_value=0.0)
    assert outcome and "resize 12x12" in capsys.readouterr().err
    proc = run_cli(["gate", model, root / "cal" / "model.int8.onnx", "--data", images, "--metric", "cosine",
                    "--min-value", "0.5"])
    assert proc.returncode == 0, proc.stderr
    assert "preprocessing from" in proc.stderr


def test_recorded_spec_is_the_one_applied(calibrated):
    root, model, images = calibrated
    from quant.datasets import choose_preprocess, open_source

    source = open_source(images, choose_preprocess(None, root / "cal"))
    assert source.sample(0)["input"].shape == (3, 12, 12)
    raw = np.asarray(Image.open(source.files[0]).convert("RGB").resize((12, 12), resample=2), np.float32) / 255
    expected = ((raw - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    np.testing.assert_allclose(source.sample(0)["input"], expected, atol=1e-5)


def test_image_options_with_array_data_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3, 6, 6), np.float32))
    with pytest.raises(QuantError, match="holds arrays, not images"):
        quant.calibrate(dynamic_conv(tmp_path / "m.onnx"), tmp_path / "d.npz", preprocess={"mean": (0.5,)})
