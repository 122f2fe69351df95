"""`--method auto` against the four single methods on the suite's models. Not a test.

    nice -n 10 python benchmarks/auto_methods.py --tasks digits,mtcnn-rnet   # tasks prepared by benchmarks/suite.py

For each task: the suite's prepared FP32 model and calibration data (benchmarks/.cache/suite/<task>, read only),
one quant.calibrate pass with entropy, minmax, percentile, mse and auto (the same histograms), then every
method's model.int8.onnx scored on the task's held-out data with exact Q/DQ emulation (the suite's scorer).
Writes benchmarks/results/auto.json (a run over some tasks keeps the others) and prints one line per task.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
METHODS = ("entropy", "minmax", "percentile", "mse", "auto")
OUTPUT = HERE / "results" / "auto.json"


VARIANT = "auto-methods"  # auto without the grid: per tensor the best of the four methods by the same errors


def methods_only(record: dict) -> dict[str, float]:
    """Per tensor the method amax with the lowest recorded layer error (the first on a tie), from quant.json's auto."""
    out = {}
    for tensor, entry in record["tensors"].items():
        errors = [(entry["methods"][m]["error"], entry["methods"][m]["amax"]) for m in METHODS if m in entry["methods"]]
        out[tensor] = min(errors, key=lambda e: e[0])[1]  # min keeps the first of equal errors
    return out


def output_sqnr(outputs, reference) -> list[float | None]:
    """SQNR (dB) of each float output against FP32 over all held-out samples (None: not a float output)."""
    import numpy as np

    from quant.eval.metrics import sqnr_db

    out = []
    for k in range(len(reference[0])):
        if not np.issubdtype(np.asarray(reference[0][k]).dtype, np.floating):
            out.append(None)
            continue
        signal = sum(float(np.sum(np.asarray(r[k], np.float64) ** 2)) for r in reference)
        noise = sum(float(np.sum((np.asarray(o[k], np.float64) - np.asarray(r[k], np.float64)) ** 2))
                    for o, r in zip(outputs, reference))
        out.append(round(sqnr_db(signal, noise), 3))
    return out


def run_task(name: str) -> dict:
    import quant
    import suite_models
    from quant.backends.onnxruntime import OrtRunner
    from suite import CACHE, list_source, outputs_of
    from suite_worker import samples

    folder = CACHE / "suite" / name
    fp32, calibration = folder / "fp32.onnx", folder / "calibration.npz"
    if not (fp32.is_file() and calibration.is_file()):
        return {"status": f"not prepared ({folder})"}
    task = suite_models.TASKS[name](CACHE / "suite" / "models")
    fp32_outputs = outputs_of(OrtRunner(fp32), task.heldout)
    start = time.perf_counter()
    result = quant.calibrate(fp32, list_source(samples(str(calibration))), methods=METHODS)
    seconds = time.perf_counter() - start
    entry = {"description": task.description, "primary": task.primary, "higher_is_better": task.higher_is_better,
             "calibration_samples": len(task.calibration), "heldout_samples": len(task.heldout),
             "calibrate_seconds_all_five": round(seconds, 1), "auto_summary": result.auto["summary"],
             "auto_samples": result.auto["samples"],
             "fp32": task.score(fp32_outputs, task.labels, fp32_outputs), "methods": {}}
    from quant.qdq import build_qdq_model

    with tempfile.TemporaryDirectory(prefix="quant-auto-bench-") as tmp:
        folders = result.save(Path(tmp) / "out")
        variant = build_qdq_model(result.model, result.plan, methods_only(result.auto), result.weight_amax)
        for method, out in list(zip(result.methods, folders)) + [(VARIANT, variant)]:
            runner = OrtRunner(out if method == VARIANT else out / "model.int8.onnx", mode="emulate")
            outputs = outputs_of(runner, task.heldout)
            entry["methods"][method] = task.score(outputs, task.labels, fp32_outputs)
            entry["methods"][method]["output_sqnr_db"] = output_sqnr(outputs, fp32_outputs)
    single = {m: entry["methods"][m][task.primary] for m in METHODS if m != "auto"}
    pick = max if task.higher_is_better else min
    best = pick(single, key=lambda m: single[m])
    auto = entry["methods"]["auto"][task.primary]
    entry["best_single"] = {"method": best, "value": single[best]}
    entry["auto_vs_best"] = auto - single[best] if task.higher_is_better else single[best] - auto  # >= 0: auto at least as good
    entry["status"] = "ok"
    return entry


MARKER = "## --method auto against the single methods"


def write_section(results: dict) -> None:
    """The RESULTS.md section: per suite model, every method's primary metric and output SQNR, auto - best."""
    from results_md import write_section as replace

    lines = [f"{MARKER} (benchmarks/auto_methods.py)", "",
             "One `quant.calibrate` pass per suite model (the suite's prepared FP32 model and calibration data) with "
             "entropy, minmax, percentile, mse and auto from the same histograms; each model.int8.onnx scored on the "
             "task's held-out data with exact Q/DQ emulation (the suite's scorer), plus the SQNR of each float output "
             "against FP32 over the held-out set. `auto - best`: auto's primary metric minus the best single "
             "method's (sign flipped where lower is better; >= 0 means auto is at least as good).", "",
             "| model | primary | held-out | entropy | minmax | percentile | mse | auto | auto-methods | best single | "
             "auto - best | output SQNR dB (entropy / minmax / percentile / mse / auto / auto-methods) | tensors auto "
             "took from | calibrate s (all five, one process) |", "| --- |" + " --- |" * 13]
    for name, e in results["tasks"].items():
        if e.get("status") != "ok":
            lines.append(f"| {name} | {e.get('status')} |" + " |" * 12)
            continue
        key = e["primary"]
        shown = METHODS + (VARIANT,)
        values = " | ".join(f"{e['methods'][m][key]:.4g}" if m in e["methods"] else "-" for m in shown)
        sqnr = " / ".join(",".join("n/a" if v is None else f"{v:.2f}" for v in e["methods"].get(m, {}).get(
            "output_sqnr_db", [])) or "-" for m in shown)
        took = ", ".join(f"{k} {v}" for k, v in e["auto_summary"].items() if v)
        lines.append(f"| {name} | {key} ({'higher' if e['higher_is_better'] else 'lower'} is better) | "
                     f"{e['heldout_samples']} | {values} | {e['best_single']['method']} | {e['auto_vs_best']:+.4g} | "
                     f"{sqnr} | {took} | {e['calibrate_seconds_all_five']} |")
    lines += ["", results.get("conclusion", "")]
    replace(MARKER, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="", help="comma-separated suite task names")
    parser.add_argument("--report-only", action="store_true", help="rewrite the RESULTS.md section from auto.json")
    args = parser.parse_args()
    results = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {"tasks": {}}
    if args.report_only:
        write_section(results)
        return
    for name in [t for t in args.tasks.split(",") if t]:
        entry = run_task(name)
        results["tasks"][name] = entry
        OUTPUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        if entry["status"] != "ok":
            print(name, entry["status"], flush=True)
            continue
        values = ", ".join(f"{m} {entry['methods'][m][entry['primary']]:.4g} ({entry['methods'][m]['output_sqnr_db']} dB)"
                           for m in METHODS + (VARIANT,))
        print(f"{name}: {entry['primary']}: {values}; best single {entry['best_single']['method']}; auto - best "
              f"{entry['auto_vs_best']:+.4g} (>= 0: auto at least as good); auto took {entry['auto_summary']}; "
              f"calibrate (all five) {entry['calibrate_seconds_all_five']} s", flush=True)


if __name__ == "__main__":
    main()
