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
