"""GPU execution benchmark: collection, `quant calibrate`, eval and a sensitivity sweep, PyTorch backend vs ORT CPU.

Not a test. Both sides build the same models and data from fixed seeds (NumPy weights, synthetic inputs) and
record their sha256, so the two machines' numbers are for the same inputs:

    python benchmarks/gpu.py --side cpu --out /tmp/gpu-bench-cpu.json      # here: ONNX Runtime, 2 threads
    python benchmarks/gpu.py --side gpu --out $OUT/gpu-side.json           # on the GPU machine: --device cuda
    python benchmarks/gpu.py --merge /tmp/gpu-bench-cpu.json gpu-side.json  # results/gpu.json + RESULTS.md

Models: ResNet-50-shaped (benchmarks/resnet.py: 53 Conv + 1 Gemm, 224x224) and BERT-base-shaped (12 layers,
hidden 768, 12 heads, FF 3072, 128 tokens, random NumPy weights, exported with torch.onnx.export).
1,024 calibration samples each, all four methods from one pass.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
SAMPLES = 1024
HELDOUT = 256
METHODS = ("entropy", "minmax", "percentile", "mse")
SEQ = 128


# ------------------------------------------------------------------ models and data (same on both machines)
def bert_module(layers: int = 12, hidden: int = 768, heads: int = 12, ff: int = 3072, vocab: int = 30522):
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.ff1, self.ff2 = nn.Linear(hidden, ff), nn.Linear(ff, hidden)

        def forward(self, x, bias):
            n, t, _ = x.shape
            split = lambda y: y.reshape(n, t, heads, hidden // heads).transpose(1, 2)  # noqa: E731
            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / (hidden // heads) ** 0.5 + bias
            context = torch.matmul(torch.softmax(scores, -1), v).transpose(1, 2).reshape(n, t, hidden)
            x = self.ln1(x + self.o(context))
            return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.words, self.positions = nn.Embedding(vocab, hidden), nn.Embedding(512, hidden)
            self.ln = nn.LayerNorm(hidden)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.pooler, self.classifier = nn.Linear(hidden, hidden), nn.Linear(hidden, 2)

        def forward(self, input_ids, attention_mask):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.ln(self.words(input_ids) + self.positions(positions))
            keep = (attention_mask >= 1).to(x.dtype)  # GreaterOrEqual, as BERT exports emit it
            bias = ((1.0 - keep) * -10000.0)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            return self.classifier(torch.tanh(self.pooler(x[:, 0])))

    model = Bert().eval()
    rng = np.random.default_rng(1234)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") and "ln" not in name:
                value = np.zeros(param.shape, np.float32)
            elif "ln" in name:
                value = np.ones(param.shape, np.float32) if name.endswith("weight") else np.zeros(param.shape, np.float32)
            else:
                value = (rng.standard_normal(param.shape) * 0.02).astype(np.float32)
            param.copy_(torch.from_numpy(value))
    return model


def build(name: str, work: Path) -> dict:
    """model.onnx, calibration.npz (1,024 samples) and heldout.npz (256 others) for one model, in work/name."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "model.onnx"
    if name == "resnet50":
        import onnx

        from resnet import resnet

        if not model_path.exists():
            onnx.save(resnet(50), str(model_path))

        def data(first, count):
            return {"input": np.stack([np.random.default_rng(first + i).standard_normal((3, 224, 224), dtype=np.float32)
                                       for i in range(count)])}
    else:
        if not model_path.exists():
            import onnx
            import torch

            from quant.backends.torch.export import export_module

            example = (torch.zeros(2, SEQ, dtype=torch.int64), torch.ones(2, SEQ, dtype=torch.int64))
            onnx.save(export_module(bert_module(), example), str(model_path))

        def data(first, count):
            rng = np.random.default_rng(first)
            ids = rng.integers(0, 30522, (count, SEQ), dtype=np.int64)
            lengths = rng.integers(16, SEQ + 1, count)
            mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
            return {"input_ids": ids, "attention_mask": mask}
    for file, first, count in (("calibration.npz", 0, SAMPLES), ("heldout.npz", 100_000, HELDOUT)):
        if not (folder / file).exists():
            np.savez(folder / file, **data(first, count))
    return {"model": str(model_path), "calibration": str(folder / "calibration.npz"),
            "heldout": str(folder / "heldout.npz"), "model_sha256": _sha(model_path)}


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ measurements
def collection_seconds(files: dict, device: str, batch: int | None = None) -> dict:
    """The collection pass alone: FP32 forward + a histogram of every tensor the Q/DQ plan names."""
    from quant.core.config import CalibrationConfig
    from quant.core.onnx_model import input_specs, load_model, normalize, with_outputs
    from quant.datasets import iter_batches, open_source, resolve_input_map, select
    from quant.pipeline.calibration import needed_tensors
    from quant.qdq import plan_qdq

    proto = normalize(load_model(files["model"]))
    plan = plan_qdq(proto)
    config = CalibrationConfig(methods=METHODS)
    tensors = needed_tensors(proto, plan, config)
    source = open_source(files["calibration"])
    inputs = input_specs(proto)
    mapping = resolve_input_map(inputs, source, None)
    indices = select(len(source), None, 0)
    batches = list(iter_batches(source, indices, inputs, mapping, batch or 64))  # data read before timing
    start = time.perf_counter()
    if device == "ort":
        from quant.backends.onnxruntime import OrtRunner
        from quant.collect import collect

        runner = OrtRunner(with_outputs(proto, [t for t in tensors if t not in mapping]), mode="fp32", spin=False)
        built = time.perf_counter()
        result = collect(runner, iter(batches), tensors, progress=False)
    else:
        from quant.backends.torch.runner import TorchRunner
        from quant.collect.device import collect_on_device

        runner = TorchRunner(proto, device)
        built = time.perf_counter()
        result = collect_on_device(runner, iter(batches), tensors, progress=False)
        import torch

        torch.cuda.synchronize() if device.startswith("cuda") else None
    end = time.perf_counter()
    return {"device": device, "tensors": len(tensors), "samples": result.samples, "batch": batch or 64,
            "data_sha256": result.data_hash,
            "runner_build_s": round(built - start, 3), "collection_s": round(end - built, 3),
            "histograms": result.histograms}


