"""--smooth: depthwise convolutions read their input scaled per channel, the inverse folded into their weights."""
import json

import numpy as np
import onnx
import pytest

import quant
from tests.conftest import run_cli
from tests.models import depthwise_spread, pooled_residual


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    d = tmp_path_factory.mktemp("spread")
    depthwise_spread(d / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "cal.npz", x=rng.standard_normal((64, 3, 16, 16)).astype(np.float32))
    np.savez(d / "held.npz", x=rng.standard_normal((32, 3, 16, 16)).astype(np.float32))
    return d


def _sqnr(result, held):
    return result.evaluate(held).to_json()["outputs"]["y"]["sqnr_db"]


def test_smoothing_recovers_the_quiet_channels_of_a_depthwise_input(spread):
    """Channel gains over 3 decades before a depthwise conv, undone after it: minmax held-out SQNR, measured
    3.7 dB plain and 34.7 dB smoothed; the FP32 function of the smoothed graph is the original's."""
    from quant.backends.onnxruntime import OrtRunner

    plain = quant.calibrate(spread / "m.onnx", spread / "cal.npz", methods=("minmax",))
    smoothed = quant.calibrate(spread / "m.onnx", spread / "cal.npz", methods=("minmax",), smooth=True)
    assert _sqnr(plain, spread / "held.npz") < 10
    assert _sqnr(smoothed, spread / "held.npz") > 30
    layer = smoothed.smoothing["layers"][0]
    assert layer["node"] == "dw" and layer["tensor"] == "h" and layer["channels"] == 8
    assert layer["max_to_min_range"] > 1000 and max(layer["scales"]) == 1.0
    x = {"x": np.load(spread / "held.npz")["x"][:4]}
    original, rewritten = OrtRunner(spread / "m.onnx").run(x)[0], OrtRunner(smoothed.model).run(x)[0]
    np.testing.assert_allclose(rewritten, original, rtol=1e-4, atol=1e-5 * float(np.abs(original).max()))
    ops = [n.op_type for n in smoothed.qdq_model().graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    assert ops == ["Conv", "HardSwish", "Mul", "Conv", "Mul"]  # one Mul added, before the depthwise conv


def test_smoothing_is_bit_identical_across_batch_sizes_and_order(spread, tmp_path):
    data = np.load(spread / "cal.npz")["x"]
    np.savez(tmp_path / "shuffled.npz", x=data[np.random.default_rng(4).permutation(len(data))])
    saved = []
    for i, (path, batch) in enumerate([(spread / "cal.npz", None), (spread / "cal.npz", 1),
                                       (tmp_path / "shuffled.npz", 7)]):
        result = quant.calibrate(spread / "m.onnx", path, methods=("minmax",), smooth=True, batch_size=batch)
        result.save(tmp_path / f"run{i}")
        manifest = json.loads((tmp_path / f"run{i}" / "quant.json").read_text())
        saved.append(((tmp_path / f"run{i}" / "model.int8.onnx").read_bytes(),
                      (tmp_path / f"run{i}" / "calibration.cache").read_bytes(), manifest["smoothing"]))
    assert saved[1] == saved[0] and saved[2] == saved[0]


def test_a_smoothed_folder_is_rebuilt_the_same_by_recalibrate_eval_and_sensitivity(spread, tmp_path):
    out = tmp_path / "cal"
    proc = run_cli(["calibrate", spread / "m.onnx", "--data", spread / "cal.npz", "--method", "minmax,mse",
                    "--smooth", "--target", "all", "--output", out])
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("smooth:"))
    assert "1 depthwise convolution(s)" in line and "'dw'" in line
    proc = run_cli(["recalibrate", out / "minmax", "--method", "minmax", "--output", tmp_path / "again"])
    assert proc.returncode == 0, proc.stderr
    for name in ("model.int8.onnx", "calibration.cache", "model.ort-cpu.int8.onnx"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "minmax" / name).read_bytes(), name
    proc = run_cli(["eval", spread / "m.onnx", out / "minmax", "--data", spread / "held.npz",
                    "--output-json", tmp_path / "e.json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "e.json").read_text())["outputs"]["y"]["sqnr_db"] > 30
    proc = run_cli(["sensitivity", spread / "m.onnx", "--calibration", out / "minmax", "--data", spread / "held.npz",
                    "--metric", "sqnr", "--output", tmp_path / "sens"])
    assert proc.returncode == 0, proc.stderr
    layers = {row["node"] for row in json.loads((tmp_path / "sens" / "sensitivity.json").read_text())["layers"]}
    assert layers == {"conv1", "dw"}  # the Mul is no layer


def test_without_a_depthwise_conv_smooth_changes_nothing(tmp_path):
    pooled_residual(tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(1).standard_normal((32, 3, 16, 16)).astype(np.float32))
    for flag in ([], ["--smooth"]):
        proc = run_cli(["calibrate", tmp_path / "m.onnx", "--data", tmp_path / "cal.npz", "--method", "minmax",
                        *flag, "--output", tmp_path / f"out{len(flag)}"])
        assert proc.returncode == 0, proc.stderr
    assert "smooth: no quantized depthwise convolution to smooth (nothing changed)" in proc.stdout
    assert (tmp_path / "out1" / "model.int8.onnx").read_bytes() == (tmp_path / "out0" / "model.int8.onnx").read_bytes()


def test_a_shared_depthwise_weight_keeps_its_values_for_the_other_reader(tmp_path):
    """dw and dw_shared read one weight; dw_shared stays in float (--exclude): it must compute as before."""
    from quant.backends.onnxruntime import OrtRunner

    depthwise_spread(tmp_path / "m.onnx", share_weight=True)
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((32, 3, 16, 16)).astype(np.float32))
    result = quant.calibrate(tmp_path / "m.onnx", tmp_path / "cal.npz", methods=("minmax",), smooth=True,
                             exclude=("dw_shared",))
    assert [l["node"] for l in result.smoothing["layers"]] == ["dw"]
    x = {"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}
    original = OrtRunner(tmp_path / "m.onnx").run(x)
    rewritten = OrtRunner(result.model).run(x)
    np.testing.assert_array_equal(rewritten[1], original[1])  # dw_shared: the same weight, the same bits
    assert np.allclose(rewritten[0], original[0], rtol=1e-4, atol=1e-6)
    readers = [n.name for n in result.model.graph.node if "wd" in n.input]
    assert readers == ["dw_shared"]
    assert onnx.load(tmp_path / "m.onnx").graph.initializer[1].name == "wd"  # the input file is untouched


def test_a_float16_depthwise_model_is_smoothed_in_its_own_type(tmp_path):
    from tests.float_models import as_float16

    depthwise_spread(tmp_path / "m32.onnx")
    as_float16(tmp_path / "m32.onnx", tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((32, 3, 16, 16)).astype(np.float16))
    np.savez(tmp_path / "held.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float16))
    plain = quant.calibrate(tmp_path / "m.onnx", tmp_path / "cal.npz", methods=("minmax",))
    smoothed = quant.calibrate(tmp_path / "m.onnx", tmp_path / "cal.npz", methods=("minmax",), smooth=True)
    types = {i.name: i.data_type for i in smoothed.model.graph.initializer}
    assert types["dw_smooth_scale"] == types["wd_smoothed"] == onnx.TensorProto.FLOAT16
    assert _sqnr(smoothed, tmp_path / "held.npz") > _sqnr(plain, tmp_path / "held.npz") + 15


def test_a_depthwise_weight_also_read_inside_an_if_body_is_kept(tmp_path):
    """The depthwise weight 'wd' is also read by an If branch (an outer-scope name, not an input of the If node):
    smoothing gives dw a new weight, and 'wd' must stay for the branch (the model must still load and run)."""
    from onnx import TensorProto, helper, numpy_helper

    from quant.backends.onnxruntime import OrtRunner

    depthwise_spread(tmp_path / "base.onnx")
    model = onnx.load(tmp_path / "base.onnx")
    branch = helper.make_graph([helper.make_node("Identity", ["wd"], ["wd_out"])], "branch", [],
                               [helper.make_tensor_value_info("wd_out", TensorProto.FLOAT, [8, 1, 3, 3])])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "always"))
    model.graph.node.append(helper.make_node("If", ["always"], ["z"], name="if", then_branch=branch,
                                             else_branch=branch))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [8, 1, 3, 3]))
    onnx.save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    result = quant.calibrate(tmp_path / "m.onnx", tmp_path / "cal.npz", methods=("minmax",), smooth=True)
    assert [l["node"] for l in result.smoothing["layers"]] == ["dw"]
    assert "wd" in {i.name for i in result.model.graph.initializer}
    x = {"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    np.testing.assert_array_equal(OrtRunner(result.model).run(x)[1], OrtRunner(tmp_path / "m.onnx").run(x)[1])
