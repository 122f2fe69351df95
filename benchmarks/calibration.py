"""Calibration cost: `quant` (all four methods, one pass) vs ONNX Runtime's quantize_static, side by side.

Not a test. Each measurement runs in its own process; the parent samples the child's RSS and stops it
above --memory-cap (recorded as "over cap", not as a crash). Writes benchmarks/RESULTS.md and
benchmarks/results/calibration.json.

    python benchmarks/calibration.py                      # ResNet-18 and -50, 64/256/1024 images (~30 min here)
    python benchmarks/calibration.py --models resnet18 --images 64
    python benchmarks/calibration.py --models resnet18 --images 256 --repeat 3   # median of 3, interleaved
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPE = (3, 224, 224)
TOOLS = ("quant", "ort-minmax", "ort-entropy", "ort-percentile")


def sample(index: int) -> np.ndarray:
    """Deterministic synthetic image i (the same for every tool)."""
    return np.random.default_rng(index).standard_normal(SHAPE, dtype=np.float32)


# ------------------------------------------------------------------ workers (run in their own process)
def worker(tool: str, model_path: str, images: int, workdir: str) -> dict:
    start = time.perf_counter()
    if tool == "quant":
        import quant
        from quant.datasets import DataSource

        class Synthetic(DataSource):
            description = f"{images} synthetic 224x224 images"

            def __len__(self):
                return images

            @property
            def keys(self):
                return ["input"]

            def sample(self, index):
                return {"input": sample(index)}

        result = quant.calibrate(model_path, Synthetic(), methods=("entropy", "minmax", "percentile", "mse"))
        result.save(Path(workdir) / "quant-out")
        extra = {"batches": result.data["batches"]}
    else:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.index = 0

            def get_next(self):
                if self.index >= images:
                    return None
                self.index += 1
                return {"input": sample(self.index - 1)[None]}

        method = {"ort-minmax": CalibrationMethod.MinMax, "ort-entropy": CalibrationMethod.Entropy,
                  "ort-percentile": CalibrationMethod.Percentile}[tool]
        os.chdir(workdir)
        quantize_static(model_path, str(Path(workdir) / "ort.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Gemm", "MatMul"], calibrate_method=method,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        extra = {}
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": peak_mb, **extra}


# ------------------------------------------------------------------ parent
def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(tool: str, model_path: Path, images: int, cap_mb: float, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="quant-bench-") as workdir:
        cmd = [sys.executable, __file__, "--worker", tool, "--model-path", str(model_path), "--images", str(images),
               "--workdir", workdir]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        start, peak, status = time.perf_counter(), 0.0, None
        while proc.poll() is None:
            peak = max(peak, _rss_mb(proc.pid))
            if peak > cap_mb:
                proc.kill()
                status = f"over cap ({cap_mb / 1024:.0f} GB RSS after {time.perf_counter() - start:.0f} s)"
            elif time.perf_counter() - start > timeout:
                proc.kill()
                status = f"timeout ({timeout:.0f} s)"
            time.sleep(0.1)
        out, err = proc.communicate()
        if status:
            return {"status": status, "peak_rss_mb": peak}
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["?"])[-1]
            return {"status": f"crashed: {last[:200]}", "peak_rss_mb": peak}
        result = json.loads(out.strip().splitlines()[-1])
        result["status"] = "ok"
        return result


def _median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (all runs ok), else the first failed one."""
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        return dict(failed[0])
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return dict(ordered[(len(ordered) - 1) // 2])


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count()}
    for package in ("onnxruntime", "onnx", "numpy"):
        out[package] = md.version(package)
    import quant

    out["quant"] = quant.__version__
    return out


def write_results(rows: list[dict], meta: dict) -> None:
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "calibration.json").write_text(json.dumps({"machine": meta, "rows": rows}, indent=2) + "\n")
    lines = ["## Calibration cost (benchmarks/calibration.py)", "",
             f"Machine: {meta['cores']} cores, {meta['cpu']}, Python {meta['python']}; onnxruntime {meta['onnxruntime']}, "
             f"onnx {meta['onnx']}, numpy {meta['numpy']}, quant {meta['quant']}. Memory cap per run: "
             f"{meta['cap_gb']} GB. Synthetic 224x224 images, the same for every tool, each run in its own process; "
             f"{meta['repeat']} run(s) per tool, interleaved, median shown (all runs in results/calibration.json).",
             "", "`quant` computes all four methods (entropy, minmax, percentile, mse) from one pass and writes "
             "their four output folders; each ORT row is one `quantize_static` call (QDQ, per-channel, symmetric "
             "INT8, Conv/Gemm/MatMul only).", "",
             "| model | images | tool | wall time (s) | peak RSS (GB) | status | time vs ORT Entropy |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        ref = next((r for r in rows if r["model"] == row["model"] and r["images"] == row["images"]
                    and r["tool"] == "ort-entropy" and r["status"] == "ok"), None)
        ratio = f"{row['seconds'] / ref['seconds']:.2f}x" if ref and row["status"] == "ok" else "-"
        seconds = f"{row['seconds']:.1f}" if row["status"] == "ok" else "-"
        lines.append(f"| {row['model']} | {row['images']} | {row['tool']} | {seconds} | "
                     f"{row['peak_rss_mb'] / 1024:.2f} | {row['status']} | {ratio} |")
    from results_md import write_section

    write_section("## Calibration cost", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--images", default="64,256,1024")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--memory-cap", type=float, default=12.0, help="GB of RSS after which a run is stopped")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per tool, interleaved; the table shows the median run, the JSON keeps all")
    parser.add_argument("--worker")
    parser.add_argument("--model-path")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model_path, int(args.images), args.workdir)))
        return
    sys.path.insert(0, str(HERE))
    import onnx
    from resnet import resnet

    rows = []
    meta = dict(versions(), cap_gb=args.memory_cap, repeat=args.repeat)
    with tempfile.TemporaryDirectory(prefix="quant-bench-models-") as models_dir:
        for model_name in args.models.split(","):
            path = Path(models_dir) / f"{model_name}.onnx"
            onnx.save(resnet(int(model_name.removeprefix("resnet"))), str(path))
            for images in (int(n) for n in args.images.split(",")):
                runs: dict[str, list[dict]] = {tool: [] for tool in args.tools.split(",")}
                for _ in range(args.repeat):  # interleaved, so a slow spell of the machine hits every tool
                    for tool, done in runs.items():
                        if done and done[-1]["status"] != "ok":
                            continue  # over cap or crashed once: not retried
                        done.append(measure(tool, path, images, args.memory_cap * 1024, args.timeout))
                        print(json.dumps({"model": model_name, "images": images, "tool": tool, **done[-1]}), flush=True)
                for tool, done in runs.items():
                    rows.append({"model": model_name, "images": images, "tool": tool, **_median_run(done),
                                 "runs": done})
                write_results(rows, meta)


if __name__ == "__main__":
    main()
