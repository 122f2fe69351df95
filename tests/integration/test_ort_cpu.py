"""CPU deployment from the same calibration: the ort-cpu form on ONNX Runtime, OpenVINO, and quant bench."""
import json

import numpy as np
import onnx
import pytest

import quant
from quant.backends.onnxruntime import OrtRunner
from quant.qdq.ort_cpu import plan_ort_cpu, u8_params, u8s8_kernels_saturate
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def both(digits, tmp_path_factory):
    """entropy and minmax, both targets, one collection pass."""
    out = tmp_path_factory.mktemp("cpu") / "both"
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("entropy", "minmax"), target="all")
    result.save(out)
    return result, out


def _inits(model):
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_u8_params_use_all_levels_after_relu_and_clip_to_amax():
    scale, zero = u8_params(0.0, 6.0, 8.0)  # ReLU output: [0, 6], amax above it
    assert zero == 0 and scale == np.float32(6.0 / 255)
    scale, zero = u8_params(0.0, 6.0, 3.0)  # the method clips at 3
    assert zero == 0 and scale == np.float32(3.0 / 255)
    scale, zero = u8_params(-1.0, 3.0, 10.0)  # asymmetric: zero point where 0.0 lands
    assert scale == np.float32(4.0 / 255) and zero == round(1.0 / float(np.float32(4.0 / 255)))
    assert float(scale) * (0 - int(zero)) == pytest.approx(-1.0, abs=float(scale))
    scale, zero = u8_params(2.0, 5.0, 10.0)  # range widened to include 0
    assert zero == 0 and scale == np.float32(5.0 / 255)
    assert u8_params(0.0, 0.0, 0.0) == (np.float32(1.0), np.uint8(0))  # all zeros: no scale of 0


def test_plan_folds_every_relu_and_runs_adds_and_pooling_on_integers(both):
    result, _ = both
    plan = plan_ort_cpu(result.model, result.plan)
    relus = [n.name for n in result.model.graph.node if n.op_type == "Relu"]
    assert plan.folded == relus
    ops = {n.name: n.op_type for n in result.model.graph.node}
    integer_ops = sorted({ops[n] for n in plan.nodes})
    assert integer_ops == ["Add", "Conv", "Flatten", "Gemm", "GlobalAveragePool"]
    # a folded ReLU's range (min 0) quantizes the conv output before it
    for tensor, source in plan.pairs.items():
        if tensor != source:
            assert result.histograms[source].min >= 0.0


def test_both_targets_written_from_one_pass(both):
    _, out = both
    for method in ("entropy", "minmax"):
        names = {p.name for p in (out / method).iterdir()}
        assert {"model.int8.onnx", "calibration.cache", "model.ort-cpu.int8.onnx", "quant.json"} <= names
        manifest = json.loads((out / method / "quant.json").read_text())
        assert set(manifest["targets"]) == {"tensorrt", "ort-cpu"}
        assert manifest["data"]["batches"] >= 1


def test_ort_cpu_model_is_u8_and_runs_on_orts_integer_kernels(both):
    result, out = both
    path = out / "entropy" / "model.ort-cpu.int8.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    inits = _inits(model)
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize and all(inits[n.input[2]].dtype == np.uint8 for n in quantize)
    assert not any(n.op_type == "Relu" for n in model.graph.node)  # folded into the u8 zero point
    runner = OrtRunner(path, mode="ort-int8")
    convs = sum(1 for n in result.model.graph.node if n.op_type == "Conv")
    assert runner.optimized_ops.get("QLinearConv") == convs
    assert runner.optimized_ops.get("QLinearAdd") == 2 and runner.optimized_ops.get("QGemm") == 1
    assert "Conv" not in runner.optimized_ops and "FusedConv" not in runner.optimized_ops
    validation = json.loads((out / "entropy" / "quant.json").read_text())["targets"]["ort-cpu"]["validation"]
    assert validation["validated"] and validation["agrees"] and validation["samples"] == 8


def test_ort_int8_accuracy_within_one_point_and_agrees_with_emulation(both, digits):
    _, out = both
    path = out / "entropy" / "model.ort-cpu.int8.onnx"
    kernels = quant.evaluate(digits["model"], path, digits["heldout"], runtime="ort-int8")
    exact = quant.evaluate(digits["model"], path, digits["heldout"], runtime="emulate")
    assert kernels.task["top1"]["drop"] <= 1.0
    # no saturation collapse: ORT's integer kernels compute what the Q/DQ graph says
    assert abs(kernels.task["top1"]["int8"] - exact.task["top1"]["int8"]) <= 0.2  # percentage points
    held = np.load(digits["heldout"])["input"][:64]
    a = OrtRunner(path, mode="ort-int8").run({"input": held})[0].astype(np.float64)
    b = OrtRunner(path, mode="emulate").run({"input": held})[0].astype(np.float64)
    assert 10 * np.log10(np.sum(b * b) / np.sum((a - b) ** 2)) > 30.0


