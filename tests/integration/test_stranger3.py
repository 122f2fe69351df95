"""Bugs found by trying quant as a stranger would (third round): own models, odd names, the newest features."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from bad_inputs.cases_stranger3 import conv_fc_model
from conftest import run_cli


@pytest.fixture
def calibration(tmp_path):
    x = np.random.default_rng(1).normal(size=(24, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=x)
    return tmp_path / "cal.npz", x


def _emulate(model, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_auto_whole_model_check_scores_float_outputs_only(tmp_path, calibration):
    """A class-index output (ArgMax, int64) is no signal: the whole-model SQNR is that of 'logits' alone, computed
    here independently on every sample, and the CLI line and quant.json name the output scored. Before: the int64
    output was cast to float64 first and its squared class-index differences averaged in (38.44 dB shown as 41.45)."""
    path, x = calibration
    model = conv_fc_model(tmp_path / "m.onnx")
    proc = run_cli(["calibrate", model, "--data", path, "--method", "auto", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    whole = json.loads((tmp_path / "out" / "quant.json").read_text())["auto"]["whole_model"]
    assert whole["outputs"] == ["logits"]
    assert whole["samples"] == len(x)  # fewer than 64: the subset is all of them
    signal = noise = 0.0
    for i in range(len(x)):  # one sample per run, as the check does
        ref = np.float64(_emulate(model, x[i:i + 1])[0])
        out = np.float64(_emulate(tmp_path / "out" / "model.int8.onnx", x[i:i + 1])[0])
        signal, noise = signal + np.sum(ref ** 2), noise + np.sum((out - ref) ** 2)
    assert whole["candidates"][whole["chosen"]] == pytest.approx(10 * np.log10(signal / noise), abs=1e-3)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("auto: 2 tensors"))
    assert "whole-model output SQNR (output 'logits')" in line, line


def test_auto_on_a_model_with_only_an_integer_output_says_nothing_was_scored(tmp_path, calibration):
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("cls",))
    proc = run_cli(["calibrate", model, "--data", path, "--method", "auto", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out" / "quant.json").read_text())["auto"]
    assert "whole_model" not in record  # before: a record of five candidates, every SQNR None ("no error at all")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("auto: 2 tensors"))
    assert "no float output to score the whole model on" in line, line


def test_auto_names_both_outputs_and_the_methods_it_did_not_score_twice(tmp_path, calibration):
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits", "feat"))
    proc = run_cli(["calibrate", model, "--data", path, "--method", "auto", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    whole = json.loads((tmp_path / "out" / "quant.json").read_text())["auto"]["whole_model"]
    assert whole["outputs"] == ["logits", "feat"]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("auto: 2 tensors"))
    assert "(mean over outputs 'logits', 'feat')" in line, line
    for label, earlier in whole["same_ranges_as"].items():  # every method is accounted for on the line
        assert label not in whole["candidates"] and f"{earlier} (= {label})" in line or earlier == whole["chosen"], line
    assert set(whole["candidates"]) | set(whole["same_ranges_as"]) >= {"entropy", "minmax", "percentile", "mse"}


def test_device_cpu_ranges_do_not_depend_on_the_batch_size(tmp_path, calibration):
    """torch on the CPU picks Conv/MatMul kernels by shape: a batch of 24 and 24 batches of 1 differ in the last bits.
    README promises bit-identical scales for any --batch-size with --device cpu; before, minmax of the Flatten
    output (the MatMul's input) moved by an ulp between --batch-size 1 and 7."""
    pytest.importorskip("torch")
    import quant

    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))
    amax = [quant.calibrate(model, path, methods=("minmax", "entropy"), device="cpu", batch_size=b).activation_amax
            for b in (1, 7, 24)]
    assert amax[0] == amax[1] == amax[2]