def cli_seconds(files: dict, device: str, out: Path) -> dict:
    command = [sys.executable, "-m", "quant", "calibrate", files["model"], "--data", files["calibration"],
               "--method", ",".join(METHODS), "--output", str(out), "--device", device]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent)] + sys.path[2:3] +
                                                         [os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode:
        return {"device": device, "error": proc.stderr.strip().splitlines()[-3:], "seconds": round(seconds, 2)}
    return {"device": device, "seconds": round(seconds, 2), "stdout_head": proc.stdout.splitlines()[:3]}


def eval_summary(files: dict, calibration: Path, device: str) -> dict:
    import quant

    start = time.perf_counter()
    report = quant.evaluate(files["model"], str(calibration / "entropy" / "model.int8.onnx"), files["heldout"],
                            batch_size=64, device=device)
    seconds = time.perf_counter() - start
    first = next(iter(report.outputs.values()))
    return {"device": device, "seconds": round(seconds, 2), "samples": report.samples,
            "sqnr_db": round(first["sqnr_db"], 3), "cosine": round(first["cosine"], 6),
            "agreement": first["agreement"], "notes": report.notes}


def sensitivity_summary(files: dict, calibration: Path, device: str) -> dict:
    import quant

    start = time.perf_counter()
    report = quant.sensitivity(files["model"], str(calibration / "entropy"), files["heldout"], metric="agreement",
                               batch_size=64, device=device)
    seconds = time.perf_counter() - start
    return {"device": device, "seconds": round(seconds, 2), "layers": len(report.layers),
            "evaluations": 2 * len(report.layers) + 1, "heldout_samples": HELDOUT,
            "fp32": report.fp32, "all_int8": report.all_quantized,
            "top5": [[l.node, round(l.recovery, 4)] for l in report.layers[:5]]}


def gpu_checks(files: dict, device: str) -> dict:
    """Device histograms vs the NumPy path on the same values; scales across batch sizes on the device."""
    import torch

    from quant.backends.torch.runner import TorchRunner
    from quant.collect.device import DeviceHistogram
    from quant.core.histogram import Histogram
    from quant.core.onnx_model import load_model, normalize
    from quant.qdq import plan_qdq

    proto = normalize(load_model(files["model"]))
    tensors = plan_qdq(proto).activations
    data = dict(np.load(files["calibration"]))
    feeds = {k: v[:32] for k, v in data.items()}
    runner = TorchRunner(proto, device)
    device_hists = {t: DeviceHistogram(device=device) for t in tensors}
    numpy_hists = {t: Histogram() for t in tensors}

    def tap(name):
        def f(x):
            device_hists[name].update(x)
            numpy_hists[name].update(x.detach().cpu().numpy())
        return f

    runner.forward(feeds, {t: tap(t) for t in tensors})
    equal = sum(device_hists[t].to_histogram() == numpy_hists[t] for t in tensors)
    scales = {}
    for batch in (64, 48):
        result = collection_seconds(files, device, batch)
        scales[batch] = result["histograms"]
    from quant.calibrators import get

    differing = {m: sum(get(m).fit(scales[64][t]).amax_ != get(m).fit(scales[48][t]).amax_ for t in scales[64])
                 for m in METHODS}
    return {"histogram_counts_equal_numpy": f"{equal}/{len(tensors)}",
            "tensors_whose_amax_differs_batch64_vs_48": differing,
            "tf32_after_run": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]}


def machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    for package in ("torch", "onnxruntime", "onnx", "numpy", "onnx2torch"):
        try:
            info[package] = __import__(package).__version__
        except Exception:  # noqa: BLE001 - a missing package is recorded as such
            info[package] = None
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return info


def run_side(side: str, work: Path, models: list[str], sensitivity_on_cpu: bool) -> dict:
    device = "cuda" if side == "gpu" else "ort"
    out = {"side": side, "machine": machine(), "models": {}}
    for name in models:
        entry = out["models"][name] = {}
        t = time.perf_counter()
        files = build(name, work)
        entry["build_s"] = round(time.perf_counter() - t, 1)
        entry["files"] = {k: v for k, v in files.items() if k.endswith("sha256")}
        print(f"[{side}] {name}: built in {entry['build_s']} s", flush=True)
        runs = []
        for repeat in range(2 if side == "gpu" else 1):  # GPU: the first run includes CUDA/cuDNN warm-up
            result = collection_seconds(files, device)
            result.pop("histograms")
            runs.append(result)
            print(f"[{side}] {name}: collection {result}", flush=True)
        entry["collection"] = runs
        entry["files"]["data_sha256"] = runs[0]["data_sha256"]  # quant's order-independent hash of the samples
        calibration = work / name / f"out-{side}"
        if calibration.exists():
            import shutil

            shutil.rmtree(calibration)
        entry["cli_calibrate"] = cli_seconds(files, device, calibration)
        print(f"[{side}] {name}: cli {entry['cli_calibrate']}", flush=True)
        if "error" in entry["cli_calibrate"]:
            continue
        if side == "gpu" or name == "resnet50":
            entry["eval"] = eval_summary(files, calibration, device)
            print(f"[{side}] {name}: eval {entry['eval']}", flush=True)
        if side == "gpu":
            entry["checks"] = gpu_checks(files, device)
            print(f"[{side}] {name}: checks {entry['checks']}", flush=True)
        if name == "resnet50" and (side == "gpu" or sensitivity_on_cpu):
            entry["sensitivity"] = sensitivity_summary(files, calibration, device)
            print(f"[{side}] {name}: sensitivity {entry['sensitivity']}", flush=True)
    return out


