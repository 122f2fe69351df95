"""Fallback from entropy on PP-OCRv4 rec (rapidocr_onnxruntime wheel) with the bounded bisection search and
the folded emulation. Not a test.

Data as benchmarks/ppocr_rec.py (Debian's fortunes rendered in DejaVu Sans; calibration and held-out lines
disjoint). Measures: one full held-out evaluation of the entropy model with the emulate session as it was
(every weight re-quantized per run) and with the weights folded (outputs compared bit for bit); then the
`bisect` fallback to CER within --max-drop of FP32, its evaluations (subset and full) and wall time.
`--greedy-minutes M` also runs the former greedy search for at most M minutes of evaluations, for comparison.

    apt-get install fortunes fonts-dejavu-core
    python benchmarks/fallback_rec.py --held-out-lines 200     # about 10 minutes here
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


class _OutOfTime(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-lines", type=int, default=128)
    parser.add_argument("--held-out-lines", type=int, default=200)
    parser.add_argument("--max-drop", type=float, default=0.002, help="CER bound above FP32 (default 0.002)")
    parser.add_argument("--greedy-minutes", type=float, default=0.0)
    parser.add_argument("--refine-rounds", type=int, default=None,
                        help="bound the bisect search's rounds after its first (default: no bound)")
    parser.add_argument("--skip-timing", action="store_true", help="skip the one-evaluation before/after timing")
    args = parser.parse_args()

    import numpy as np

    import quant
    from ppocr_rec import rec_task
    from quant import pipeline
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.fallback import bisect_fallback, fallback, screening_subset
    from quant.eval.sensitivity import local_sqnr

    model_path, calibration, held_out, cer, _ = rec_task(args.calibration_lines, args.held_out_lines)
    result = quant.calibrate(model_path, calibration, methods=("entropy",), batch_size=16)
    heldout = pipeline.load_heldout(result.model, held_out, batch_size=16)
    summary = {"held_out_lines": heldout.samples, "quantized_layers": len(result.plan.layers),
               "fp32_cer": heldout.fp32_score(cer)}

    qdq = result.qdq_model("entropy")
    timings = {}
    outputs = {}
    for label, fold in () if args.skip_timing else (("emulate, Q/DQ every run", False), ("emulate, weights folded", True)):
        start = time.perf_counter()
        runner = OrtRunner(qdq, mode="emulate", fold_weights=fold)
        value = heldout.score(runner, cer)
        timings[label] = time.perf_counter() - start
        outputs[label] = [runner.run(feeds) for _, feeds in heldout.batches[:3]]
        summary[f"entropy_cer ({label})"] = value
    summary["one_evaluation_s"] = timings
    summary["bit_identical"] = None if args.skip_timing else all(np.array_equal(a, b) for x, y in zip(*outputs.values()) for a, b in zip(x, y))
    print(json.dumps(summary, indent=1), flush=True)

    start = time.perf_counter()  # the fallback as `quant fallback` runs it: ranking (one pass), then the search
    names = [layer.node for layer in result.plan.layers]
    local = local_sqnr(result.model, result.plan, result.activation_amax["entropy"], result.weight_amax, heldout.batches)
    ranking = sorted(names, key=lambda n: local[n])
    make = pipeline.qdq_runner_factory(result, "entropy")
    outcome = bisect_fallback(heldout, cer, ranking, make, max_drop=args.max_drop, screen=screening_subset(heldout),
                              log=lambda line: print(line, flush=True), refine_rounds=args.refine_rounds)
    summary["bisect"] = {"seconds": time.perf_counter() - start, "refine_rounds": args.refine_rounds, "passed": outcome.passed,
                         "float_layers": [l["node"] for l in outcome.float_layers], "evaluations": outcome.evaluations,
                         "screen_evaluations": outcome.screen_evaluations, "budget": outcome.budget,
                         "cer": heldout.score(make(frozenset(l["node"] for l in outcome.float_layers)), cer)}
    # the same variant as its own Q/DQ model and session (what `quant eval` scores): the same CER
    own = OrtRunner(result.qdq_model("entropy", keep_float=summary["bisect"]["float_layers"]), mode="emulate")
    summary["bisect"]["cer_own_model"] = heldout.score(own, cer)
    if args.greedy_minutes > 0:
        deadline = time.perf_counter() + 60 * args.greedy_minutes
        greedy_make = pipeline.qdq_runner_factory(result, "entropy")

        def bounded(keep):
            if time.perf_counter() > deadline:
                raise _OutOfTime
            return greedy_make(keep)

        start = time.perf_counter()
        lines_seen = []
        try:
            greedy = fallback(heldout, cer, ranking, bounded, max_drop=args.max_drop, log=lines_seen.append)
            summary["greedy"] = {"seconds": time.perf_counter() - start, "passed": greedy.passed,
                                 "float_layers": len(greedy.float_layers), "evaluations": greedy.evaluations}
        except _OutOfTime:
            summary["greedy"] = {"seconds": time.perf_counter() - start, "finished": False,
                                 "steps_logged": lines_seen}
    print(json.dumps(summary, indent=1, default=float), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fallback_rec.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
