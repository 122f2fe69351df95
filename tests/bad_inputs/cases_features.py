"""Bad-input cases of the Q/DQ writing area (float types, exclusions, inclusions, weight storage)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bad_inputs.cases import Case
from float_models import bfloat16_conv, float16_conv


def bfloat16_model(d: Path):
    model = bfloat16_conv(d / "bf16.onnx")
    np.savez(d / "d.npz", x=np.ones((4, 3, 8, 8), np.float32))
    return ["calibrate", model, "--data", d / "d.npz", "--output", d / "out"]


def float16_model_ort_cpu_target(d: Path):
    model = float16_conv(d / "fp16.onnx")
    np.savez(d / "d.npz", x=np.ones((4, 3, 8, 8), np.float16))
    return ["calibrate", model, "--data", d / "d.npz", "--output", d / "out", "--target", "all"]


CASES = [
    Case("bfloat16 model (no ORT CPU kernels)", bfloat16_model, "are bfloat16"),
    Case("float16 model with --target all", float16_model_ort_cpu_target, "written for float32 models"),
]


def _digits(d: Path, *flags):
    from bad_inputs.cases import CALIBRATION, MODEL

    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", *flags]


def _fresh_folder(d: Path, name: str, files: dict[str, str]):
    folder = d / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def eval_folder_without_models(d: Path):
    from bad_inputs.cases import HELDOUT, MODEL

    folder = _fresh_folder(d, "notes", {"readme.txt": "not a calibration"})
    return ["eval", MODEL, folder, "--data", HELDOUT]


def eval_folder_damaged_summary(d: Path):
    from bad_inputs.cases import HELDOUT, MODEL

    folder = _fresh_folder(d, "multi", {"summary.json": '{"methods": 3'})
    return ["eval", MODEL, folder, "--data", HELDOUT]


def eval_folder_missing_method(d: Path):
    from bad_inputs.cases import HELDOUT, MODEL

    folder = _fresh_folder(d, "multi", {"summary.json": '{"methods": ["entropy"]}'})
    return ["eval", MODEL, folder, "--data", HELDOUT]


def report_damaged_summary(d: Path):
    folder = _fresh_folder(d, "multi", {"summary.json": '{"methods": ["a"]}'})
    return ["report", folder]


CASES += [
    Case("--exclude-regex not a regex", lambda d: _digits(d, "--exclude-regex", "(unclosed"),
         "is not a regular expression"),
    Case("--exclude-regex matching no node", lambda d: _digits(d, "--exclude-regex", "^/encoder/"),
         "matches no node name"),
    Case("--exclude-op-type absent", lambda d: _digits(d, "--exclude-op-type", "LSTM"), "the model has no LSTM node"),
    Case("--include of a non-weighted op", lambda d: _digits(d, "--include", "/block1/Add"),
         "quant quantizes the inputs of"),
    Case("--include and --exclude one node", lambda d: _digits(d, "--include", "/head/Gemm", "--exclude", "/head/Gemm"),
         "both --include and --exclude"),
    Case("--include unknown node", lambda d: _digits(d, "--include", "/no/such"), "--include names nodes"),
    Case("--weight-storage unknown", lambda d: _digits(d, "--weight-storage", "int4"), "invalid choice"),
    Case("--high-precision unknown", lambda d: _digits(d, "--high-precision", "bf16"), "invalid choice"),
    Case("eval of a folder without models", eval_folder_without_models, "holds neither model.int8.onnx nor summary.json"),
    Case("eval of a folder with a damaged summary.json", eval_folder_damaged_summary, "is damaged"),
    Case("eval of a folder missing a method's model", eval_folder_missing_method, "has no entropy/model.int8.onnx"),
    Case("report of a methods folder without method folders", report_damaged_summary, "is damaged"),
]
