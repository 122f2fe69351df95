"""Bias correction (and the other accuracy options of issue 16 item 3) on the suite's real models. Not a test.

    nice -n 10 python benchmarks/bias.py --tasks ppocr-det,resnet50

Uses the suite's models and data (benchmarks/suite_models.py, cache under benchmarks/.cache/suite), calibrates
with quant in this process, with and without each option, from the same data, and scores the TensorRT-form
model (exact Q/DQ emulation on ONNX Runtime) with the suite's own metric against the suite's FP32 outputs. The
peers' numbers are read from benchmarks/results/suite.json (same models, same data, same metric). Writes
benchmarks/results/bias.json; RESULTS.md's section is written by hand from it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

METHODS = {"ppocr-det": ("minmax", "percentile", "mse", "entropy"), "resnet50": ("minmax", "mse")}
ALL = ("entropy", "minmax", "percentile", "mse")  # the other tasks


def variants(task: str, requested: list[str]) -> dict[str, dict]:
    """name -> calibrate() keyword arguments."""
    modelopt = {"quantize_op_types": ("Add", "Mul", "GlobalAveragePool", "Resize")}
    if task == "ppocr-det":  # Model Optimizer also quantizes the 1-channel output layer quant keeps in float
        modelopt["include"] = ("p2o.ConvTranspose.2",)
    table = {"plain": {}, "bias-correction": {"bias_correction": True}, "equalize": {"equalize": True},
             "equalize+bias-correction": {"equalize": True, "bias_correction": True},
             "modelopt-placement": modelopt, "modelopt-placement+bias-correction": {**modelopt, "bias_correction": True},
             "smooth": {"smooth": True}, "smooth+bias-correction": {"smooth": True, "bias_correction": True}}
    return {name: table[name] for name in requested}


def main() -> None:
    import suite
    import suite_models
    import quant
    from quant.backends.onnxruntime import OrtRunner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="ppocr-det,resnet50")
    parser.add_argument("--variants", default="plain,bias-correction")
    parser.add_argument("--output", default=str(HERE / "results" / "bias.json"))
    parser.add_argument("--peers", default=str(HERE / "results" / "suite.json"), help="a suite results file")
    args = parser.parse_args()
    output = Path(args.output)
    results = json.loads(output.read_text()) if output.exists() else {}
    peers = json.loads(Path(args.peers).read_text())["tasks"]
    for name in args.tasks.split(","):
        task = suite_models.TASKS[name](suite.CACHE / "suite" / "models")
        fp32 = suite.CACHE / "suite" / name / "fp32.onnx"  # the suite's normalized model (read only)
        if not fp32.exists():
            raise SystemExit(f"{fp32} is missing: run benchmarks/suite.py --tasks {name} --tools quant once")
        fp32_outputs = suite.outputs_of(OrtRunner(fp32), task.heldout)
        entry = results.setdefault(name, {"primary": task.primary, "variants": {}})
        entry["peers"] = {tool: row["emulate"].get(task.primary) for tool, row in peers.get(name, {}).get("models", {}).items()
                          if not tool.startswith("quant")}
        for variant, options in variants(name, args.variants.split(",")).items():
            start = time.perf_counter()
            result = quant.calibrate(str(fp32), suite.list_source(task.calibration), methods=METHODS.get(name, ALL), **options)
            seconds = time.perf_counter() - start
            scores = {}
            for method in METHODS.get(name, ALL):
                runner = OrtRunner(result.qdq_model(method), mode="emulate")
                scores[method] = task.score(suite.outputs_of(runner, task.heldout), task.labels, fp32_outputs)
            entry["variants"][variant] = {"options": options, "calibrate_seconds": round(seconds, 1), "scores": scores}
            if options.get("bias_correction"):  # applied or not per method (the output-SQNR check), and why
                entry["variants"][variant]["bias_correction"] = {
                    m: {k: v for k, v in result.manifest(m)["bias_correction"].items() if k in ("applied", "why", "check")}
                    for m in METHODS.get(name, ALL)}
            print(name, variant, f"{seconds:.1f} s", json.dumps({m: s[task.primary] for m, s in scores.items()}),
                  flush=True)
            output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
