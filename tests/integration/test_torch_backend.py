"""The PyTorch backend (--device cpu here; the same code runs on CUDA): counts, emulation, fallback, errors."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

import quant  # noqa: E402
from conftest import run_cli  # noqa: E402
from quant import pipeline  # noqa: E402
from quant.backends.onnxruntime import OrtRunner  # noqa: E402
from quant.backends.torch.runner import TorchRunner  # noqa: E402
from quant.collect.device import DeviceHistogram  # noqa: E402
from quant.core.histogram import Histogram  # noqa: E402
from quant.core.onnx_model import load_model, normalize  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def calibrated(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("torch") / "cal"
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",))
    result.save(out)
    return result, out


def _heldout(digits, count=128):
    data = np.load(digits["heldout"])
    return {"input": data["input"][:count]}


def _save(path, nodes, inputs, outputs, inits=(), opset=17):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ------------------------------------------------------------------ histograms on the device
def test_device_histogram_counts_equal_the_numpy_path_for_the_same_values():
    rng = np.random.default_rng(0)
    for trial in range(30):
        reference, on_device = Histogram(bins=1024), DeviceHistogram(bins=1024, device=DEVICE)
        for _ in range(3):  # growing ranges merge bins; zeros are counted apart on the device
            x = rng.standard_normal(4000).astype(np.float32) * np.float32(10.0 ** rng.integers(-30, 30))
            x[rng.random(x.size) < 0.5] = 0.0
            reference.update(x)
            on_device.update(torch.from_numpy(x).to(DEVICE))
        assert on_device.to_histogram() == reference, trial
    ints = np.arange(-50, 50, dtype=np.int64)  # non-float input: float64 on both paths
    reference, on_device = Histogram(), DeviceHistogram(device=DEVICE)
    reference.update(ints)
    on_device.update(torch.from_numpy(ints).to(DEVICE))
    assert on_device.to_histogram() == reference
    zeros = DeviceHistogram(device=DEVICE)
    zeros.update(torch.zeros(10, device=DEVICE))
    assert zeros.to_histogram() == Histogram().update(np.zeros(10, np.float32))


def test_device_histogram_counts_stay_exact_past_float32_precision():
    x = np.full((1 << 24) + 1000, 3.0, np.float32)  # more values in one bin than float32 counts hold exactly
    x[:7] = 0.0
    reference, on_device = Histogram().update(x), DeviceHistogram(device=DEVICE)
    on_device.update(torch.from_numpy(x).to(DEVICE))
    assert on_device.to_histogram() == reference and reference.counts.max() == (1 << 24) + 993


def test_device_histograms_of_the_digits_activations_equal_the_numpy_histograms(digits):
    model = normalize(load_model(digits["model"]))
    plan = pipeline.calibration.plan_qdq(model)
    runner = TorchRunner(model, DEVICE)
    device_side = {t: DeviceHistogram(device=DEVICE) for t in plan.activations}
    numpy_side = {t: Histogram() for t in plan.activations}

    def tap(name):
        def both(tensor):
            device_side[name].update(tensor)
            numpy_side[name].update(tensor.detach().cpu().numpy())
        return both

    runner.forward(_heldout(digits), {t: tap(t) for t in plan.activations})
    assert len(plan.activations) == 7
    for tensor in plan.activations:
        assert device_side[tensor].to_histogram() == numpy_side[tensor], tensor
        assert numpy_side[tensor].count > 0


def test_nan_in_the_data_is_one_error_naming_the_input(digits, tmp_path):
    data = np.load(digits["calibration"])["input"].copy()
    data[3, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", data)
    with pytest.raises(quant.QuantError, match=r"input 'input' contains NaN or Inf in the batch of samples"):
        quant.calibrate(digits["model"], tmp_path / "nan.npy", device="cpu", batch_size=8)


# ------------------------------------------------------------------ calibration on the device
def test_torch_calibration_scales_are_bit_identical_across_batch_sizes_and_close_to_ort(digits, tmp_path):
    runs = {b: quant.calibrate(digits["model"], digits["calibration"], methods=("entropy", "minmax", "percentile", "mse"),
                               device="cpu", batch_size=b) for b in (7, 64)}
    for method in ("entropy", "minmax", "percentile", "mse"):
        assert runs[7].activation_amax[method] == runs[64].activation_amax[method], method
    ort = quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",))
    for tensor, amax in ort.activation_amax["minmax"].items():
        assert runs[64].activation_amax["minmax"][tensor] == pytest.approx(amax, rel=1e-5)
    assert runs[64].data["sha256"] == ort.data["sha256"]  # the same samples, whatever ran them
    assert "PyTorch" in runs[64].data["collected_with"] and "TF32 off" in runs[64].data["collected_with"]
    runs[64].save(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "entropy" / "quant.json").read_text())
    assert "IEEE float32" in manifest["data"]["collected_with"]


def test_cli_calibrate_on_the_device_prints_where_and_in_which_precision(digits, tmp_path):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o",
                    "--device", "cpu"])
    assert proc.returncode == 0, proc.stderr
    assert "collection pass: PyTorch" in proc.stdout and "TF32 off" in proc.stdout
    assert (tmp_path / "o" / "model.int8.onnx").exists()


def test_tf32_settings_are_restored_after_a_run(digits):
    runner = TorchRunner(normalize(load_model(digits["model"])), DEVICE)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
    try:
        runner.run(_heldout(digits, 4))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# ------------------------------------------------------------------ emulated INT8
def _close(a, b, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-12)
    assert float(np.abs(a - b).max()) <= 1e-4 * scale, f"{what}: {np.abs(a - b).max()} vs |ref| {scale}"


def _same_emulation(a, b, what):
    """Equal within fp32 tolerance. FP32 sums in another order can move a value that sits on a rounding tie of
    x / scale by one INT8 step, which then shifts that sample's outputs: so a few samples (here 1 to 7 of 540)
    differ by about a step, and all others agree to 1e-5 of the output range; the difference between the two
    runtimes stays 20 dB below the INT8 error itself (35 dB on digits)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-12)
    off = (np.abs(a - b) > 1e-5 * scale).reshape(len(a), -1).any(axis=1)
    assert off.mean() <= 0.02, f"{what}: {off.sum()} of {len(a)} samples differ"
    noise = float(np.sum((a - b) ** 2))
    assert noise == 0 or 10 * np.log10(float(np.sum(b * b)) / noise) >= 55, what
    if a.ndim == 2:
        assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.99, what