def test_sqnr_without_an_output_name_scores_the_only_float_output(tmp_path, calibration):
    """logits [N, 10] + cls (int64): sqnr has one output it can score. Before: refused as ambiguous, and the hint
    named --metric sqnr@cls, the integer output."""
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx")
    assert run_cli(["calibrate", model, "--data", path, "--output", tmp_path / "cal"]).returncode == 0
    proc = run_cli(["sensitivity", model, "--calibration", tmp_path / "cal", "--data", path, "--metric", "sqnr"])
    assert proc.returncode == 0, proc.stderr
    assert "sqnr scored output 'logits' [N, 10] (the model's only float output)" in proc.stderr + proc.stdout
    record = json.loads((tmp_path / "cal" / "sensitivity.json").read_text())
    assert (record["metric"], record["output"], record["output_basis"]) == ("sqnr", "logits", "the model's only float output")


def test_quantize_op_types_records_what_the_model_file_holds(tmp_path, calibration):
    """--quantize-op-types Add,Flatten: Flatten's input gets a Q/DQ pair in model.int8.onnx, so quant.json must not
    list it as 'no Q/DQ for this op type' (it did); the bias Add after the MatMul gets none, for the reason README gives."""
    import onnx

    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))
    proc = run_cli(["calibrate", model, "--data", path, "--output", tmp_path / "out", "--quantize-op-types", "Add,Flatten"])
    assert proc.returncode == 0, proc.stderr
    qdq = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    dq_outputs = {n.output[0] for n in qdq.graph.node if n.op_type == "DequantizeLinear"}
    fed = {n.name for n in qdq.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
           and any(t in dq_outputs for t in n.input)}
    assert fed == {"conv", "fc", "flat"}
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    unquantized = {u["node"]: u["reason"] for u in manifest["unquantized"]}
    assert "flat" not in unquantized and set(unquantized) == {"relu", "fc_add", "argmax"}
    assert "constant scale or shift right after a layer" in unquantized["fc_add"]
    assert manifest["op_inputs"] == [{"node": "flat", "op_type": "Flatten", "activations": ["feat"]}]


def test_bias_correction_with_no_layer_to_correct_says_not_applied(tmp_path):
    """Two MatMuls without a bias Add (a projection, a head): nothing can absorb a shift. Before: quant.json said
    "applied": true with 0 samples and no layer, and the CLI 'applied to 0 layers'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in (("A", (16, 8)), ("B", (8, 5)))]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "A"], ["h"], name="proj"), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "B"], ["y"], name="head")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "cal.npz", x=rng.normal(size=(20, 16)).astype(np.float32))
    proc = run_cli(["calibrate", tmp_path / "m.onnx", "--data", tmp_path / "cal.npz", "--output", tmp_path / "out",
                    "--bias-correction"])
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((tmp_path / "out" / "quant.json").read_text())["bias_correction"]
    assert entry["applied"] is False and {e["node"] for e in entry["not_corrected"]} == {"proj", "head"}
    assert "bias correction (entropy): not applied: no quantized layer has a bias" in proc.stdout


def test_hints_that_show_a_flag_quote_it_for_the_shell(tmp_path, calibration):
    """A folder with a space and a score named 'mean|y|': the hint's command must work when pasted (it was unquoted)."""
    import shlex

    path, x = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits", "feat"))
    assert run_cli(["calibrate", model, "--data", path, "--output", tmp_path / "cal"]).returncode == 0
    (tmp_path / "my fns").mkdir()
    (tmp_path / "my fns" / "score it.py").write_text(
        "def evaluate(run, data):\n    return {'mean|y|': 1.0, 'n': float(len(data))}\n")
    spec = f"{tmp_path / 'my fns' / 'score it.py'}:evaluate"
    proc = run_cli(["gate", model, tmp_path / "cal" / "model.int8.onnx", "--data", path, "--eval-fn", spec,
                    "--max-drop", "1"])
    assert proc.returncode == 2
    hint = proc.stderr.strip().splitlines()[-1]
    assert shlex.split(hint.removeprefix("Hint: ")) == ["--eval-fn", spec + "@mean|y|"], hint
    proc = run_cli(["gate", model, tmp_path / "cal" / "model.int8.onnx", "--data", path, "--metric", "sqnr",
                    "--min-value", "3"])
    assert proc.returncode == 2
    hint = proc.stderr.strip().splitlines()[-1]
    assert shlex.split(hint.removeprefix("Hint: "))[:3] == ["name", "it", "with"], hint


