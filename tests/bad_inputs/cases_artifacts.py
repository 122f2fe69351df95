"""Bad-input corpus, artifacts: names that would forge cache lines, NaN/Inf weights, forged or damaged
calibration caches and histograms.npz. Same contract as cases.py (exit 2, one Error line, no traceback,
nothing new in the folder); run by tests/integration/test_bad_inputs_artifacts.py."""
from __future__ import annotations

import functools
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bad_inputs.cases import CALIBRATION, MODEL, Case


def renamed_model(path: Path, tensors: dict[str, str] = {}, nodes: dict[str, str] = {}) -> Path:
    """The bundled digits model with tensors and nodes renamed (everywhere they appear)."""
    model = onnx.load(str(MODEL))
    for node in model.graph.node:
        node.input[:] = [tensors.get(t, t) for t in node.input]
        node.output[:] = [tensors.get(t, t) for t in node.output]
        node.name = nodes.get(node.name, node.name)
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        value.name = tensors.get(value.name, value.name)
    for init in model.graph.initializer:
        init.name = tensors.get(init.name, init.name)
    onnx.save(model, str(path))
    return path


def changed_weight(path: Path, initializer: str, change) -> Path:
    model = onnx.load(str(MODEL))
    for init in model.graph.initializer:
        if init.name == initializer:
            values = numpy_helper.to_array(init).copy()
            change(values)
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, str(path))
    return path


@functools.lru_cache(maxsize=1)
def _calibrated() -> Path:
    import quant

    folder = Path(tempfile.mkdtemp(prefix="quant-corpus-")) / "cal"
    quant.calibrate(MODEL, CALIBRATION).save(folder)
    return folder


def calibration_folder(d: Path) -> Path:
    """A fresh copy of one digits calibration (calibrated once per test process)."""
    return Path(shutil.copytree(_calibrated(), d / "cal"))


def _calibrate(model: Path, d: Path):
    return ["calibrate", model, "--data", CALIBRATION, "--output", d / "out"]


def newline_in_tensor_name(d: Path):
    return _calibrate(renamed_model(d / "m.onnx", {"/block1/relu/Relu_output_0": "evil\nforged: 7f7fffff"}), d)


def carriage_return_in_tensor_name(d: Path):
    return _calibrate(renamed_model(d / "m.onnx", {"/block1/relu/Relu_output_0": "a\rb: 00000001"}), d)


def nul_in_tensor_name(d: Path):
    return _calibrate(renamed_model(d / "m.onnx", {"/down/down.2/Relu_output_0": "a\x00b"}), d)


def line_separator_in_tensor_name(d: Path):
    return _calibrate(renamed_model(d / "m.onnx", {"/down/down.2/Relu_output_0": "a\u2028b"}), d)


def non_utf8_tensor_name(d: Path):
    """A tensor name that is not UTF-8 (protobuf hands it out as bytes)."""
    renamed_model(d / "m.onnx", {"/block1/relu/Relu_output_0": "ZZZQQQ"})
    data = (d / "m.onnx").read_bytes().replace(b"ZZZQQQ", b"ZZ\xff\xfeQQ")
    (d / "m.onnx").write_bytes(data)
    return _calibrate(d / "m.onnx", d)


def nan_weight(d: Path):
    return _calibrate(changed_weight(d / "m.onnx", "onnx::Conv_66", lambda w: w.__setitem__((3, 0, 0, 0), np.nan)), d)


def inf_weight(d: Path):
    return _calibrate(changed_weight(d / "m.onnx", "head.weight", lambda w: w.__setitem__((1, 2), np.inf)), d)


def inf_bias(d: Path):
    return _calibrate(changed_weight(d / "m.onnx", "onnx::Conv_64", lambda w: w.__setitem__(0, -np.inf)), d)


def _cache_case(d: Path, text: bytes):
    folder = calibration_folder(d)
    (folder / "calibration.cache").write_bytes(text)
    return ["build", folder, "--implicit", "--output", d / "model.engine"]


HEADER = b"TRT-100300-EntropyCalibration2\n"


def _histograms_case(d: Path, change, command="recalibrate"):
    folder = calibration_folder(d)
    path = folder / "histograms.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    if command == "report":
        return ["report", folder]
    return ["recalibrate", folder, "--method", "mse", "--output", d / "re"]


def _set(key, index, value):
    def change(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value
    return change


def _npy_header(shape, dtype="<i8") -> bytes:
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def histograms_declaring_2_30_bins(d: Path):
    """A small histograms.npz whose first tensor declares 2**30 bins (8 GiB of counts)."""
    folder = calibration_folder(d)
    path = folder / "histograms.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["0.meta"] = np.array([1 << 30, arrays["0.meta"][1], arrays["0.meta"][2]])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            if key == "0.counts":
                with archive.open("0.counts.npy", "w", force_zip64=True) as member:
                    member.write(_npy_header((1 << 30,)))
                    member.write(bytes(1 << 20))  # 1 MiB of the 8 GiB declared
            else:
                with archive.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, value)
    return ["recalibrate", folder, "--method", "mse", "--output", d / "re"]