def test_emulated_qdq_model_equals_ort_emulate(digits, calibrated):
    result, out = calibrated
    qdq = load_model(out / "model.int8.onnx")
    feeds = _heldout(digits, 540)
    on_torch = TorchRunner(qdq, DEVICE).run(feeds)[0]
    on_ort = OrtRunner(qdq, mode="emulate").run(feeds)[0]
    _same_emulation(on_torch, on_ort, "Q/DQ model")
    fp32 = OrtRunner(result.model).run(feeds)[0]
    assert np.abs(on_ort - fp32).max() > 1e-3  # INT8 does change the outputs: the check is not trivial


def test_qdq_switch_equals_ort_emulate_of_each_variant(digits, calibrated):
    result, _ = calibrated
    make = pipeline.qdq_runner_factory(result, "entropy", device="cpu")
    feeds = _heldout(digits, 540)
    layers = [layer.node for layer in result.plan.layers]
    for keep in (frozenset(), frozenset(layers[:1]), frozenset(layers[1:3]), frozenset(layers[:-1]), frozenset(layers)):
        switched = make(keep).run(feeds)[0]
        exact = OrtRunner(result.qdq_model("entropy", keep_float=keep), mode="emulate").run(feeds)[0]
        _same_emulation(switched, exact, f"keep_float={sorted(keep)}")


