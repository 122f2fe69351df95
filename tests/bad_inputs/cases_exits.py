"""Bad inputs that used to end in a traceback or a wrong exit code (issue 13, "Tracebacks and wrong exit
codes"; labels and images of "Silently wrong"). Each ends with exit 2 and one Error line."""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _calibrated(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("minmax",)).save(d / "cal")
    return d / "cal"


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- malformed JSON read back --------------------------------------------------------------------------

def manifest_config_bins_string(d: Path):
    cal = _calibrated(d)
    _edit_json(cal / "quant.json", lambda m: m["config"].update(bins="4096"))
    return ["recalibrate", cal, "--method", "mse", "--output", d / "re"]


def manifest_model_is_a_list(d: Path):
    cal = _calibrated(d)
    _edit_json(cal / "quant.json", lambda m: m.update(model=[m["model"]]))
    return ["report", cal, "--output", d / "rep"]


def manifest_not_utf8(d: Path):
    cal = _calibrated(d)
    (cal / "quant.json").write_bytes(b'{"model": "\xff\xfe"}')
    return ["recalibrate", cal, "--method", "mse", "--output", d / "re"]


def manifest_huge_number(d: Path):
    cal = _calibrated(d)
    text = (cal / "quant.json").read_text()
    (cal / "quant.json").write_text(text.replace('"opset": ', '"opset": 1e999, "was": ', 1))
    return ["report", cal, "--output", d / "rep"]


def eval_json_outputs_null(d: Path):
    cal = _calibrated(d)
    (cal / "eval.json").write_text(json.dumps({"runtime": {"int8": "emulate"}, "samples": 3, "outputs": None}))
    return ["report", cal, "--output", d / "rep"]


def sensitivity_json_layers_not_list(d: Path):
    cal = _calibrated(d)
    (cal / "sensitivity.json").write_text(json.dumps({"metric": "top1", "layers": {"node": "x"}}))
    return ["fallback", MODEL, "--calibration", cal, "--data", HELDOUT, "--max-drop", "1", "--output", d / "fb"]


def preprocess_spec_is_a_list(d: Path):
    (d / "spec.json").write_text("[224, 224]")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--preprocess", d / "spec.json", "--output", d / "out"]


def preprocess_resize_text(d: Path):
    (d / "spec.json").write_text(json.dumps({"resize": [8, "eight"]}))
    return ["calibrate", MODEL, "--data", CALIBRATION, "--preprocess", d / "spec.json", "--output", d / "out"]


def hf_state_json_null_files(d: Path):
    import datasets

    data = np.load(CALIBRATION)
    datasets.Dataset.from_dict({"input": data["input"][:4].tolist()}).save_to_disk(str(d / "hf"))
    _edit_json(d / "hf" / "state.json", lambda s: s.update(_data_files=None))
    return ["calibrate", MODEL, "--data", d / "hf", "--output", d / "out"]


# --- custom metrics ------------------------------------------------------------------------------------

def _metric_file(d: Path, body: str) -> Path:
    (d / "metric.py").write_text("import numpy as np\nimport sys\n" + body)
    return d / "metric.py"


def metric_returns_string(d: Path):
    path = _metric_file(d, "def f(outputs, labels):\n    return 'high'\n")
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", f"{path}:f", "--max-drop", "1"]


def metric_returns_nan(d: Path):
    path = _metric_file(d, "def f(outputs, labels):\n    return float('nan')\n")
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", f"{path}:f", "--max-drop", "1"]


def metric_syntax_error(d: Path):
    path = _metric_file(d, "def f(:\n")
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", f"{path}:f", "--max-drop", "1"]


def metric_calls_sys_exit(d: Path):
    path = _metric_file(d, "def f(outputs, labels):\n    sys.exit(0)\n")
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", f"{path}:f", "--max-drop", "1"]


def metric_spec_without_module(d: Path):
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", ":f", "--max-drop", "1"]


# --- options -------------------------------------------------------------------------------------------

def _calibrate_with(*options):
    return lambda d: ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", *options]


# --- model shapes and labels ----------------------------------------------------------------------------

def sequence_input(d: Path):
    seq = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("SequenceAt", ["xs", "zero"], ["x"], name="at"),
                               helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "seq", [seq],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.ones((4, 3), np.float32), "w"),
                               numpy_helper.from_array(np.array(0, np.int64), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(d / "seq.onnx"))
    np.savez(d / "seq.npz", xs=np.ones((8, 4), np.float32))
    return ["calibrate", d / "seq.onnx", "--data", d / "seq.npz", "--output", d / "out"]


def batch_last_output(d: Path, declared: str = "N"):
    """y = (x W)^T, batch last; ``declared``: the name its shape gives that axis ('N', the inputs' batch name: refused
    from the declaration; another name: refused when a batch's output shape shows it)."""
    import quant

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 10)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                               helper.make_node("Transpose", ["h"], ["y"], name="t", perm=[1, 0])], "t",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10, declared])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(d / "t.onnx"))
    rng = np.random.default_rng(1)
    np.savez(d / "t.npz", x=rng.standard_normal((40, 8)).astype(np.float32), label=rng.integers(0, 10, 40))
    quant.calibrate(d / "t.onnx", d / "t.npz", methods=("minmax",)).save(d / "cal")
    return ["gate", d / "t.onnx", d / "cal" / "model.int8.onnx", "--data", d / "t.npz", "--max-drop", "1"]