def test_reduce_range_gives_seven_bit_weights(digits, tmp_path):
    result = quant.calibrate(digits["model"], digits["calibration"], target="ort-cpu", reduce_range="on")
    result.save(tmp_path / "r")
    assert not (tmp_path / "r" / "model.int8.onnx").exists()  # only the target asked for
    model = onnx.load(str(tmp_path / "r" / "model.ort-cpu.int8.onnx"))
    weights = [v for v in _inits(model).values() if v.dtype == np.int8 and v.ndim >= 2]
    assert weights and max(int(np.abs(w).max()) for w in weights) == 64
    manifest = json.loads((tmp_path / "r" / "quant.json").read_text())["targets"]["ort-cpu"]
    assert manifest["reduce_range"] is True and manifest["weight_range"] == "[-64, 64]"


def test_kernel_probe_answers_for_this_machine():
    assert u8s8_kernels_saturate() in (True, False)


def test_recalibrate_a_tensorrt_folder_for_ort_cpu_says_what_to_do(digits, tmp_path):
    quant.calibrate(digits["model"], digits["calibration"]).save(tmp_path / "trt")
    with pytest.raises(quant.QuantError, match="lacks tensors") as info:
        quant.recalibrate(tmp_path / "trt", None, target="ort-cpu")
    assert "--target ort-cpu" in info.value.hint


def test_cli_target_all_prints_kernels_and_eval_openvino(digits, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "cli"
    done = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--target", "all", "--output", out])
    assert done.returncode == 0, done.stderr
    assert "QLinearConv" in done.stdout and "model.ort-cpu.int8.onnx" in done.stdout
    for model in ("model.int8.onnx", "model.ort-cpu.int8.onnx"):
        done = run_cli(["eval", digits["model"], out / model, "--data", digits["heldout"], "--runtime", "openvino",
                        "--json"])
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["task"]["top1"]["drop"] <= 1.0
        assert any("Convolution" in note for note in report["notes"])


def test_cli_bench_prints_every_model_and_the_ratio(digits, tmp_path):
    out = tmp_path / "b"
    assert run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--target", "all",
                    "--output", out]).returncode == 0
    done = run_cli(["bench", digits["model"], out / "model.int8.onnx", out / "model.ort-cpu.int8.onnx",
                    "--batch", "1,4", "--repeat", "5", "--warmup", "1", "--threads", "1", "--output-json",
                    tmp_path / "bench.json"])
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = data["rows"]
    assert {(r["model"], r["batch"]) for r in rows} == {(m, b) for m in ("fp32", "model.int8.onnx",
                                                                          "model.ort-cpu.int8.onnx") for b in (1, 4)}
    for row in rows:
        assert row["runs"] == 5 and row["median_ms"] > 0
        assert row["throughput"] == pytest.approx(row["batch"] / row["median_ms"] * 1e3)
        if row["model"] != "fp32":
            fp32 = next(r for r in rows if r["model"] == "fp32" and r["batch"] == row["batch"])
            assert row["speedup_same_runtime"] == pytest.approx(fp32["median_ms"] / row["median_ms"])
    assert "batch 1" in done.stdout and "model.ort-cpu.int8.onnx" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch must be positive"),
    (["--runtime", "tensorrt"], "unknown bench runtime 'tensorrt'"),
    (["--shape", "input"], "is not NAME:DxDxD"),
])
def test_cli_bench_bad_options_exit_2_with_one_line(digits, args, message):
    done = run_cli(["bench", digits["model"], digits["model"], *args])
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_gate_and_sensitivity_run_on_openvino(both, digits):
    pytest.importorskip("openvino")
    from quant import pipeline

    _, out = both
    gated = pipeline.gate(digits["model"], out / "entropy" / "model.int8.onnx", digits["heldout"], metric="top1",
                          max_drop=1.0, runtime="openvino")
    assert gated.passed and gated.runtime == "openvino" and gated.int8 > 97.0
    report = pipeline.sensitivity(digits["model"], out / "entropy", digits["heldout"], metric="agreement",
                                  runtime="openvino", batch_size=540)
    nodes = {n.name for n in onnx.load(str(digits["model"])).graph.node if n.op_type in ("Conv", "Gemm")}
    assert {layer.node for layer in report.layers} == nodes
    assert report.fp32 == 100.0 and 90.0 < report.all_quantized <= 100.0


def test_sensitivity_refuses_a_runtime_it_cannot_search_with(both, digits):
    from quant import pipeline

    _, out = both
    with pytest.raises(quant.QuantError, match="cannot be used for sensitivity"):
        pipeline.sensitivity(digits["model"], out / "entropy", digits["heldout"], metric="agreement",
                             runtime="tensorrt")


def test_recalibrate_after_the_model_moved_names_the_fix(digits, tmp_path):
    moved = tmp_path / "model.onnx"
    moved.write_bytes(digits["model"].read_bytes())
    quant.calibrate(moved, digits["calibration"], target="all").save(tmp_path / "cal")
    manifest = json.loads((tmp_path / "cal" / "quant.json").read_text())
    assert manifest["model"]["path"] == str(moved.resolve())  # absolute: works from any folder
    moved.rename(tmp_path / "elsewhere.onnx")
    done = run_cli(["recalibrate", tmp_path / "cal", "--method", "mse", "--output", tmp_path / "new"], cwd=tmp_path)
    assert done.returncode == 2 and "does not exist any more" in done.stderr and "--model" in done.stderr
    done = run_cli(["recalibrate", tmp_path / "cal", "--method", "mse", "--output", tmp_path / "new", "--model",
                    tmp_path / "elsewhere.onnx"])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "model.ort-cpu.int8.onnx").exists() and (tmp_path / "new" / "model.int8.onnx").exists()