def _drop_tensor(arrays):
    arrays["names"] = arrays["names"][1:]
    for key in [k for k in arrays if k != "names"]:
        index, field = key.split(".")
        if index != "0":
            arrays[f"{int(index) - 1}.{field}.new"] = arrays[key]
        del arrays[key]
    for key in [k for k in arrays if k.endswith(".new")]:
        arrays[key[:-4]] = arrays.pop(key)


def _halve_bins(arrays):
    """Every histogram re-binned to 2048 bins over the same range (valid, but not what quant.json says)."""
    for key in [k for k in arrays if k.endswith(".counts")]:
        index = key.split(".")[0]
        arrays[key] = arrays[key].reshape(2048, 2).sum(axis=1)
        meta = arrays[f"{index}.meta"]
        arrays[f"{index}.meta"] = np.array([2048, meta[1], meta[2]])


CASES = [
    Case("newline_in_tensor_name", newline_in_tensor_name, "holds the character '\\n'"),
    Case("carriage_return_in_tensor_name", carriage_return_in_tensor_name, "holds the character '\\r'"),
    Case("nul_in_tensor_name", nul_in_tensor_name, "holds the character '\\x00'"),
    Case("line_separator_in_tensor_name", line_separator_in_tensor_name, "holds the character '\\u2028'"),
    Case("non_utf8_tensor_name", non_utf8_tensor_name, "has a tensor name that is not valid UTF-8"),
    Case("error_line_stays_one_line", lambda d: _calibrate(MODEL, d) + ["--exclude", "no\nsuch\rnode"], "no\\nsuch\\rnode"),
    Case("nan_weight", nan_weight, "initializer 'onnx::Conv_66' of node '/block1/conv1/Conv' holds NaN"),
    Case("inf_weight", inf_weight, "initializer 'head.weight' of node '/head/Gemm' holds Inf"),
    Case("inf_bias", inf_bias, "initializer 'onnx::Conv_64' of node '/stem/stem.0/Conv' holds Inf"),
    Case("cache_forged_line", lambda d: _cache_case(d, HEADER + b"input: 3c010204\nevil\nforged: 7f7fffff\n"),
         "line 3 is malformed"),
    Case("cache_nan_scale", lambda d: _cache_case(d, HEADER + b"input: 7fc00000\n"), "is not finite"),
    Case("cache_denormal_scale", lambda d: _cache_case(d, HEADER + b"input: 00000001\n"), "is denormal"),
    Case("cache_duplicate_tensor", lambda d: _cache_case(d, HEADER + b"input: 3c010204\ninput: 3d010204\n"),
         "appears twice"),
    Case("cache_hex_with_space", lambda d: _cache_case(d, HEADER + b"input: 3c01 204\n"), "bad hex value"),
    Case("cache_not_utf8", lambda d: _cache_case(d, HEADER + b"\xff\xfe: 3c010204\n"), "line 2 is not UTF-8"),
    Case("cache_nul_in_name", lambda d: _cache_case(d, HEADER + b"in\x00put: 3c010204\n"), "holds the character"),
    Case("histograms_declaring_2_30_bins", histograms_declaring_2_30_bins, "declares 1073741824 bins"),
    Case("histograms_negative_count", lambda d: _histograms_case(d, _set("1.counts", 5, -7)), "negative count"),
    Case("histograms_float_counts", lambda d: _histograms_case(
        d, lambda a: a.__setitem__("2.counts", a["2.counts"] + 0.5)), "has dtype float64"),
    Case("histograms_nan_statistic", lambda d: _histograms_case(d, _set("1.stats", 0, np.nan)),
         "non-finite statistics"),
    Case("histograms_nan_statistic_report", lambda d: _histograms_case(d, _set("1.stats", 2, np.nan), "report"),
         "non-finite statistics"),
    Case("histograms_absurd_exponent", lambda d: _histograms_case(d, _set("3.meta", 1, 1000)), "records exponent 1000"),
    Case("histograms_counts_do_not_sum", lambda d: _histograms_case(d, _set("0.counts", 0, 10**6)), "bin count above"),
    Case("histograms_missing_tensor_report", lambda d: _histograms_case(d, _drop_tensor, "report"),
         "no histogram for tensor 'input'"),
    Case("histograms_bins_differ_from_quant_json", lambda d: _histograms_case(d, _halve_bins), "records --bins 4096"),
]