def merge(cpu_file: Path, gpu_file: Path) -> None:
    cpu, gpu = json.loads(cpu_file.read_text()), json.loads(gpu_file.read_text())
    results = {"cpu": cpu, "gpu": gpu, "ratios": {}}
    for name in gpu["models"]:
        c, g = cpu["models"].get(name, {}), gpu["models"][name]
        ratios = results["ratios"][name] = {"same_inputs": c.get("files") == g.get("files")}
        if c.get("collection") and g.get("collection"):
            ratios["collection_warm"] = round(c["collection"][0]["collection_s"] / g["collection"][-1]["collection_s"], 1)
        if "seconds" in c.get("cli_calibrate", {}) and "seconds" in g.get("cli_calibrate", {}):
            ratios["cli_calibrate"] = round(c["cli_calibrate"]["seconds"] / g["cli_calibrate"]["seconds"], 1)
        if "eval" in c and "eval" in g:
            ratios["eval"] = round(c["eval"]["seconds"] / g["eval"]["seconds"], 1)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "gpu.json").write_text(json.dumps(results, indent=1) + "\n")
    write_section(results)


def write_section(results: dict) -> None:
    from results_md import write_section as write

    cpu, gpu = results["cpu"], results["gpu"]
    lines = ["## GPU execution (PyTorch backend, `--device cuda`)", "",
             f"GPU side: {gpu['machine'].get('gpu')} ({gpu['machine']['cpus']} CPU cores), torch "
             f"{gpu['machine']['torch']}, onnx2torch {gpu['machine']['onnx2torch']}, IEEE fp32 (TF32 off). CPU side: this "
             f"machine ({cpu['machine']['cpus']} cores), ONNX Runtime {cpu['machine']['onnxruntime']} (`--device ort`). "
             f"Same models and data on both (sha256 compared: see `same inputs`). 1,024 calibration samples, all four "
             f"methods from one pass. Raw numbers: `results/gpu.json`; run with `python benchmarks/gpu.py` (docstring).", "",
             "| model | same inputs | collection, CPU (s) | collection, GPU warm (s) | x | `quant calibrate` CLI, CPU (s) "
             "| CLI, GPU (s) | x |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, ratio in results["ratios"].items():
        c, g = cpu["models"].get(name, {}), gpu["models"][name]
        cc = c.get("collection", [{}])[0].get("collection_s", "-")
        gc = g["collection"][-1]["collection_s"] if g.get("collection") else "-"
        lines.append(f"| {name} | {ratio['same_inputs']} | {cc} | {gc} | {ratio.get('collection_warm', '-')} | "
                     f"{c.get('cli_calibrate', {}).get('seconds', '-')} | {g.get('cli_calibrate', {}).get('seconds', '-')} "
                     f"| {ratio.get('cli_calibrate', '-')} |")
    lines.append("")
    for name, g in gpu["models"].items():
        if "sensitivity" in g:
            s = g["sensitivity"]
            lines.append(f"- {name} sensitivity sweep on the GPU: {s['layers']} layers, {s['evaluations']} evaluations "
                         f"of {s['heldout_samples']} held-out samples, {s['seconds']} s.")
        if "eval" in g:
            e = g["eval"]
            lines.append(f"- {name} eval on the GPU ({e['samples']} samples): {e['seconds']} s, entropy INT8 vs FP32 "
                         f"SQNR {e['sqnr_db']} dB" + (f" (CPU side: {cpu['models'][name]['eval']['sqnr_db']} dB, "
                                                     f"{cpu['models'][name]['eval']['seconds']} s)"
                                                     if "eval" in cpu["models"].get(name, {}) else ""))
        if "checks" in g:
            k = g["checks"]
            lines.append(f"- {name} checks on the GPU: device histogram counts equal to the NumPy path's for the same "
                         f"values: {k['histogram_counts_equal_numpy']}; tensors whose amax differs between batch 64 and "
                         f"48 on the GPU: {k['tensors_whose_amax_differs_batch64_vs_48']}.")
    write("## GPU execution", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=["cpu", "gpu"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/quant-gpu-bench"))
    parser.add_argument("--models", default="resnet50,bert-base")
    parser.add_argument("--sensitivity-on-cpu", action="store_true")
    parser.add_argument("--merge", nargs=2, type=Path, metavar=("CPU_JSON", "GPU_JSON"))
    args = parser.parse_args()
    if args.merge:
        merge(*args.merge)
        return
    result = run_side(args.side, args.work, args.models.split(","), args.sensitivity_on_cpu)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
