"""Bugs found by trying the merged tool end to end through the CLI, as a newcomer would."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import run_cli
from models_outputs import digits_split, features_then_logits


def _run(model, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


@pytest.fixture(scope="module")
def two_outputs_folder(tmp_path_factory):
    """features [N, 32] then logits [N, 10]; calibrated with entropy and mse into one folder, eval'd on the folder."""
    d = tmp_path_factory.mktemp("two")
    _, _, calibration, held_x, held_y = digits_split()
    model = features_then_logits(d / "ftl.onnx")
    np.savez(d / "cal.npz", x=calibration)
    np.savez(d / "held.npz", x=held_x, label=held_y)
    proc = run_cli(["calibrate", model, "--data", d / "cal.npz", "--method", "entropy,mse", "--output", d / "out"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["eval", model, d / "out", "--data", d / "held.npz", "--output-json", d / "out" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    return d, model, held_x, held_y, proc.stdout


def test_folder_eval_prints_percent_once_and_names_the_scored_output(two_outputs_folder):
    # Found: `quant eval MODEL DIR` printed "top1 8000.00%" and "agreement 9900.00%" (percent scaled twice).
    d, model, held_x, held_y, stdout = two_outputs_folder
    fp32 = _run(model, held_x)
    lines = stdout.splitlines()
    top1 = next(line for line in lines if line.startswith("top1"))
    expected = [100 * np.mean(fp32[1].argmax(1) == held_y)]
    for method in ("entropy", "mse"):
        int8 = _run(d / "out" / method / "model.int8.onnx", held_x)
        expected.append(100 * np.mean(int8[1].argmax(1) == held_y))
    assert top1.split() == ["top1@logits"] + [f"{v:.2f}%" for v in expected]
    agreement = next(line for line in lines if line.startswith("'logits' agreement")).split()[2:]
    for method, cell in zip(("entropy", "mse"), agreement):
        int8 = _run(d / "out" / method / "model.int8.onnx", held_x)
        assert cell == f"{100 * np.mean(int8[1].argmax(1) == fp32[1].argmax(1)):.2f}%"
    best = next(line for line in lines if line.startswith("highest INT8 top1"))
    assert f"{max(expected[1:]):.2f}%" in best


def test_folder_report_table_is_in_percent(two_outputs_folder):
    d, *_ = two_outputs_folder
    proc = run_cli(["report", d / "out"])
    assert proc.returncode == 0, proc.stderr
    folder = json.loads((d / "out" / "eval.json").read_text())
    row = (d / "out" / "report.md").read_text().split("| `top1@logits` |")[1].splitlines()[0]
    cells = [c.strip() for c in row.strip(" |").split("|")]
    assert cells == [f"{folder['methods']['entropy']['task']['top1']['fp32']:.2f}%"] + [
        f"{folder['methods'][m]['task']['top1']['int8']:.2f}%" for m in ("entropy", "mse")]
    assert all(float(c.rstrip("%")) <= 100 for c in cells)


def _image_folders(d):
    """A 3-class PNG folder (16x16 RGB, one channel brightened per class) for calibration and one held out."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, n in (("cal", 6), ("held", 8)):
        for index, name in enumerate(("bird", "cat", "dog")):
            (d / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (16, 16, 3))
                pixels[..., index] = np.minimum(pixels[..., index] + 100, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(d / split / name / f"{name}_{i}.png")
    return d / "cal", d / "held"


def _image_model(path):
    """pixels [N, 3, 8, 8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> scores [N, 3]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "fw"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["pixels", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["scores"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "image", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_folder_eval_of_an_image_folder_applies_the_recorded_preprocessing(tmp_path):
    # Found: `quant eval MODEL DIR --data images/` on a multi-method folder ignored the preprocessing recorded
    # at calibration (it does for one method's model) and refused: "expects size 8 ... have shape (3, 16, 16)".
    from PIL import Image

    cal, held = _image_folders(tmp_path)
    model = _image_model(tmp_path / "img.onnx")
    proc = run_cli(["calibrate", model, "--data", cal, "--resize", "8,8", "--mean", "0.5,0.5,0.5", "--std", "0.25",
                    "--method", "entropy,minmax", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["eval", model, tmp_path / "out", "--data", held, "--output-json", tmp_path / "out" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    assert "preprocessing from" in proc.stderr and "mean 0.5,0.5,0.5" in proc.stderr
    files = sorted(held.glob("*/*.png"))
    x = np.stack([((np.asarray(Image.open(f).convert("RGB").resize((8, 8), resample=2), np.float32) / 255 - 0.5)
                   / 0.25).transpose(2, 0, 1) for f in files]).astype(np.float32)
    y = np.array([("bird", "cat", "dog").index(f.parent.name) for f in files])
    fp32 = _run(model, x)[0].astype(np.float64)
    folder = json.loads((tmp_path / "out" / "eval.json").read_text())
    for method in ("entropy", "minmax"):
        int8 = _run(tmp_path / "out" / method / "model.int8.onnx", x)[0].astype(np.float64)
        got = folder["methods"][method]
        assert got["task"]["top1"]["fp32"] == pytest.approx(100 * np.mean(fp32.argmax(1) == y))
        assert got["task"]["top1"]["int8"] == pytest.approx(100 * np.mean(int8.argmax(1) == y))
        sqnr = 10 * np.log10((fp32 ** 2).sum() / ((fp32 - int8) ** 2).sum())
        assert got["outputs"]["scores"]["sqnr_db"] == pytest.approx(sqnr, abs=0.01)
    proc = run_cli(["report", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("target", ["quant.json", "histograms.npz", "entropy/quant.json", "summary.json"])
def test_output_json_never_replaces_the_calibration_it_evaluates(two_outputs_folder, target):
    # Found: `quant eval MODEL DIR --data H --output-json DIR/quant.json` exited 0 and replaced the calibration's
    # quant.json (listed in the folder's manifest, so "quant wrote it") with the eval results; recalibrate and
    # build then read an eval file as the calibration ("'DIR/quant.json' is damaged: 'config'").
    d, model, *_ = two_outputs_folder
    folder = d / "out"
    int8 = folder / "entropy" / "model.int8.onnx"
    path = folder / target
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for args in (["eval", model, folder if "/" not in target else folder / "entropy", "--data", d / "held.npz",
                  "--output-json", path],
                 ["gate", model, int8, "--data", d / "held.npz", "--metric", "sqnr@logits", "--min-value", "1",
                  "--output-json", path]):
        if not path.exists():
            continue
        proc = run_cli(args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        error, hint = proc.stderr.strip().splitlines()
        assert error.startswith("Error: --output-json") and "input" in error and hint.startswith("Hint: ")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    # an eval.json next to the calibration stays allowed (README's own example)
    proc = run_cli(["eval", model, folder, "--data", d / "held.npz", "--output-json", folder / "eval.json"])
    assert proc.returncode == 0, proc.stderr


def test_sensitivity_says_n_a_for_an_undefined_rank_correlation(two_outputs_folder, tmp_path):
    # Found: with fewer than 3 layers (or all tied) sensitivity printed "rank correlation ...: nan".
    d, model, *_ = two_outputs_folder
    import shutil

    shutil.copytree(d / "out" / "entropy", tmp_path / "entropy")
    proc = run_cli(["sensitivity", model, "--calibration", tmp_path / "entropy", "--data", d / "held.npz"])
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("rank correlation"))
    assert "nan" not in line and line.endswith("n/a (undefined: fewer than 3 layers, or every layer scores the same)")
    assert json.loads((tmp_path / "entropy" / "sensitivity.json").read_text())[
        "rank_correlation_one_pass_vs_exhaustive"] is None


def test_an_integer_output_gets_no_sqnr_or_cosine(tmp_path):
    # Found: a model that also outputs its ArgMax (int64 class ids) got "pred cosine 1.00000, SQNR inf" in eval:
    # SQNR and cosine of class indices mean nothing (one flipped class would print an arbitrary dB).
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((12, 4)).astype(np.float32), "w")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc"),
             helper.make_node("ArgMax", ["logits"], ["pred"], name="argmax", axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "argmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info("pred", TensorProto.INT64, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    np.save(tmp_path / "cal.npy", rng.standard_normal((40, 12)).astype(np.float32))
    held = rng.standard_normal((50, 12)).astype(np.float32)
    np.save(tmp_path / "held.npy", held)
    assert run_cli(["calibrate", tmp_path / "m.onnx", "--data", tmp_path / "cal.npy", "--output", tmp_path / "o"]).returncode == 0
    proc = run_cli(["eval", tmp_path / "m.onnx", tmp_path / "o", "--data", tmp_path / "held.npy", "--json"])
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)["outputs"]
    assert outputs["pred"]["sqnr_db"] is None and outputs["pred"]["cosine"] is None
    fp32, int8 = _run(tmp_path / "m.onnx", held), _run(tmp_path / "o" / "model.int8.onnx", held)
    assert outputs["pred"]["max_abs_error"] == float(np.abs(fp32[1] - int8[1]).max())
    a, b = fp32[0].astype(np.float64), int8[0].astype(np.float64)
    assert outputs["logits"]["sqnr_db"] == pytest.approx(10 * np.log10((a ** 2).sum() / ((a - b) ** 2).sum()), abs=1e-6)


def test_output_piped_into_head_ends_quietly(digits, tmp_path):
    """`quant calibrate ... | head`: the reader has closed the pipe (here `true`, gone before the first line);
    no traceback, the artifacts are complete."""
    import subprocess
    import sys

    command = (f"{sys.executable} -m quant calibrate {digits['model']} --data {digits['calibration']} "
               f"--method entropy,mse,minmax,percentile --output {tmp_path / 'out'} | true")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert "Error" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 141)  # 141: quant saw the closed pipe (128 + SIGPIPE), as Unix tools end
    assert (tmp_path / "out" / "mse" / "model.int8.onnx").is_file()
