"""quant calibrate: one FP32 pass, ranges by every method asked for, artifacts written atomically."""
from __future__ import annotations

from pathlib import Path

from quant.cli.common import add_data_options, add_device_option, input_map_from_args, preprocess_from_args, stdout
from quant.core.config import METHODS, REDUCE_RANGE, TARGETS, WEIGHT_METHODS


def register(subparsers) -> None:
    parser = subparsers.add_parser("calibrate", help="calibrate an FP32 ONNX model and write a TensorRT-ready Q/DQ model",
                                   description="Collect activation histograms in one FP32 pass over the data, compute "
                                               "ranges, and write model.int8.onnx, calibration.cache, quant.json and "
                                               "histograms.npz into --output (one sub-folder per method when several).")
    parser.add_argument("model", help="FP32 ONNX model")
    add_data_options(parser, batch_default=None)
    parser.add_argument("--method", default="entropy", metavar="M[,M...]",
                        help=f"calibration method(s), comma-separated: {', '.join(METHODS)} (default: entropy)")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (written atomically)")
    parser.add_argument("--percentile", type=float, default=99.99, help="percentile for --method percentile (default 99.99)")
    parser.add_argument("--weight-method", default="minmax", choices=WEIGHT_METHODS,
                        help="per-channel weight ranges (default: minmax = max |w|)")
    parser.add_argument("--bins", type=int, default=4096, help="histogram bins on the dyadic grid (default 4096)")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE",
                        help="ONNX node name to keep in float (repeatable)")
    parser.add_argument("--trt-version", default="10.3.0", help="TensorRT version for the cache header (default 10.3.0)")
    parser.add_argument("--memory-budget", type=float, default=128.0, metavar="MB",
                        help="activation memory per batch when --batch-size is not given (default 128 MB)")
    parser.add_argument("--external-data", action="store_true",
                        help="store the Q/DQ model's weights in model.int8.onnx.data (automatic over 2 GB)")
    parser.add_argument("--target", default="tensorrt", choices=TARGETS,
                        help="tensorrt: model.int8.onnx + calibration.cache (symmetric s8, TensorRT's form); "
                             "ort-cpu: model.ort-cpu.int8.onnx (u8 activations, the form ONNX Runtime's CPU "
                             "kernels run fast); all: both from one pass (default: tensorrt)")
    parser.add_argument("--reduce-range", default="auto", choices=REDUCE_RANGE,
                        help="ort-cpu: 7-bit weights so x86 CPUs without VNNI do not saturate (auto: probe "
                             "this machine's ONNX Runtime kernels)")
    add_device_option(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.config import CalibrationConfig
    from quant.core.io import dumps
    from quant.pipeline import calibrate

    methods = tuple(m.strip() for m in args.method.split(",") if m.strip())
    config = CalibrationConfig(methods=methods, percentile=args.percentile, bins=args.bins, batch_size=args.batch_size,
                               memory_budget_mb=args.memory_budget,
                               num_samples=args.num_samples, seed=args.seed, weight_method=args.weight_method,
                               exclude=tuple(args.exclude), trt_version=args.trt_version,
                               external_data=args.external_data, target=args.target,
                               reduce_range=args.reduce_range)
    preprocess = preprocess_from_args(args)
    from quant.core.io import check_output_dir

    check_output_dir(args.output, protect=(Path(args.model), Path(args.data)))  # fail fast, before the pass
    result = calibrate(args.model, args.data, config, input_map=input_map_from_args(args), preprocess=preprocess,
                       split=args.split, progress=True, device=args.device)
    folders = result.save(args.output, protect=(Path(args.data),))
    if args.json:
        stdout(dumps({"outputs": {m: str(f) for m, f in zip(result.methods, folders)}, **result.summary()}))
        return 0
    plan = result.plan
    stdout(f"calibrated {len(result.histograms)} activation tensors on {result.data['samples']} samples "
           f"({result.data['source']})")
    collected_with = result.data.get("collected_with", "ONNX Runtime (CPU)")
    stdout(f"collection pass: {collected_with}")
    if " on cuda" in collected_with:
        from quant.cli.common import stderr

        stderr("note: on CUDA, cuDNN/cuBLAS pick kernels by batch shape, so the last bits of activations (and of "
               "minmax/entropy ranges) can change with --batch-size; --device ort or cpu gives bit-identical ranges "
               "for any batch size")
    stdout(f"quantized layers: {len(plan.layers)}, residual Adds: {len(plan.residuals)}, "
           f"weighted ops left in float: {len(plan.excluded)}")
    if len(result.methods) > 1:
        stdout(_comparison(result))
    for method, folder in zip(result.methods, folders):
        stdout(f"{method}: {folder}/{', '.join(result.files())}")
    if "ort-cpu" in config.targets:
        _ort_cpu_lines(result, folders)
    return 0


def _ort_cpu_lines(result, folders) -> None:
    import json

    from quant.cli.common import stderr

    reduce, why = result.reduce_range()
    stdout(f"ort-cpu: {'7-bit' if reduce else '8-bit'} weights ({why})")
    for method, folder in zip(result.methods, folders):
        check = json.loads((Path(folder) / "quant.json").read_text())["targets"]["ort-cpu"]["validation"]
        if not check.get("validated"):
            continue
        worst = min(v["sqnr_db_ort_kernels_vs_emulated"] for v in check["outputs"].values())
        kernels = ", ".join(f"{n} {op}" for op, n in sorted(check["integer_kernels"].items())) or "none"
        stdout(f"ort-cpu {method}: ORT integer kernels {kernels}; on {check['samples']} calibration samples "
               f"ORT's kernels vs exact Q/DQ: SQNR {worst:.1f} dB")
        if not check["agrees"]:
            stderr(f"warning: ORT's integer kernels disagree with the exact Q/DQ result ({worst:.1f} dB): they "
                   "probably saturate on this CPU; calibrate again with --reduce-range on")


def _comparison(result) -> str:
    methods = result.methods
    width = max(len(t) for t in result.histograms)
    width = min(max(width, 6), 48)
    lines = [f"{'tensor':<{width}} {'absmax':>10} " + " ".join(f"{m:>10}" for m in methods)]
    for tensor in result.histograms:
        name = tensor if len(tensor) <= width else "..." + tensor[-(width - 3):]
        values = " ".join(f"{result.activation_amax[m][tensor]:>10.4g}" for m in methods)
        lines.append(f"{name:<{width}} {result.histograms[tensor].absmax:>10.4g} {values}")
    return "\n".join(lines)
