"""Sensitivity sweep on a 50-layer model: one process vs a local Ray cluster of 1 and 2 workers.

Also measures what docs/cluster.md's cost model needs: the time of one evaluation, Ray's per-task
overhead, the bytes put in the object store (calibration + held-out FP32 outputs) and a histogram's size.
Writes benchmarks/results/ray.json and the "Ray" section of benchmarks/RESULTS.md.

    python benchmarks/ray.py [--layers 50] [--samples 256]
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file is named ray.py: keep its folder off the path so that `import ray` finds Ray itself.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import importlib.util  # noqa: E402

import quant  # noqa: E402
from quant.distributed import RayCluster, RayOptions  # noqa: E402
from quant.pipeline import sensitivity  # noqa: E402

_spec = importlib.util.spec_from_file_location("results_md", HERE / "results_md.py")
_results_md = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_results_md)
write_section = _results_md.write_section


def deep_mlp(path: Path, layers: int, width: int, seed: int = 0) -> Path:
    """``layers`` Gemm + Relu blocks, each with a residual Add every second block (a ResNet-like MLP)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) * np.sqrt(2.0 / width)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"g{i}"], name=f"gemm{i}", transB=1),
                  helper.make_node("Relu", [f"g{i}"], [f"r{i}"], name=f"relu{i}")]
        if i % 2 == 1:
            nodes.append(helper.make_node("Add", [f"r{i}", x], [f"a{i}"], name=f"add{i}"))
            x = f"a{i}"
        else:
            x = f"r{i}"
    graph = helper.make_graph(nodes, "deep_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _noop(value):
    return value


def task_overhead(cluster: RayCluster, tasks: int = 200) -> float:
    """Seconds per task of Ray's own cost: an empty task, submitted and awaited in one batch."""
    start = time.perf_counter()
    cluster.map(_noop, [(i,) for i in range(tasks)], lambda i: f"no-op {i}")
    return (time.perf_counter() - start) / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster of this machine only
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(tempfile.mkdtemp(prefix="quant-ray-bench-"))
    model = deep_mlp(work / "mlp.onnx", args.layers, args.width)
    rng = np.random.default_rng(1)
    np.savez(work / "cal.npz", x=rng.standard_normal((args.samples, args.width)).astype(np.float32))
    np.savez(work / "held.npz", x=rng.standard_normal((args.samples, args.width)).astype(np.float32))
    result = quant.calibrate(model, work / "cal.npz", methods=("entropy",), batch_size=64)
    result.save(work / "cal")
    histogram_bytes = sum(a.nbytes for h in result.histograms.values() for a in h.to_arrays().values())

    runs = {}
    sensitivity(model, work / "cal", work / "held.npz", metric="sqnr", num_samples=8)  # warm-up: imports, caches
    start = time.perf_counter()
    serial = sensitivity(model, work / "cal", work / "held.npz", metric="sqnr")
    runs["serial"] = {"seconds": time.perf_counter() - start}
    evaluations = 2 * len(serial.layers) + 1
    for workers in (1, 2):
        start = time.perf_counter()
        with RayCluster(RayOptions(num_cpus=workers)) as cluster:
            started = time.perf_counter() - start
            overhead = task_overhead(cluster)
            start = time.perf_counter()
            report = sensitivity(model, work / "cal", work / "held.npz", metric="sqnr", ray=True)
            seconds = time.perf_counter() - start
        assert report.to_json() == serial.to_json(), "the Ray sweep must equal the serial one"
        runs[f"ray_{workers}"] = {"seconds": seconds, "cluster_start_seconds": started, "task_overhead_s": overhead}

    from quant.pipeline.evaluation import load_heldout

    heldout = load_heldout(model, work / "held.npz")
    object_store = {"calibration_bytes": len(pickle.dumps(result)), "heldout_bytes": len(pickle.dumps(heldout)),
                    "fp32_output_bytes": sum(a.nbytes for batch in heldout.reference for a in batch)}
    per_eval = runs["serial"]["seconds"] / evaluations
    out = {"machine": f"{os.cpu_count()} CPUs (this machine)", "layers": len(serial.layers), "evaluations": evaluations,
           "samples": args.samples, "width": args.width, "seconds_per_evaluation_serial": per_eval,
           "histogram_bytes_per_tensor": histogram_bytes // len(result.histograms), "runs": runs, **object_store}
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "ray.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["## Ray: sensitivity sweep vs workers (benchmarks/ray.py)", "",
             f"{len(serial.layers)}-layer Gemm/ReLU model (width {args.width}), {args.samples} held-out samples, "
             f"{evaluations} evaluations (both directions per layer); local Ray cluster on this machine "
             f"({os.cpu_count()} CPUs, shared). Every Ray report equals the serial one.", "",
             "| run | sweep (s) | vs one process | cluster start (s) | Ray overhead per task (ms) |",
             "| --- | --- | --- | --- | --- |",
             f"| one process | {runs['serial']['seconds']:.1f} | 1.00x | - | - |"]
    for workers in (1, 2):
        run = runs[f"ray_{workers}"]
        lines.append(f"| Ray, {workers} worker(s) | {run['seconds']:.1f} | "
                     f"{runs['serial']['seconds'] / run['seconds']:.2f}x | {run['cluster_start_seconds']:.1f} | "
                     f"{1000 * run['task_overhead_s']:.1f} |")
    lines += ["", f"One evaluation (serial): {per_eval * 1000:.0f} ms. Object store: calibration "
              f"{object_store['calibration_bytes'] / 2**20:.1f} MiB and held-out data with FP32 outputs "
              f"{object_store['heldout_bytes'] / 2**20:.1f} MiB, put once per sweep. A histogram: "
              f"{out['histogram_bytes_per_tensor'] / 1024:.1f} KiB per tensor. Cost model: docs/cluster.md."]
    write_section("## Ray: sensitivity sweep", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
