"""One peer quantizer run, in whatever virtual environment has the tool (imports only numpy, onnx and it).

    python suite_worker.py TOOL FP32.onnx CALIBRATION.npz OUT.onnx

CALIBRATION.npz holds one array per sample and input, named "<input>::<index>" (shapes may differ
between samples). Prints one JSON line: {"status": "ok"} or {"status": "failed: ..."}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np


def samples(path: str) -> list[dict[str, np.ndarray]]:
    data = np.load(path)
    by_index: dict[int, dict] = {}
    for key in data.files:
        name, _, index = key.rpartition("::")
        by_index.setdefault(int(index), {})[name] = data[key]
    return [by_index[i] for i in sorted(by_index)]


def ort(method: str, fp32: str, calibration: str, out: str) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    items = samples(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.index = 0

        def get_next(self):
            if self.index >= len(items):
                return None
            self.index += 1
            return {k: v[None] for k, v in items[self.index - 1].items()}

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # ORT writes augmented models into the working folder
        quantize_static(fp32, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                        calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def nncf_quantize(fp32: str, calibration: str, out: str) -> None:
    import nncf
    import onnx

    items = samples(calibration)
    model = onnx.load(fp32)
    dataset = nncf.Dataset(items, lambda item: {k: v[None] for k, v in item.items()})
    quantized = nncf.quantize(model, dataset, subset_size=len(items))
    onnx.save(quantized, out)


def modelopt(method: str, fp32: str, calibration: str, out: str) -> None:
    items = samples(calibration)
    names = list(items[0])
    shapes = {n: {tuple(item[n].shape) for item in items} for n in names}
    varying = [n for n, s in shapes.items() if len(s) > 1]
    if varying:
        raise RuntimeError(f"its calibration data is one fixed-shape array per input; input '{varying[0]}' has "
                           f"{len(shapes[varying[0]])} different shapes (variable-width text lines)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "calibration.npz"
        np.savez(data, **{n: np.stack([item[n] for item in items]) for n in names})
        command = [sys.executable, "-m", "modelopt.onnx.quantization", "--onnx_path", fp32, "--quantize_mode", "int8",
                   "--calibration_method", method, "--calibration_data_path", str(data), "--output_path", out,
                   "--high_precision_dtype", "fp32", "--calibration_eps", "cpu"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not Path(out).exists():
            lines = [l for l in (done.stderr + done.stdout).strip().splitlines() if l.strip()]
            raise RuntimeError(lines[-1] if lines else f"exit code {done.returncode}")


def main() -> None:
    tool, fp32, calibration, out = sys.argv[1:5]
    try:
        if tool.startswith("ort-"):
            ort({"ort-minmax": "MinMax", "ort-entropy": "Entropy", "ort-percentile": "Percentile"}[tool], fp32,
                calibration, out)
        elif tool == "nncf":
            nncf_quantize(fp32, calibration, out)
        elif tool.startswith("modelopt-"):
            modelopt(tool.removeprefix("modelopt-"), fp32, calibration, out)
        else:
            raise RuntimeError(f"unknown tool {tool}")
        print(json.dumps({"status": "ok"}))
    except BaseException as exc:  # recorded, not raised: the suite goes on with the next tool
        last = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        frames = traceback.extract_tb(exc.__traceback__)
        if frames and not isinstance(exc, RuntimeError):  # where inside the tool it broke
            frame = frames[-1]
            last += f" (in {frame.name}, {Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno})"
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"status": f"failed: {last[:300]}"}))


if __name__ == "__main__":
    main()