def test_methods_report_shows_backticked_names_exactly_and_the_scored_output(tmp_path, calibration):
    """The folder report wrote tensor 'fl `t` |' as `fl 't' \\|` (backticks turned into apostrophes: another
    name) and its top1 row did not say which output it scored."""
    import onnx

    path, x = calibration
    model = onnx.load(str(conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))))
    odd = "fl `t` |"
    for node in model.graph.node:
        node.input[:] = [odd if t == "f" else t for t in node.input]
        node.output[:] = [odd if t == "f" else t for t in node.output]
    onnx.save(model, str(tmp_path / "odd.onnx"))
    np.savez(tmp_path / "held.npz", x=x, label=np.arange(len(x)) % 10)
    folder = tmp_path / "cal"
    assert run_cli(["calibrate", tmp_path / "odd.onnx", "--data", path, "--method", "minmax,mse", "--output", folder]
                   ).returncode == 0
    assert run_cli(["eval", tmp_path / "odd.onnx", folder, "--data", tmp_path / "held.npz", "--output-json",
                    folder / "eval.json"]).returncode == 0
    proc = run_cli(["report", folder])
    assert proc.returncode == 0, proc.stderr
    markdown = (folder / "report.md").read_text()
    assert "| ``fl `t` \\|`` |" in markdown  # a code span fenced by two backticks; '\|' is GitHub's pipe in a cell
    assert "fl 't'" not in markdown
    assert "| `top1@logits` |" in markdown
    html = (folder / "report.html").read_text()
    assert "<code>fl `t` |</code>" in html


def test_report_keeps_other_files_in_plots_and_refuses_only_the_names_it_writes(tmp_path, calibration):
    """A user's plots/mine.png made 'quant report' refuse ('refusing to overwrite' a file it never writes)."""
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))
    assert run_cli(["calibrate", model, "--data", path, "--output", tmp_path / "cal"]).returncode == 0
    (tmp_path / "cal" / "plots").mkdir()
    (tmp_path / "cal" / "plots" / "mine.png").write_bytes(b"mine")
    proc = run_cli(["report", tmp_path / "cal"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cal" / "plots" / "mine.png").read_bytes() == b"mine"
    assert (tmp_path / "cal" / "plots" / "histogram_0.png").read_bytes().startswith(b"\x89PNG")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "plots").mkdir(parents=True)
    (tmp_path / "other" / "plots" / "histogram_0.png").write_bytes(b"mine too")
    proc = run_cli(["report", tmp_path / "cal", "--output", tmp_path / "other"])
    assert proc.returncode == 2 and "histogram_0.png' exists and was not written by quant" in proc.stderr
    assert (tmp_path / "other" / "plots" / "histogram_0.png").read_bytes() == b"mine too"
    assert sorted(p.name for p in (tmp_path / "other").rglob("*")) == ["histogram_0.png", "plots"]


def test_eval_of_a_nan_fp32_output_prints_n_a_not_numbers(tmp_path):
    """Sqrt of a negative product: before, eval printed cosine 0.10000 (the share of finite rows), max abs error 0
    and worst samples '#0 (nan dB)'."""
    from bad_inputs.cases_stranger3 import sqrt_model

    model, int8, held = sqrt_model(tmp_path)
    proc = run_cli(["eval", model, int8, "--data", held, "--output-json", tmp_path / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("y "))
    assert row.split()[3:] == ["n/a"] * 5, row
    assert "nan dB" not in proc.stdout + proc.stderr
    product = np.load(held)["x"].astype(np.float64) @ np.abs(np.random.default_rng(0).normal(size=(8, 4)))
    ref = product.reshape(len(product), -1)
    bad = int(np.sum((ref < 0).any(axis=1)))  # rows where the FP32 Sqrt gives NaN
    assert 0 < bad < len(ref)
    assert f"FP32 output 'y' is NaN or Inf on {bad} of {len(ref)} samples" in proc.stdout + proc.stderr
    stats = json.loads((tmp_path / "eval.json").read_text())["outputs"]["y"]
    assert stats["cosine"] is None and stats["max_abs_error"] is None and stats["sqnr_db"] is None


def test_paths_with_a_line_break_stay_on_their_line(tmp_path, calibration):
    """An output folder 'nl\\ndir': calibrate, report and recalibrate printed the raw line break, splitting the line."""
    path, _ = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))
    folder = tmp_path / "nl\ndir"
    proc = run_cli(["calibrate", model, "--data", path, "--output", folder])
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("entropy: ") and line.endswith("nl\\ndir/model.int8.onnx, calibration.cache, "
                                                                "quant.json, histograms.npz")
               for line in proc.stdout.splitlines()), proc.stdout
    proc = run_cli(["report", folder])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "nl\\ndir/report.md and " in proc.stdout, proc.stdout
    proc = run_cli(["recalibrate", folder, "--method", "mse", "--output", tmp_path / "re\ncal"])
    assert proc.returncode == 0, proc.stderr
    assert "re\\ncal/model.int8.onnx" in proc.stdout and "re\ncal" not in proc.stdout