def _labels(d: Path, change) -> Path:
    labels = np.load(HELDOUT)["label"].astype(np.int64)
    labels = change(labels)
    np.save(d / "labels.npy", labels)
    return d / "labels.npy"


def labels_minus_one(d: Path):
    labels = _labels(d, lambda l: np.full_like(l, -1))
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--labels", labels, "--max-drop", "0.5"]


def labels_uint64_wrap(d: Path):
    labels = _labels(d, lambda l: np.full(l.shape, np.iinfo(np.uint64).max, np.uint64))
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--labels", labels, "--max-drop", "0.5"]


def labels_one_beyond_classes(d: Path):
    def change(labels):
        labels[11] = 10
        return labels
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", _labels(d, change)]


def _png_rgb16(path: Path, height: int = 8, width: int = 8) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(range(width * 6)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def color_png_16_bit(d: Path):
    for k in range(3):
        (d / "images" / "a").mkdir(parents=True, exist_ok=True)
        _png_rgb16(d / "images" / "a" / f"{k}.png")
    return ["calibrate", MODEL, "--data", d / "images", "--color", "L", "--output", d / "out"]


CASES = [
    Case("manifest_config_bins_string", manifest_config_bins_string, "field 'config': calibration config 'bins'"),
    Case("manifest_model_is_a_list", manifest_model_is_a_list, "field 'model' must be an object, got a list of 1"),
    Case("manifest_not_utf8", manifest_not_utf8, "is not UTF-8 text"),
    Case("manifest_huge_number", manifest_huge_number, "field 'model.opset' must be an integer, got inf"),
    Case("eval_json_outputs_null", eval_json_outputs_null, "eval.json' is malformed: field 'outputs' must be an object"),
    Case("sensitivity_json_layers_not_list", sensitivity_json_layers_not_list, "field 'layers' must be a list"),
    Case("preprocess_spec_is_a_list", preprocess_spec_is_a_list, "the top level must be an object"),
    Case("preprocess_resize_text", preprocess_resize_text, "field 'resize[1]' must be an integer"),
    Case("hf_state_json_null_files", hf_state_json_null_files, "state.json' is malformed: field '_data_files'"),
    Case("metric_returns_string", metric_returns_string, "returned the string 'high'"),
    Case("metric_returns_nan", metric_returns_nan, "not a finite value"),
    Case("metric_syntax_error", metric_syntax_error, "failed on import: SyntaxError"),
    Case("metric_calls_sys_exit", metric_calls_sys_exit, "called sys.exit(0) on a batch"),
    Case("metric_spec_without_module", metric_spec_without_module, "is not MODULE:FUNCTION"),
    Case("seed_negative", _calibrate_with("--seed", "-1"), "argument --seed: must be an integer from 0"),
    Case("memory_budget_inf", _calibrate_with("--memory-budget", "inf"), "argument --memory-budget: expected a finite"),
    Case("bins_2_40", _calibrate_with("--bins", str(2**40)), "argument --bins: must be an integer from 256 to 65536"),
    Case("trt_version_negative", _calibrate_with("--trt-version", "-1"), "'-1' is not a TensorRT version"),
    Case("num_samples_zero", _calibrate_with("--num-samples", "0"), "argument --num-samples: must be an integer >= 1"),
    Case("topk_zero", lambda d: ["eval", MODEL, MODEL, "--data", HELDOUT, "--topk", "0"], "argument --topk"),
    Case("metric_top0", lambda d: ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", "top0", "--max-drop", "1"],
         "top-k needs k from 1"),
    Case("max_drop_nan", lambda d: ["gate", MODEL, MODEL, "--data", HELDOUT, "--max-drop", "nan"],
         "argument --max-drop: expected a finite number"),
    Case("threads_zero", lambda d: ["bench", MODEL, MODEL, "--threads", "0"], "argument --threads"),
    Case("workspace_negative", lambda d: ["build", d, "--output", d / "e.engine", "--workspace", "-5"],
         "argument --workspace"),
    Case("sequence_input", sequence_input, "model input 'xs' is a sequence, not a tensor"),
    Case("batch_last_output", batch_last_output, "model output 'y' is declared [10, N]: the batch axis 'N' of the "
         "inputs is its axis 1, not the first"),
    Case("batch_last_output_undeclared", lambda d: batch_last_output(d, declared="M"),
         "model output 'y' has shape [10, 32] for a batch of 32"),
    Case("labels_minus_one", labels_minus_one, "sample 0 has the negative class -1"),
    Case("labels_uint64_wrap", labels_uint64_wrap, "sample 0 has class 18446744073709551615"),
    Case("labels_one_beyond_classes", labels_one_beyond_classes, "(first: sample 11)"),
    Case("color_png_16_bit", color_png_16_bit, "is a 16-bit colour PNG"),
]
