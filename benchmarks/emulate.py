"""Emulated INT8 with constant weights' Q->DQ folded once, against re-quantizing them on every run. Not a test.

A 6-layer BERT-style encoder (tests/models_accuracy.py: onnx.helper, random weights, 40 tokens) at hidden
256 and 768 is calibrated once (minmax, 32 random sequences). Then, interleaved, the median latency of one
40-token sequence on: FP32 (ONNX Runtime, all optimizations), the emulate session as it was (Q/DQ on every
weight at run time) and the emulate session with the weights folded; outputs are checked bit-identical.
At hidden 256 (--sweep-hidden) a sensitivity sweep over the first encoder block's 8 layers (17 full evaluations of 8
held-out sequences) runs three ways in one process, twice each in the order A B C C B A (mean time): a Q/DQ model and session per variant with the weights
re-quantized per run (the baseline), the same with the weights folded, and one switched session (a variant
is a feed, quant.backends.ort_switch); the three reports must be equal.

    python benchmarks/emulate.py            # about 4 minutes here; --hidden 256 for the short one
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def _median_ms(runners: dict, feeds: dict, repeat: int) -> dict[str, float]:
    times = {name: [] for name in runners}
    for name, runner in runners.items():  # warm-up
        runner.run(feeds)
    for _ in range(repeat):
        for name, runner in runners.items():  # interleaved, so load on the shared machine hits all alike
            start = time.perf_counter()
            runner.run(feeds)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def _sweep(result, heldout, how: str):
    """The sensitivity sweep over the first block's layers; ``how``: "unfolded" or "folded" (a Q/DQ model and
    an ONNX Runtime session per variant, weights re-quantized per run or folded once) or "switched" (one
    session, a variant is a feed: quant.pipeline.evaluation.qdq_runner_factory since the switch)."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.scoring import get_metric
    from quant.eval.sensitivity import sensitivity
    from quant.pipeline.evaluation import qdq_runner_factory

    cache = {}

    def make(keep_float):  # as qdq_runner_factory did before the switch, with folding on or off
        return OrtRunner(result.qdq_model("minmax", keep_float=keep_float), mode="emulate",
                         fold_weights=how == "folded", fold_cache=cache)

    layers = [(layer.node, layer.op_type) for layer in result.plan.layers if layer.node.startswith("layer0.")]
    start = time.perf_counter()
    report = sensitivity(heldout, get_metric("sqnr"), layers,
                         qdq_runner_factory(result, "minmax") if how == "switched" else make, {})
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="256,768")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--sweep-hidden", default="256", help="hidden sizes whose sensitivity sweep runs (default 256)")
    parser.add_argument("--output", help="write the rows as JSON here (e.g. benchmarks/results/emulate.json)")
    args = parser.parse_args()

    import quant
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.heldout import HeldOut
    from tests.models_accuracy import bert_encoder

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hidden in (int(h) for h in args.hidden.split(",")):
            model = bert_encoder(Path(tmp) / f"bert{hidden}.onnx", layers=6, hidden=hidden, heads=hidden // 64)
            np.savez(Path(tmp) / "cal.npz", x=rng.standard_normal((32, 40, hidden)).astype(np.float32))
            result = quant.calibrate(model, Path(tmp) / "cal.npz", methods=("minmax",))
            qdq = result.qdq_model("minmax")
            feeds = {"x": rng.standard_normal((1, 40, hidden)).astype(np.float32)}
            runners = {"fp32": OrtRunner(model, mode="fp32"),
                       "emulate, Q/DQ every run": OrtRunner(qdq, mode="emulate", fold_weights=False),
                       "emulate, weights folded": OrtRunner(qdq, mode="emulate")}
            same = np.array_equal(runners["emulate, Q/DQ every run"].run(feeds)[0],
                                  runners["emulate, weights folded"].run(feeds)[0])
            ms = _median_ms(runners, feeds, args.repeat)
            row = {"hidden": hidden, "ms": ms, "bit_identical": same,
                   "speedup": ms["emulate, Q/DQ every run"] / ms["emulate, weights folded"],
                   "folded_vs_fp32": ms["emulate, weights folded"] / ms["fp32"]}
            if str(hidden) in args.sweep_hidden.split(",") and not args.no_sweep:
                held = rng.standard_normal((8, 40, hidden)).astype(np.float32)
                fp32 = runners["fp32"]
                batches = [([i, i + 1], {"x": held[i:i + 2]}) for i in range(0, 8, 2)]
                heldout = HeldOut(batches, [fp32.run(f) for _, f in batches], None, fp32.output_names)
                seconds, reports = {}, {}
                ways = ("unfolded", "folded", "switched")
                for how in ways + ways[::-1]:  # A B C C B A: a drift in the machine's load hits all alike
                    spent, report = _sweep(result, heldout, how)
                    seconds[how] = seconds.get(how, 0.0) + spent / 2
                    reports.setdefault(how, set()).add(json.dumps(report.to_json()))
                    print(how, f"{spent:.1f} s", flush=True)
                reports = {how: next(iter(r)) if len(r) == 1 else None for how, r in reports.items()}
                row["sweep"] = {"evaluations": 2 * len(report.layers) + 1, "seconds": seconds,
                                "speedup_vs_unfolded": seconds["unfolded"] / seconds["switched"],
                                "speedup_vs_folded": seconds["folded"] / seconds["switched"],
                                "same_report": None not in reports.values() and len(set(reports.values())) == 1}
            rows.append(row)
            print(row, flush=True)
    print()
    print("| hidden | FP32 ms | emulate (Q/DQ every run) ms | emulate (folded) ms | folded speed-up | folded / FP32 | bit-identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ms = row["ms"]
        print(f"| {row['hidden']} | {ms['fp32']:.1f} | {ms['emulate, Q/DQ every run']:.1f} | "
              f"{ms['emulate, weights folded']:.1f} | {row['speedup']:.1f}x | {row['folded_vs_fp32']:.2f} | "
              f"{row['bit_identical']} |")
    for row in rows:
        if "sweep" in row:
            s, t = row["sweep"], row["sweep"]["seconds"]
            print(f"\nsensitivity sweep, hidden {row['hidden']}, {s['evaluations']} evaluations of 8 sequences: "
                  f"per-variant sessions {t['unfolded']:.1f} s (weights re-quantized per run), {t['folded']:.1f} s "
                  f"(folded); one switched session {t['switched']:.1f} s: {s['speedup_vs_unfolded']:.1f}x vs unfolded, "
                  f"{s['speedup_vs_folded']:.1f}x vs folded; same report: {s['same_report']}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(rows, indent=2, default=float) + "\n")

if __name__ == "__main__":
    main()
