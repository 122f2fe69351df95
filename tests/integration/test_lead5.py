"""Regression tests from the lead's own tries this stop."""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli


def _exact_output_model(folder):
    """x -> Conv -> GAP -> 'logits' [N, 8] (quantized), and x -> Relu -> GAP -> 'feat' [N, 3], which reads the
    float input (Q/DQ sits only on the conv's input): its INT8 output equals FP32's, SQNR +inf."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["logits"]),
             helper.make_node("Relu", ["x"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g2"]),
             helper.make_node("Flatten", ["g2"], ["feat"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8]),
         helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "m.onnx"))
    np.save(folder / "cal.npy", rng.standard_normal((32, 3, 8, 8)).astype(np.float32))
    np.save(folder / "val.npy", rng.standard_normal((16, 3, 8, 8)).astype(np.float32))


def test_an_infinite_sqnr_reads_inf_in_eval_json_and_the_reports(tmp_path):
    """eval printed 'inf' for an output INT8 leaves exact, eval.json held null (as for an integer output, n/a) and
    the report showed n/a; the methods report of a multi-method folder crashed ('unsupported format string passed
    to NoneType') on the worst samples, which listed exact samples as the worst."""
    _exact_output_model(tmp_path)
    model = tmp_path / "m.onnx"
    assert run_cli(["calibrate", model, "--data", tmp_path / "cal.npy", "--method", "minmax",
                    "--output", tmp_path / "one"]).returncode == 0
    proc = run_cli(["eval", model, tmp_path / "one", "--data", tmp_path / "val.npy", "--output-name", "feat",
                    "--output-json", tmp_path / "one" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("feat "))
    assert row.split()[-3] == "inf", row
    saved = json.loads((tmp_path / "one" / "eval.json").read_text())
    feat, logits = saved["outputs"]["feat"], saved["outputs"]["logits"]
    assert feat["sqnr_db"] is None and feat["sqnr_db_infinite"] == "inf" and feat["max_abs_error"] == 0
    assert np.isfinite(logits["sqnr_db"]) and logits["sqnr_db_infinite"] is None
    assert saved["worst_samples"] == []  # every sample of 'feat' is exact: none is a worst sample
    assert "worst samples" not in proc.stdout
    proc = run_cli(["report", tmp_path / "one"])
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "one" / "report.md").read_text()
    assert "| `feat` | \\[N\\, 3\\] | 100.00% (axis 1) | 1.00000 | inf | 0 |" in table, table

    assert run_cli(["calibrate", model, "--data", tmp_path / "cal.npy", "--method", "minmax,entropy",
                    "--output", tmp_path / "two"]).returncode == 0
    proc = run_cli(["eval", model, tmp_path / "two", "--data", tmp_path / "val.npy", "--output-name", "feat",
                    "--output-json", tmp_path / "two" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["report", tmp_path / "two"])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    assert "| output `feat` SQNR (dB) | | inf | inf |" in (tmp_path / "two" / "report.md").read_text()


def test_a_gate_on_an_infinite_sqnr_reads_inf_in_gate_json_and_the_report(tmp_path):
    """The gate printed 'INT8 inf dB', gate.json held null and the report's gate line read 'INT8 n/a; INT8 inf >=
    min 30.0'."""
    _exact_output_model(tmp_path)
    model = tmp_path / "m.onnx"
    assert run_cli(["calibrate", model, "--data", tmp_path / "cal.npy", "--method", "minmax",
                    "--output", tmp_path / "one"]).returncode == 0
    proc = run_cli(["gate", model, tmp_path / "one" / "model.int8.onnx", "--data", tmp_path / "val.npy",
                    "--metric", "sqnr@feat", "--min-value", "30", "--output-json", tmp_path / "one" / "gate.json"])
    assert proc.returncode == 0 and proc.stdout.startswith("PASS: sqnr@feat FP32 n/a, INT8 inf dB"), proc.stdout
    saved = json.loads((tmp_path / "one" / "gate.json").read_text())
    check = saved["checks"][0]
    assert check["int8"] is None and check["int8_infinite"] == "inf" and check["passed"] is True
    reported = {(r["metric"], r["output"]): r for r in saved["reported"]}
    assert reported[("sqnr", "logits")]["int8_infinite"] is None and reported[("sqnr", "logits")]["int8"] > 30
    assert run_cli(["report", tmp_path / "one"]).returncode == 0
    line = next(line for line in (tmp_path / "one" / "report.md").read_text().splitlines() if line.startswith("Gate:"))
    assert "INT8 inf dB;" in line and "n\\/a, INT8 n" not in line, line


def test_a_sensitivity_sweep_on_an_infinite_sqnr_reads_inf_in_its_json_and_the_report(tmp_path):
    """The sweep printed 'all layers INT8 inf' and its CSV 'inf'; sensitivity.json held null (as for an undefined
    number) and the report read 'all INT8 n/a' and n/a in the layer row."""
    _exact_output_model(tmp_path)
    model = tmp_path / "m.onnx"
    assert run_cli(["calibrate", model, "--data", tmp_path / "cal.npy", "--method", "minmax",
                    "--output", tmp_path / "one"]).returncode == 0
    proc = run_cli(["sensitivity", model, "--calibration", tmp_path / "one", "--data", tmp_path / "val.npy",
                    "--metric", "sqnr@feat", "--output", tmp_path / "one"])
    assert proc.returncode == 0 and "FP32 n/a, all layers INT8 inf" in proc.stdout, proc.stdout + proc.stderr
    saved = json.loads((tmp_path / "one" / "sensitivity.json").read_text())
    assert saved["all_quantized"] is None and saved["all_quantized_infinite"] == "inf"
    assert saved["fp32"] is None and saved["fp32_infinite"] is None  # FP32's SQNR is undefined, not infinite
    layer = saved["layers"][0]
    assert layer["only_this_infinite"] == "inf" and layer["local_sqnr_db_infinite"] is None
    assert np.isfinite(layer["local_sqnr_db"])
    assert run_cli(["report", tmp_path / "one"]).returncode == 0
    text = (tmp_path / "one" / "report.md").read_text()
    assert "FP32 n/a, all INT8 inf." in text and f"| 1 | `conv` | inf | inf | {layer['local_sqnr_db']:.2f} |" in text


def test_a_fallback_on_an_infinite_sqnr_reads_inf_in_its_json_and_the_report(tmp_path):
    """fallback printed 'INT8 inf >= min 30.0' and the value inf; fallback.json held null and the report's path
    table read n/a."""
    _exact_output_model(tmp_path)
    model = tmp_path / "m.onnx"
    assert run_cli(["calibrate", model, "--data", tmp_path / "cal.npy", "--method", "minmax",
                    "--output", tmp_path / "one"]).returncode == 0
    proc = run_cli(["fallback", model, "--calibration", tmp_path / "one", "--data", tmp_path / "val.npy",
                    "--metric", "sqnr@feat", "--min-value", "30", "--output", tmp_path / "fb"])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("0 "))
    assert row.split()[4] == "inf", row
    saved = json.loads((tmp_path / "fb" / "fallback.json").read_text())
    step = saved["path"][0]
    assert step["value"] is None and step["value_infinite"] == "inf" and step["drop_infinite"] is None
    assert run_cli(["report", tmp_path / "fb"]).returncode == 0
    assert "| 0 | all 16 | inf | n/a | all layers INT8 |" in (tmp_path / "fb" / "report.md").read_text()


def test_folder_eval_ranks_the_methods_on_the_output_the_user_named(tmp_path):
    """With --output-name feat, folder eval ranked the methods by 'logits' ('highest INT8 SQNR of output 'logits'
    40.94 dB: minmax') and listed worst samples without naming their output."""
    _exact_output_model(tmp_path)
    model = tmp_path / "m.onnx"
    assert run_cli(["calibrate", model, "--data", tmp_path / "cal.npy", "--method", "minmax,entropy",
                    "--output", tmp_path / "two"]).returncode == 0
    named = run_cli(["eval", model, tmp_path / "two", "--data", tmp_path / "val.npy", "--output-name", "feat"])
    assert named.returncode == 0, named.stderr
    assert "highest INT8 SQNR of output 'feat' inf dB: minmax, entropy (tied)" in named.stdout, named.stdout
    default = run_cli(["eval", model, tmp_path / "two", "--data", tmp_path / "val.npy"])
    assert "highest INT8 SQNR of output 'logits'" in default.stdout
    assert "minmax worst samples by SQNR of output 'logits': #" in default.stdout, default.stdout


def test_a_model_newer_than_this_onnxruntime_gets_the_upgrade_hint(tmp_path, monkeypatch):
    """On the H200 machine (onnxruntime 1.30), a model onnx 1.23 wrote (IR 14) was refused with 'check that the
    model is valid ONNX'; the model is valid, the runtime is older. The hint now says what to do."""
    import onnxruntime as ort

    from quant.backends.onnxruntime import OrtRunner
    from quant.core.errors import QuantError

    _exact_output_model(tmp_path)

    def refuse(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : model.cc:202 onnxruntime::Model::Model Unsupported model "
                           "IR version: 14, max supported IR version: 13")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    try:
        OrtRunner(tmp_path / "m.onnx")
    except QuantError as exc:
        assert "Unsupported model IR version: 14" in str(exc)
        assert exc.hint.startswith(f"onnxruntime {ort.__version__} reads ONNX IR versions up to 13 and the file is "
                                   "IR 14: upgrade onnxruntime, or save the model with ir_version = 13"), exc.hint
    else:
        raise AssertionError("OrtRunner loaded a model its session refused")
