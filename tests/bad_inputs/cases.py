"""The corpus of bad inputs: each case builds its files in a folder and gives the command and the error.

Every case must end with exit code 2, one 'Error:' line naming the problem (optionally one 'Hint:'
line), no traceback, and nothing new in the folder.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
MODEL, CALIBRATION, HELDOUT = DIGITS / "model.onnx", DIGITS / "calibration.npz", DIGITS / "heldout.npz"


@dataclass
class Case:
    name: str
    build: Callable[[Path], list]  # folder -> argv for `quant`
    error: str  # a substring of the Error: line


def _model_bytes() -> bytes:
    return MODEL.read_bytes()


def truncated_onnx(d: Path):
    (d / "truncated.onnx").write_bytes(_model_bytes()[: len(_model_bytes()) // 3])
    return ["calibrate", d / "truncated.onnx", "--data", CALIBRATION, "--output", d / "out"]


def corrupt_onnx(d: Path):
    data = bytearray(_model_bytes())
    rng = np.random.default_rng(0)
    for position in rng.integers(0, 200, 40):
        data[position] ^= 0xFF
    (d / "corrupt.onnx").write_bytes(bytes(data))
    return ["calibrate", d / "corrupt.onnx", "--data", CALIBRATION, "--output", d / "out"]


def not_onnx(d: Path):
    (d / "photo.onnx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return ["calibrate", d / "photo.onnx", "--data", CALIBRATION, "--output", d / "out"]


def nothing_to_quantize(d: Path):
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(d / "relu.onnx"))
    return ["calibrate", d / "relu.onnx", "--data", CALIBRATION, "--output", d / "out"]


def already_quantized(d: Path):
    out = d / "first"
    import quant

    quant.calibrate(MODEL, CALIBRATION).save(out)
    return ["calibrate", out / "model.int8.onnx", "--data", CALIBRATION, "--output", d / "out"]


def _npz(d: Path, name: str, **arrays):
    np.savez(d / name, **arrays)
    return ["calibrate", MODEL, "--data", d / name, "--output", d / "out"]


GOOD = np.zeros((4, 1, 8, 8), np.float32)


def nan_data(d: Path):
    bad = GOOD.copy()
    bad[1, 0, 2, 2] = np.nan
    return _npz(d, "nan.npz", input=bad)


def inf_data(d: Path):
    bad = GOOD.copy()
    bad[3, 0, 0, 0] = -np.inf
    return _npz(d, "inf.npz", input=bad)


def empty_folder(d: Path):
    (d / "empty").mkdir()
    return ["calibrate", MODEL, "--data", d / "empty", "--output", d / "out"]


def single_sample(d: Path):
    return _npz(d, "one.npz", input=GOOD[:1])


def labels_do_not_match_outputs(d: Path):
    np.save(d / "labels.npy", np.full(540, 10, np.int64))
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.npy"]


def labels_wrong_length(d: Path):
    np.save(d / "labels.npy", np.zeros(7, np.int64))
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.npy"]


def external_data_outside_folder(d: Path):
    model = onnx.load(str(MODEL))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    (d / "sub").mkdir()
    onnx.save(model, str(d / "sub" / "evil.onnx"))
    return ["calibrate", d / "sub" / "evil.onnx", "--data", CALIBRATION, "--output", d / "out"]


def output_not_writable(d: Path):
    (d / "a_file").write_text("not a folder")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "a_file" / "out"]


def output_is_input_folder(d: Path):
    shutil.copy(MODEL, d / "model.onnx")
    return ["calibrate", d / "model.onnx", "--data", CALIBRATION, "--output", d]


def recalibrate_other_model(d: Path):
    import quant
    from models import dynamic_conv

    quant.calibrate(MODEL, CALIBRATION).save(d / "cal")
    other = dynamic_conv(d / "other.onnx", channels=1)
    return ["recalibrate", d / "cal", "--method", "mse", "--model", other, "--output", d / "re"]


def malformed_histograms(d: Path):
    import quant

    quant.calibrate(MODEL, CALIBRATION).save(d / "cal")
    (d / "cal" / "histograms.npz").write_bytes(b"PK\x03\x04 broken")
    return ["recalibrate", d / "cal", "--method", "mse", "--output", d / "re"]


def unknown_method(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--method", "entropy,kld"]


def bad_percentile(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--method", "percentile",
            "--percentile", "101"]


def unknown_exclude(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--exclude", "no_such_node"]


def damaged_npy_header(d: Path):
    np.save(d / "x.npy", GOOD)
    data = bytearray((d / "x.npy").read_bytes())
    data[20:40] = b"{'descr': (((((((((("  # found by the fuzz run: numpy raised tokenize.TokenError
    (d / "x.npy").write_bytes(bytes(data))
    return ["calibrate", MODEL, "--data", d / "x.npy", "--output", d / "out"]


def malformed_cache_line(d: Path):
    import quant

    quant.calibrate(MODEL, CALIBRATION).save(d / "cal")
    cache = d / "cal" / "calibration.cache"
    cache.write_text(cache.read_text() + "this line is not name: hex\n")
    return ["build", d / "cal", "--implicit", "--output", d / "model.engine"]


def build_with_changed_model(d: Path):
    import quant

    shutil.copy(MODEL, d / "model.onnx")
    quant.calibrate(d / "model.onnx", CALIBRATION).save(d / "cal")
    from models import dynamic_conv

    dynamic_conv(d / "model.onnx", channels=1)  # the recorded FP32 model is now another model
    return ["build", d / "cal", "--implicit", "--output", d / "model.engine"]


CASES = [
    Case("truncated_onnx", truncated_onnx, "ONNX model"),
    Case("corrupt_onnx", corrupt_onnx, "ONNX model"),
    Case("not_onnx", not_onnx, "not a readable ONNX model"),
    Case("nothing_to_quantize", nothing_to_quantize, "nothing to quantize"),
    Case("already_quantized", already_quantized, "already contains quantization nodes"),
    Case("wrong_input_name", lambda d: _npz(d, "names.npz", pixels=GOOD, other=GOOD), "no array for model input 'input'"),
    Case("wrong_rank", lambda d: _npz(d, "rank.npz", input=GOOD[:, 0]), "has rank 4"),
    Case("wrong_dtype", lambda d: _npz(d, "dtype.npz", input=GOOD.astype(np.int64)), "is float32, but the data"),
    Case("wrong_spatial_size", lambda d: _npz(d, "size.npz", input=np.zeros((4, 1, 16, 16), np.float32)),
         "expects size 8 on axis 2"),
    Case("nan_in_data", nan_data, "NaN or Inf"),
    Case("inf_in_data", inf_data, "NaN or Inf"),
    Case("empty_folder", empty_folder, "is empty"),
    Case("empty_array", lambda d: _npz(d, "empty.npz", input=GOOD[:0]), "empty"),
    Case("single_sample", single_sample, "at least 2 samples"),
    Case("labels_do_not_match_outputs", labels_do_not_match_outputs, "does not fit the 10 classes"),
    Case("labels_wrong_length", labels_wrong_length, "has 7 entries but the data has 540"),
    Case("external_data_outside_folder", external_data_outside_folder, "outside the model's folder; refused"),
    Case("output_not_writable", output_not_writable, "cannot write to the output folder"),
    Case("output_is_input_folder", output_is_input_folder, "contains the input"),
    Case("recalibrate_other_model", recalibrate_other_model, "is not the one"),
    Case("malformed_histograms", malformed_histograms, "cannot read histograms"),
    Case("unknown_method", unknown_method, "unknown calibration method 'kld'"),
    Case("bad_percentile", bad_percentile, "argument --percentile: must be a number in (0, 100]"),
    Case("unknown_exclude", unknown_exclude, "no_such_node"),
    Case("damaged_npy_header", damaged_npy_header, "cannot read NumPy data"),
    Case("malformed_cache_line", malformed_cache_line, "is malformed"),
    Case("build_with_changed_model", build_with_changed_model, "changed since calibration"),
]
