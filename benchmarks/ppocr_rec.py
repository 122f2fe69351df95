"""PP-OCRv4 text recognition (from the rapidocr_onnxruntime wheel): calibration methods, and the
mixed-precision fallback against the naive "first/last N layers" search. Not a test.

Data: lines of Debian's fortunes rendered in DejaVu Sans (benchmarks/ocr_data.py); calibration and
held-out lines are disjoint. Metrics: character error rate (CER, greedy CTC decoding) and exact match
ignoring spaces, INT8 computed with exact Q/DQ emulation (ORT, graph optimizations off).

    apt-get install fortunes fonts-dejavu-core
    python benchmarks/ppocr_rec.py            # about 15 minutes here; appends to benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MODEL_IN_WHEEL = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"


def rec_model(cache: Path) -> Path:
    """The PP-OCRv4 rec ONNX file shipped inside the rapidocr_onnxruntime wheel (installed or downloaded)."""
    try:
        import rapidocr_onnxruntime

        path = Path(rapidocr_onnxruntime.__file__).parent / "models" / Path(MODEL_IN_WHEEL).name
        if path.exists():
            return path
    except ImportError:
        pass
    target = cache / Path(MODEL_IN_WHEEL).name
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "rapidocr_onnxruntime==1.4.4",
                            "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                target.write_bytes(archive.read(MODEL_IN_WHEEL))
    return target


def rec_task(calibration_lines: int, held_out_lines: int):
    """(model path, calibration lines, held-out lines, CER metric, exact-match metric) of the PP-OCRv4 rec task:
    distinct fortune lines of at most 28 characters the model knows (seed 0), the first ones for calibration."""
    import onnx

    from ocr_data import RenderedLines, load_lines, make_metrics
    from quant.eval.scoring import get_metric

    model_path = rec_model(HERE / ".cache")
    characters = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}["character"].splitlines()
    lines = load_lines(calibration_lines + held_out_lines, seed=0, charset=set(characters), max_len=28)
    cer_fn, em_fn = make_metrics(characters)
    return (model_path, RenderedLines(lines[:calibration_lines]), RenderedLines(lines[calibration_lines:]),
            get_metric(cer_fn), get_metric(em_fn))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-lines", type=int, default=128)
    parser.add_argument("--held-out-lines", type=int, default=96)
    parser.add_argument("--max-drop", type=float, default=0.01, help="CER bound above FP32 (default 0.01)")
    parser.add_argument("--method", default="entropy", help="method whose model the fallback repairs")
    args = parser.parse_args()

    import quant
    from quant import pipeline
    from quant.backends.onnxruntime import OrtRunner
    from quant.eval.fallback import fallback, naive_first_last
    from quant.eval.sensitivity import local_sqnr

    model_path, calibration, held_out, cer, exact = rec_task(args.calibration_lines, args.held_out_lines)

    start = time.perf_counter()
    result = quant.calibrate(model_path, calibration, methods=("entropy", "minmax", "percentile", "mse"), batch_size=16)
    calibrate_seconds = time.perf_counter() - start
    heldout = pipeline.load_heldout(result.model, held_out, batch_size=16)
    rows = {"FP32": {"cer": heldout.fp32_score(cer), "exact_match": heldout.fp32_score(exact), "float_layers": "all"}}
    for method in result.methods:
        runner = OrtRunner(result.qdq_model(method), mode="emulate")
        rows[f"quant {method}"] = {"cer": heldout.score(runner, cer), "exact_match": heldout.score(runner, exact),
                                   "float_layers": 0}
        print(method, rows[f"quant {method}"], flush=True)

    method = args.method
    names = [layer.node for layer in result.plan.layers]
    local = local_sqnr(result.model, result.plan, result.activation_amax[method], result.weight_amax, heldout.batches)
    ranking = sorted(names, key=lambda n: local[n])
    make = pipeline.qdq_runner_factory(result, method)
    start = time.perf_counter()
    outcome = fallback(heldout, cer, ranking, make, max_drop=args.max_drop, log=lambda line: print(line, flush=True))
    fallback_seconds = time.perf_counter() - start
    keep = frozenset(layer["node"] for layer in outcome.float_layers)
    runner = make(keep)
    rows[f"quant {method} + fallback"] = {"cer": heldout.score(runner, cer), "exact_match": heldout.score(runner, exact),
                                          "float_layers": len(keep)}
    naive = naive_first_last(heldout, cer, names, make, max_drop=args.max_drop)
    summary = {"model": str(model_path.name), "quantized_layers": len(names), "calibration_lines": len(calibration),
               "held_out_lines": len(held_out), "calibrate_seconds_all_methods": calibrate_seconds,
               "fallback_seconds": fallback_seconds, "rows": rows, "fallback": outcome.to_json(), "naive": naive,
               "local_sqnr_db": local}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ppocr_rec.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    write_section(summary, method, args.max_drop)
    print(json.dumps({"rows": rows, "naive": naive, "float_layers": [l["node"] for l in outcome.float_layers]}, indent=1))


def write_section(summary: dict, method: str, max_drop: float) -> None:
    rows = summary["rows"]
    fp32 = rows["FP32"]["cer"]
    lines = ["## PP-OCRv4 recognition: methods and fallback (benchmarks/ppocr_rec.py)", "",
             f"`{summary['model']}` from the rapidocr_onnxruntime 1.4.4 wheel, {summary['quantized_layers']} quantized "
             f"layers (Conv and MatMul). {summary['calibration_lines']} calibration and {summary['held_out_lines']} "
             "held-out lines of Debian's fortunes rendered in DejaVu Sans (disjoint). INT8 is exact Q/DQ emulation. "
             f"All four methods came from one collection pass ({summary['calibrate_seconds_all_methods']:.0f} s).", "",
             "| model | CER | exact match (no spaces) | layers in float |", "| --- | --- | --- | --- |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['cer']:.4f} | {row['exact_match']:.1f}% | {row['float_layers']} |")
    fb, naive = summary["fallback"], summary["naive"]
    lines += ["", f"Fallback on the `{method}` model, bound CER <= FP32 + {max_drop} = {fp32 + max_drop:.4f}: "
              f"{'met' if fb['passed'] else 'NOT met'} with {len(fb['float_layers'])} layer(s) in float "
              f"({fb['evaluations']} evaluations, {summary['fallback_seconds']:.0f} s): "
              + ", ".join(f"`{l['node']}`" for l in fb["float_layers"]) + ".",
              f"Naive search on the same model: keeping the first N layers in float needs N = {naive['first_n']}, "
              f"the last N needs N = {naive['last_n']} (None = never).", ""]
    from results_md import write_section as replace

    replace("## PP-OCRv4 recognition", "\n".join(lines))


if __name__ == "__main__":
    main()
