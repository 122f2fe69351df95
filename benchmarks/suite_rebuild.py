"""Rebuild one task's suite entry from a suite run's log (its tools' runs and model scores, printed as JSON lines)
when the run stopped after scoring it: the FP32 score and structure are computed again and latency measured
again (batch 1) in this process. Not a test. Used once: layout on 2026-12-01, whose bs16 latency step failed on
the model's fixed batch 1 after every tool and model had been run and scored.

    python benchmarks/suite_rebuild.py LOG TASK --commit C --run "YYYY-MM-DD HH:MM UTC"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    import suite
    import suite_models
    from quant.backends.onnxruntime import OrtRunner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("task")
    parser.add_argument("--commit", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--results", type=Path, default=HERE / "results" / "suite.json")
    args = parser.parse_args()
    lines = args.log.read_text().splitlines()
    start = lines.index(f"== {args.task}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("== ") or lines[i].startswith("Traceback")),
               len(lines))
    tools, scored = {}, {}
    for line in lines[start + 1:end]:
        label, _, payload = line.partition(" {")
        if not payload:
            continue
        data = json.loads("{" + payload)
        (tools if "status" in data else scored)[label] = data
    task = suite_models.TASKS[args.task](suite.CACHE / "suite" / "models")
    fp32 = suite.CACHE / "suite" / args.task / "fp32.onnx"
    folder = suite.RUNS / args.task
    fp32_outputs = suite.outputs_of(OrtRunner(fp32), task.heldout)
    entry = {"run": args.run, "commit": args.commit, "rebuilt_from_log": str(args.log.name),
             "description": task.description, "primary": task.primary, "higher_is_better": task.higher_is_better,
             "calibration_samples": len(task.calibration), "heldout_samples": len(task.heldout),
             "fp32": task.score(fp32_outputs, task.labels, fp32_outputs), "fp32_structure": suite.structure(fp32),
             "tools": tools, "models": {k: v for k, v in scored.items() if k not in ("fallback", "latency")}}
    models = {}
    for label in entry["models"]:
        if label.startswith("quant-") and "/" not in label and " (" not in label:
            method, _, suffix = label[len("quant-"):].partition("+")
            tool = {"": "quant", "smooth": "quant-smooth"}.get(suffix, "quant-bc")
            models[label] = folder / tool / method / "model.int8.onnx"
        elif label.endswith("/ort-cpu"):
            models[label] = folder / "quant" / label[len("quant-"):].split("/")[0] / "model.ort-cpu.int8.onnx"
        elif not label.startswith("quant"):
            models[label] = folder / f"{label}.onnx"
    missing = [str(p) for p in models.values() if not p.exists()]
    if missing:
        raise SystemExit(f"missing models: {missing[:3]}")
    entry["latency"] = suite.latency(task, fp32, {k: v for k, v in models.items() if not k.endswith("+bc")}, 20)
    results = json.loads(args.results.read_text())
    results["tasks"][args.task] = entry
    args.results.write_text(json.dumps(results, indent=2, default=suite._json_default) + "\n")
    suite.write_section(results)
    print(json.dumps({k: v.get("emulate", {}).get(task.primary) for k, v in entry["models"].items()}))


if __name__ == "__main__":
    main()
