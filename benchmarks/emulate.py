"""Emulated INT8 with constant weights' Q->DQ folded once, against re-quantizing them on every run. Not a test.

A 6-layer BERT-style encoder (tests/models_accuracy.py: onnx.helper, random weights, 40 tokens) at hidden
256 and 768 is calibrated once (minmax, 32 random sequences). Then, interleaved, the median latency of one
40-token sequence on: FP32 (ONNX Runtime, all optimizations), the emulate session as it was (Q/DQ on every
weight at run time) and the emulate session with the weights folded; outputs are checked bit-identical.
At hidden 256 a sensitivity sweep over the first encoder block's 6 layers (13 full evaluations of 8
held-out sequences) runs both ways, and the two reports must be equal.

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


def _sweep(result, heldout, fold: bool):
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.scoring import get_metric
    from quant.eval.sensitivity import sensitivity

    cache = {}

    def make(keep_float):  # as quant.pipeline.evaluation.qdq_runner_factory does, with folding on or off
        return OrtRunner(result.qdq_model("minmax", keep_float=keep_float), mode="emulate", fold_weights=fold,
                         fold_cache=cache)

    layers = [(layer.node, layer.op_type) for layer in result.plan.layers if layer.node.startswith("layer0.")]
    start = time.perf_counter()
    report = sensitivity(heldout, get_metric("sqnr"), layers, make, {})
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="256,768")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-sweep", action="store_true")
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
            if hidden == 256 and not args.no_sweep:
                held = rng.standard_normal((8, 40, hidden)).astype(np.float32)
                fp32 = runners["fp32"]
                batches = [([i, i + 1], {"x": held[i:i + 2]}) for i in range(0, 8, 2)]
                heldout = HeldOut(batches, [fp32.run(f) for _, f in batches], None, fp32.output_names)
                before, report_before = _sweep(result, heldout, fold=False)
                after, report_after = _sweep(result, heldout, fold=True)
                row["sweep"] = {"evaluations": 2 * len(report_after.layers) + 1, "before_s": before, "after_s": after,
                                "speedup": before / after,
                                "same_report": json.dumps(report_before.to_json()) == json.dumps(report_after.to_json())}
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
            s = row["sweep"]
            print(f"\nsensitivity sweep, hidden {row['hidden']}, {s['evaluations']} evaluations of 8 sequences: "
                  f"{s['before_s']:.1f} s before, {s['after_s']:.1f} s after ({s['speedup']:.1f}x), "
                  f"same report: {s['same_report']}")


if __name__ == "__main__":
    main()
