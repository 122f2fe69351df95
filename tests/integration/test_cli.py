"""The CLI as a user meets it: the demo commands, and bad input -> one line, exit code 2, nothing left behind."""
import json

import numpy as np

from conftest import run_cli


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_calibrate_then_eval_prints_fp32_and_int8_top1(digits, tmp_path):
    out = tmp_path / "digits"
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "entropy",
                    "--output", out])
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".quant-manifest.json", "calibration.cache", "histograms.npz",
                                                     "model.int8.onnx", "quant.json"]
    proc = run_cli(["eval", digits["model"], out / "model.int8.onnx", "--data", digits["heldout"],
                    "--output-json", tmp_path / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    assert "INT8 runtime: emulate" in proc.stdout and "top1" in proc.stdout
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["runtime"]["int8"] == "emulate" and result["samples"] == 540
    assert abs(result["task"]["top1"]["drop"]) <= 1.0
    assert set(result["outputs"]["logits"]) >= {"agreement", "cosine", "sqnr_db", "max_abs_error"}
    assert len(result["worst_samples"]) == 5


def test_several_methods_write_one_folder_each_and_recalibrate(digits, tmp_path):
    out = tmp_path / "multi"
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "entropy,percentile,mse,minmax",
                    "--output", out, "--batch-size", "7"])
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"entropy", "percentile", "mse", "minmax", "summary.json",
                                               ".quant-manifest.json"}
    assert "absmax" in proc.stdout  # the comparison table
    proc = run_cli(["recalibrate", out / "entropy", "--method", "mse", "--output", tmp_path / "re"])
    assert proc.returncode == 0, proc.stderr
    a = json.loads((out / "mse" / "quant.json").read_text())["activations"]
    b = json.loads((tmp_path / "re" / "quant.json").read_text())["activations"]
    assert {t: v["amax"] for t, v in a.items()} == {t: v["amax"] for t, v in b.items()}


def test_rerun_replaces_an_earlier_output(digits, tmp_path):
    out = tmp_path / "again"
    for method in ("minmax", "entropy"):
        proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", method, "--output", out])
        assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "quant.json").read_text())["method"] == "entropy"
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def _bad_data(tmp_path):
    good = np.zeros((4, 1, 8, 8), np.float32)
    nan = good.copy()
    nan[2, 0, 3, 3] = np.nan
    cases = {
        "wrong_name.npz": (dict(x=good, y=good), "no array for model input 'input'"),
        "wrong_rank.npz": (dict(input=good[:, 0]), "has rank 4"),
        "wrong_dtype.npz": (dict(input=good.astype(np.int32)), "is float32, but the data 'input' is int32"),
        "wrong_size.npz": (dict(input=np.zeros((4, 1, 9, 9), np.float32)), "expects size 8 on axis 2"),
        "empty.npz": (dict(input=good[:0]), "empty"),
        "nan.npz": (dict(input=nan), "NaN or Inf"),
    }
    for name, (arrays, _) in cases.items():
        np.savez(tmp_path / name, **arrays)
    return {name: message for name, (_, message) in cases.items()}


def test_bad_inputs_give_one_line_exit_2_and_leave_nothing(digits, tmp_path):
    cases = [(["calibrate", tmp_path / "missing.onnx", "--data", digits["calibration"]], "does not exist")]
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not an onnx model at all" * 10)
    cases.append((["calibrate", tmp_path / "garbage.onnx", "--data", digits["calibration"]], "not a readable ONNX model"))
    (tmp_path / "text.onnx").write_text("hello")
    cases.append((["calibrate", tmp_path / "text.onnx", "--data", digits["calibration"]], "ONNX"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name, message in _bad_data(data_dir).items():
        cases.append((["calibrate", digits["model"], "--data", data_dir / name], message))
    (tmp_path / "emptydir").mkdir()
    cases.append((["calibrate", digits["model"], "--data", tmp_path / "emptydir"], "is empty"))
    cases.append((["calibrate", digits["model"], "--data", digits["calibration"], "--method", "kld"], "unknown calibration method"))
    (tmp_path / "afile").write_text("x")
    cases.append((["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "afile" / "sub"],
                  "cannot write to the output folder"))
    cases.append((["calibrate", digits["model"], "--data", digits["calibration"], "--output", digits["model"].parent],
                  "contains the input"))
    for args, message in cases:
        if "--output" not in args:
            args = args + ["--output", tmp_path / "out"]
        before = sorted(p.name for p in tmp_path.iterdir())
        proc = run_cli(args)
        assert proc.returncode == 2, (args, proc.stderr)
        _no_traceback(proc)
        lines = proc.stderr.strip().splitlines()
        assert lines[0].startswith("Error: ") and message in lines[0], (message, proc.stderr)
        assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("Hint: "))
        assert sorted(p.name for p in tmp_path.iterdir()) == before, "a failed run left files behind"


def test_eval_bad_labels_and_runtime(digits, tmp_path):
    np.save(tmp_path / "short.npy", np.zeros(3, np.int64))
    np.save(tmp_path / "range.npy", np.full(540, 12, np.int64))
    for labels, message in [(tmp_path / "short.npy", "has 3 entries but the data has 540"),
                            (tmp_path / "range.npy", "does not fit the 10 classes"),
                            ("nosuchcolumn", "no labels column 'nosuchcolumn'")]:
        proc = run_cli(["eval", digits["model"], digits["model"], "--data", digits["heldout"], "--labels", labels])
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        _no_traceback(proc)
    proc = run_cli(["eval", digits["model"], digits["model"], "--data", digits["heldout"], "--runtime", "gpu"])
    assert proc.returncode == 2 and proc.stderr.startswith("Error: argument --runtime")


def test_unwritable_output_is_refused_before_the_collection_pass(digits, tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path])
    assert proc.returncode == 2 and "was not written by quant" in proc.stderr
    assert (tmp_path / "keep.txt").read_text() == "user data"
