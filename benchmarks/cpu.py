"""CPU deployment: which INT8 path is fastest here, and what it costs in accuracy. Not a test.

ResNet-18-shaped model (benchmarks/resnet.py, random weights) calibrated once with --target all; then,
in one run, latency at batch 1 and 16 (2 threads, median of alternating runs) of FP32 and both INT8
forms on ONNX Runtime and OpenVINO, and the output SQNR against FP32 on held-out synthetic images of
every INT8 path. The bundled digits example gives top-1 for the same paths. Writes
benchmarks/results/cpu.json and the "CPU deployment" section of benchmarks/RESULTS.md.

    python benchmarks/cpu.py               # about 3 minutes here
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def _sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    reference, candidate = reference.astype(np.float64), candidate.astype(np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - candidate) ** 2)))


def _runner(path, how: str):
    from quant.backends.onnxruntime import OrtRunner
    from quant.backends.openvino import OpenVinoRunner

    if how == "openvino":
        return OpenVinoRunner(path, threads=2)
    return OrtRunner(path, mode=how, threads=2)


PATHS = [  # (label, model key, how it runs)
    ("TensorRT form, exact Q/DQ (what TensorRT computes)", "tensorrt", "emulate"),
    ("TensorRT form on ORT int8", "tensorrt", "ort-int8"),
    ("TensorRT form on OpenVINO", "tensorrt", "openvino"),
    ("ort-cpu form, exact Q/DQ", "ort-cpu", "emulate"),
    ("ort-cpu form on ORT int8", "ort-cpu", "ort-int8"),
    ("ort-cpu form on OpenVINO", "ort-cpu", "openvino"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--heldout-images", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--method", default="entropy,minmax")
    args = parser.parse_args()

    import onnx

    import quant
    from quant.bench import bench
    from resnet import resnet

    methods = tuple(args.method.split(","))
    out: dict = {"machine": _machine(), "resnet18": {}, "digits": {}}
    with tempfile.TemporaryDirectory(prefix="quant-cpu-") as tmp:
        tmp = Path(tmp)
        fp32 = tmp / "resnet18.onnx"
        onnx.save(resnet(18), str(fp32))
        rng = np.random.default_rng(0)
        calibration = rng.standard_normal((args.calibration_images, 3, 224, 224), dtype=np.float32)
        heldout = rng.standard_normal((args.heldout_images, 3, 224, 224), dtype=np.float32)
        np.save(tmp / "calibration.npy", calibration)
        result = quant.calibrate(fp32, tmp / "calibration.npy", methods=methods, target="all")
        result.save(tmp / "cal")
        reference = _runner(fp32, "fp32").run({"input": heldout})[0]
        accuracy = {}
        for method in methods:
            folder = tmp / "cal" / method if len(methods) > 1 else tmp / "cal"
            models = {"tensorrt": folder / "model.int8.onnx", "ort-cpu": folder / "model.ort-cpu.int8.onnx"}
            accuracy[method] = {label: round(_sqnr(reference, _runner(models[key], how).run({"input": heldout})[0]), 2)
                                for label, key, how in PATHS}
            print(method, json.dumps(accuracy[method], indent=1), flush=True)
        out["resnet18"]["sqnr_db_vs_fp32"] = accuracy
        folder = tmp / "cal" / methods[0] if len(methods) > 1 else tmp / "cal"
        speed = bench(fp32, [folder / "model.int8.onnx", folder / "model.ort-cpu.int8.onnx"],
                      runtimes=("ort", "openvino"), batches=(1, 16), threads=2, repeat=args.repeat, warmup=5)
        print(speed.format_text(), flush=True)
        out["resnet18"]["latency"] = speed.to_json()
        out["resnet18"]["method_for_latency"] = methods[0]
        out["resnet18"]["ort_cpu_validation"] = json.loads((folder / "quant.json").read_text())["targets"]["ort-cpu"][
            "validation"]
        out["resnet18"]["reduce_range"] = result.reduce_range()

        digits = ROOT / "examples" / "digits"
        dres = quant.calibrate(digits / "model.onnx", digits / "calibration.npz", methods=methods, target="all")
        dres.save(tmp / "digits")
        for method in methods:
            folder = tmp / "digits" / method if len(methods) > 1 else tmp / "digits"
            rows = {}
            for label, key, how in PATHS:
                model = folder / ("model.int8.onnx" if key == "tensorrt" else "model.ort-cpu.int8.onnx")
                report = quant.evaluate(digits / "model.onnx", model, digits / "heldout.npz", runtime=how
                                        if how != "fp32" else "emulate")
                rows[label] = {"top1": report.task["top1"]["int8"], "fp32": report.task["top1"]["fp32"]}
            out["digits"][method] = rows
            print("digits", method, json.dumps(rows), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "cpu.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    write_section(out)


def _machine() -> dict:
    import importlib.metadata as md

    from quant.qdq.ort_cpu import cpu_has_vnni, u8s8_kernels_saturate

    info = {"python": platform.python_version(), "cores": __import__("os").cpu_count(),
            "cpu_flags_vnni": cpu_has_vnni(), "ort_u8s8_saturates": u8s8_kernels_saturate()}
    for package in ("onnxruntime", "openvino", "onnx", "numpy"):
        try:
            info[package] = md.version(package)
        except md.PackageNotFoundError:
            info[package] = None
    return info


def write_section(out: dict) -> None:
    m = out["machine"]
    lat = out["resnet18"]["latency"]
    lines = ["## CPU deployment (benchmarks/cpu.py)", "",
             f"Machine: {m['cores']} cores; onnxruntime {m['onnxruntime']}, openvino {m['openvino']}; CPU flags list "
             f"VNNI: {m['cpu_flags_vnni']}; ORT's u8 x s8 kernels saturate (probe): {m['ort_u8s8_saturates']}. "
             f"ResNet-18-shaped model with random weights, calibrated once with `--target all` "
             f"({out['resnet18']['method_for_latency']} for the latency rows), 2 threads, median of "
             f"{lat['repeat']} alternating runs after {lat['warmup']} warm-up runs.", "",
             "| runtime | model | batch | median ms | samples/s | vs FP32 on ORT |", "| --- | --- | --- | --- | --- | --- |"]
    for row in lat["rows"]:
        ratio = "1.00x" if row["speedup_vs_ort_fp32"] is None else f"{row['speedup_vs_ort_fp32']:.2f}x"
        lines.append(f"| {row['runtime']} | {row['model']} | {row['batch']} | {row['median_ms']:.2f} | "
                     f"{row['throughput']:.1f} | {ratio} |")
    lines += ["", "Output SQNR against FP32 on held-out synthetic images (dB, higher is better):", "",
              "| path | " + " | ".join(out["resnet18"]["sqnr_db_vs_fp32"]) + " |",
              "| --- |" + " --- |" * len(out["resnet18"]["sqnr_db_vs_fp32"])]
    labels = next(iter(out["resnet18"]["sqnr_db_vs_fp32"].values()))
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{v[label]:.2f}" for v in out["resnet18"]["sqnr_db_vs_fp32"].values())
                     + " |")
    lines += ["", "Digits example, held-out top-1 (FP32 "
              f"{next(iter(next(iter(out['digits'].values())).values()))['fp32'] * 100:.2f}%):", "",
              "| path | " + " | ".join(out["digits"]) + " |", "| --- |" + " --- |" * len(out["digits"])]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{v[label]['top1']:.2f}%" for v in out["digits"].values()) + " |")
    from results_md import write_section as replace

    replace("## CPU deployment", "\n".join(lines))


if __name__ == "__main__":
    main()