def test_round_half_to_even_and_saturation_match_onnx_runtime(tmp_path):
    scale = np.float32(0.5)
    x = np.array([[0.25, 0.75, -0.25, -0.75, 1.25, 63.75, 64.0, 1000.0, -1000.0, 63.25]], np.float32)
    inits = [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    path = _save(tmp_path / "qdq.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    model = load_model(path)
    got = TorchRunner(model, DEVICE).run({"x": x})[0]
    want = OrtRunner(model, mode="emulate").run({"x": x})[0]
    np.testing.assert_array_equal(got, want)
    # x / s = 0.5, 1.5, -0.5, -1.5, 2.5, 126.5 round to the even 0, 2, -0, -2, 2, 126 (half away would give 3, 127)
    np.testing.assert_array_equal(got[0, [0, 1, 2, 3, 4, 9]], [0.0, 1.0, 0.0, -1.0, 1.0, 63.0])
    assert got[0, 5] == got[0, 6] == got[0, 7] == 63.5 and got[0, 8] == -64.0  # saturation at 127 and -128


def test_fallback_picks_the_same_float_layers_on_both_backends(digits, calibrated):
    _, out = calibrated
    outcomes = {}
    for device in ("ort", "cpu"):
        _, outcomes[device] = pipeline.fallback(digits["model"], out, digits["heldout"], metric="sqnr", min_value=40.0,
                                                device=device)
    assert outcomes["ort"].passed and outcomes["cpu"].passed
    chosen = {d: [layer["node"] for layer in o.float_layers] for d, o in outcomes.items()}
    assert chosen["ort"] == chosen["cpu"] and len(chosen["cpu"]) >= 1
    for a, b in zip(outcomes["ort"].path, outcomes["cpu"].path):
        assert a["value"] == pytest.approx(b["value"], abs=0.05)


def test_eval_and_gate_on_the_device_agree_with_ort(digits, calibrated):
    _, out = calibrated
    on_ort = pipeline.evaluate(digits["model"], out / "model.int8.onnx", digits["heldout"])
    on_torch = pipeline.evaluate(digits["model"], out / "model.int8.onnx", digits["heldout"], device="cpu")
    assert on_torch.task["top1"]["int8"] == pytest.approx(on_ort.task["top1"]["int8"], abs=0.2 / 540 + 1e-9)
    assert on_torch.outputs["logits"]["sqnr_db"] == pytest.approx(on_ort.outputs["logits"]["sqnr_db"], abs=0.05)
    assert any("IEEE float32" in note for note in on_torch.notes)
    proc = run_cli(["gate", digits["model"], out / "model.int8.onnx", "--data", digits["heldout"], "--metric", "top1",
                    "--max-drop", "1.0", "--device", "cpu"])
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ conversion pre-passes and errors
def test_identity_feeding_a_conv_bias_is_folded(tmp_path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")]
    nodes = [helper.make_node("Identity", ["b"], ["b_copy"], name="id"),
             helper.make_node("Conv", ["x", "w", "b_copy"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    model = load_model(_save(tmp_path / "m.onnx", nodes,
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits))
    x = {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}
    _close(TorchRunner(model, DEVICE).run(x)[0], OrtRunner(model).run(x)[0], "conv with Identity bias")


def test_greater_or_equal_at_opset_17_and_flatten_of_a_1d_input(tmp_path):
    inits = [numpy_helper.from_array(np.float32(0.5), "half")]
    nodes = [helper.make_node("GreaterOrEqual", ["x", "half"], ["ge"], name="ge"),
             helper.make_node("Cast", ["ge"], ["gef"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["gef"], ["flat"], name="flatten", axis=1),
             helper.make_node("Flatten", ["x"], ["flat0"], name="flatten0", axis=0)]
    model = load_model(_save(tmp_path / "m.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                             [helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["N", 1]),
                              helper.make_tensor_value_info("flat0", TensorProto.FLOAT, [1, "N"])], inits))
    x = {"x": np.array([0.1, 0.5, 0.9, -2.0], np.float32)}
    got, want = TorchRunner(model, DEVICE).run(x), OrtRunner(model).run(x)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[0][:, 0], [0.0, 1.0, 1.0, 0.0])


def _hardmax_model(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
             helper.make_node("Hardmax", ["c"], ["y"], name="hardmax", axis=1)]
    return _save(path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], inits)


def test_a_model_the_converter_cannot_take_fails_with_one_error_line(tmp_path):
    model = _hardmax_model(tmp_path / "hardmax.onnx")
    np.save(tmp_path / "data.npy", np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32))
    proc = run_cli(["calibrate", model, "--data", tmp_path / "data.npy", "--output", tmp_path / "out", "--device", "cpu"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and "op Hardmax" in lines[0] and "node 'hardmax'" in lines[0], proc.stderr
    assert len(lines) == 2 and lines[1].startswith("Hint: ") and "--device ort" in lines[1]
    assert not (tmp_path / "out").exists()
    ok = run_cli(["calibrate", model, "--data", tmp_path / "data.npy", "--output", tmp_path / "out2"])
    assert ok.returncode == 0, ok.stderr  # ONNX Runtime (the default) runs it


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_one_error_line(digits, tmp_path):
    proc = run_cli(["eval", digits["model"], digits["model"], "--data", digits["heldout"], "--device", "cuda:1"])
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: --device cuda:1: this torch") and "sees no CUDA GPU" in proc.stderr


# ------------------------------------------------------------------ PyTorch modules as input
class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)  # 8 channels: a multiple of 4 (1 -> 6 stays in float)
        self.fc = torch.nn.Linear(8 * 8 * 8, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, image):
        return self.fc(torch.flatten(torch.relu(self.conv(image)), 1))


def test_a_torch_module_is_exported_calibrated_and_saved_with_its_fp32_onnx(digits, tmp_path):
    module = SmallNet()
    data = np.load(digits["calibration"])["input"][:64]
    np.save(tmp_path / "image.npy", data)
    result = quant.calibrate(module, tmp_path / "image.npy", example_inputs=torch.zeros(2, 1, 8, 8),
                             methods=("entropy",), device="cpu")
    assert {layer.op_type for layer in result.plan.layers} == {"Conv", "Gemm"}
    out = tmp_path / "out"
    result.save(out)
    assert (out / "model.fp32.onnx").exists() and (out / "model.int8.onnx").exists()
    fp32 = load_model(out / "model.fp32.onnx")
    with torch.no_grad():
        expected = module(torch.from_numpy(data[:16])).numpy()
    _close(OrtRunner(fp32).run({"image": data[:16]})[0], expected, "exported FP32 vs the module")
    manifest = json.loads((out / "quant.json").read_text())
    assert manifest["model"]["path"] == str((out / "model.fp32.onnx").resolve())
    again = quant.recalibrate(out, "mse")  # the folder finds its FP32 model (sha256 checked)
    assert set(again.activation_amax["mse"]) == set(result.activation_amax["entropy"])
    with pytest.raises(quant.QuantError, match="needs example inputs"):
        quant.calibrate(module, tmp_path / "image.npy")
