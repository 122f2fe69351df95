"""Latency and throughput of FP32 and INT8 models on CPU runtimes, measured side by side.

Runs of the models alternate (FP32, INT8 a, INT8 b, FP32, ...) so that a slow spell of a shared machine
hits every model alike; each figure is the median over the timed runs after warm-up. ONNX Runtime's
threads do not spin between runs (session.intra_op.allow_spinning = 0), for every model alike.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.onnx_model import input_specs, load_model

BENCH_RUNTIMES = {"ort": "ONNX Runtime CPU (all graph optimizations; INT8 models on its integer kernels)",
                  "openvino": "OpenVINO CPU (INT8 models on its integer kernels)"}


@dataclass
class BenchRow:
    runtime: str
    model: str  # label: "fp32" or the INT8 file's name
    path: str
    batch: int
    median_ms: float
    p90_ms: float
    runs: int
    throughput: float  # samples per second at the median latency
    speedup_same_runtime: float | None = None  # FP32 median on the same runtime / this median
    speedup_vs_ort_fp32: float | None = None


@dataclass
class BenchResult:
    rows: list[BenchRow] = field(default_factory=list)
    threads: int | None = None
    warmup: int = 0
    repeat: int = 0

    def best_int8(self, batch: int) -> BenchRow | None:
        rows = [r for r in self.rows if r.batch == batch and r.model != "fp32"]
        return min(rows, key=lambda r: r.median_ms) if rows else None

    def to_json(self) -> dict:
        return {"threads": self.threads, "warmup": self.warmup, "repeat": self.repeat,
                "rows": [asdict(r) for r in self.rows],
                "recommended": {str(b): (lambda r: None if r is None else {"runtime": r.runtime, "model": r.path})(
                    self.best_int8(b)) for b in sorted({r.batch for r in self.rows})}}

    def format_text(self) -> str:
        lines = [f"threads: {self.threads or 'runtime default'}; median of {self.repeat} runs after {self.warmup} "
                 f"warm-up runs, models alternating", "",
                 f"{'runtime':<9} {'model':<28} {'batch':>5} {'median ms':>10} {'p90 ms':>8} {'samples/s':>10} "
                 f"{'vs FP32':>8} {'vs ORT FP32':>12}"]
        for r in self.rows:
            same = "-" if r.speedup_same_runtime is None else f"{r.speedup_same_runtime:.2f}x"
            ort = "-" if r.speedup_vs_ort_fp32 is None else f"{r.speedup_vs_ort_fp32:.2f}x"
            lines.append(f"{r.runtime:<9} {r.model[:28]:<28} {r.batch:>5} {r.median_ms:>10.2f} {r.p90_ms:>8.2f} "
                         f"{r.throughput:>10.1f} {same:>8} {ort:>12}")
        for batch in sorted({r.batch for r in self.rows}):
            best = self.best_int8(batch)
            if best is None:
                continue
            vs = "" if best.speedup_vs_ort_fp32 is None else f", {best.speedup_vs_ort_fp32:.2f}x FP32 on ORT"
            if best.speedup_vs_ort_fp32 is not None and best.speedup_vs_ort_fp32 < 1.0:
                lines.append(f"at batch {batch} no INT8 path beats FP32 on ORT here (best: {best.model} on "
                             f"{best.runtime}, {best.median_ms:.2f} ms{vs}): deploy FP32 at this batch size")
            else:
                lines.append(f"fastest INT8 path at batch {batch}: {best.model} on {best.runtime} "
                             f"({best.median_ms:.2f} ms{vs})")
        return "\n".join(lines)


def _runner(path, runtime: str, threads: int | None):
    """A runner for one of BENCH_RUNTIMES."""
    if runtime == "ort":
        from quant.backends.onnxruntime import OrtRunner

        # All optimizations (Q/DQ fused where ORT can). No spinning: with several sessions alive and runs
        # alternating, idle threads busy-waiting after one model's run slow the next model down (measured here:
        # ResNet-18 FP32 at batch 1 took 48-63 ms with spinning threads around, 13-16 ms without).
        return OrtRunner(path, mode="fp32", threads=threads, spin=False)
    if runtime == "openvino":
        from quant.backends.openvino import OpenVinoRunner

        return OpenVinoRunner(path, threads=threads)
    raise AssertionError(runtime)  # bench() checked the names


def make_inputs(model, batch: int, shapes: dict[str, list[int]] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds of the model's input shapes with the batch dimension set to ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs(model):
        if shapes and spec.name in shapes:
            dims = list(shapes[spec.name])
        else:
            dims = list(spec.shape)
            if dims:
                dims[0] = batch
            unknown = [i for i, d in enumerate(dims) if not isinstance(d, int) or d < 1]
            if unknown:
                raise QuantError(f"input '{spec.name}' has dynamic dimensions {spec.shape} besides the batch",
                                 hint=f"give its shape: --shape {spec.name}:{'x'.join(str(batch) if i == 0 else 'N' for i in range(len(dims)))}")
        if np.dtype(spec.dtype).kind == "f":
            feeds[spec.name] = rng.standard_normal(dims).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(dims, dtype=spec.dtype)
    return feeds


def bench(fp32_model, int8_models: Sequence, runtimes: Sequence[str] = ("ort",), batches: Sequence[int] = (1,),
          threads: int | None = None, repeat: int = 30, warmup: int = 5,
          shapes: dict[str, list[int]] | None = None) -> BenchResult:
    """Median latency of the FP32 model and each INT8 model on each runtime and batch size."""
    if repeat < 1 or warmup < 0:
        raise QuantError(f"--repeat must be >= 1 and --warmup >= 0, got {repeat} and {warmup}")
    for runtime in runtimes:
        if runtime not in BENCH_RUNTIMES:
            raise QuantError(f"unknown bench runtime '{runtime}'", hint=f"choose from: {', '.join(BENCH_RUNTIMES)}")
    proto = load_model(fp32_model)
    paths = [Path(fp32_model)] + [Path(p) for p in int8_models]
    for path in paths[1:]:
        load_model(path)  # clear errors for a missing or broken file before timing anything
    labels = ["fp32"] + [p.name for p in paths[1:]]
    result = BenchResult(threads=threads, warmup=warmup, repeat=repeat)
    for runtime in runtimes:
        runners = [_runner(path, runtime, threads) for path in paths]
        for batch in batches:
            feeds = make_inputs(proto, batch, shapes)
            for runner in runners:
                for _ in range(warmup):
                    runner.run(feeds)
            times: list[list[float]] = [[] for _ in runners]
            for _ in range(repeat):
                for index, runner in enumerate(runners):
                    start = time.perf_counter()
                    runner.run(feeds)
                    times[index].append((time.perf_counter() - start) * 1e3)
            for label, path, samples in zip(labels, paths, times):
                median = float(np.median(samples))
                result.rows.append(BenchRow(runtime, label, str(path), batch, median, float(np.percentile(samples, 90)),
                                            len(samples), batch / median * 1e3))
        del runners
    fp32 = {(r.runtime, r.batch): r.median_ms for r in result.rows if r.model == "fp32"}
    for row in result.rows:
        if row.model != "fp32":
            row.speedup_same_runtime = fp32[(row.runtime, row.batch)] / row.median_ms
        if (row.runtime, row.model) != ("ort", "fp32") and ("ort", row.batch) in fp32:
            row.speedup_vs_ort_fp32 = fp32[("ort", row.batch)] / row.median_ms
    return result