def test_the_fp32_model_given_as_int8_is_named_in_a_note(tmp_path, calibration):
    """quant gate FP32 FP32-copy passed with no word that nothing quantized was compared."""
    import shutil

    path, x = calibration
    model = conv_fc_model(tmp_path / "m.onnx", outputs=("logits",))
    shutil.copy(model, tmp_path / "copy.onnx")
    np.savez(tmp_path / "held.npz", x=x, label=np.arange(len(x)) % 10)
    proc = run_cli(["gate", model, tmp_path / "copy.onnx", "--data", tmp_path / "held.npz", "--metric", "top1",
                    "--max-drop", "0", "--output-json", tmp_path / "gate.json"])
    assert proc.returncode == 0, proc.stderr
    expected = f"the INT8 model '{tmp_path / 'copy.onnx'}' is the FP32 model '{model}' itself (the same bytes)"
    assert expected in proc.stdout + proc.stderr
    assert any(expected in n for n in json.loads((tmp_path / "gate.json").read_text())["notes"])
    proc = run_cli(["eval", model, model, "--data", tmp_path / "held.npz"])
    assert proc.returncode == 0 and "is the FP32 model" in proc.stdout + proc.stderr
    assert run_cli(["calibrate", model, "--data", path, "--output", tmp_path / "cal"]).returncode == 0
    proc = run_cli(["eval", model, tmp_path / "cal" / "model.int8.onnx", "--data", tmp_path / "held.npz"])
    assert proc.returncode == 0 and "is the FP32 model" not in proc.stdout + proc.stderr


def test_a_model_with_a_fixed_batch_of_4_calibrates_without_batch_size(tmp_path, calibration):
    """24 samples, batch axis fixed to 4: the adaptive batch size started at 1 and ONNX Runtime refused the shape.
    The ranges equal those of the same model with a dynamic batch axis (batching changes no range)."""
    import quant
    from bad_inputs.cases_stranger3 import fixed_batch_model

    path, _ = calibration
    proc = run_cli(["calibrate", fixed_batch_model(tmp_path / "b4.onnx"), "--data", path, "--output", tmp_path / "out",
                    "--method", "minmax,entropy"])
    assert proc.returncode == 0, proc.stderr
    dynamic = quant.calibrate(conv_fc_model(tmp_path / "m.onnx", outputs=("logits",)), path,
                              methods=("minmax", "entropy"))
    for method in ("minmax", "entropy"):
        recorded = json.loads((tmp_path / "out" / method / "quant.json").read_text())["activations"]
        assert {t: e["amax"] for t, e in recorded.items()} == {
            t: float(np.float32(a)) for t, a in dynamic.activation_amax[method].items()}
