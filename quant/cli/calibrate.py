"""quant calibrate: one FP32 pass, ranges by every method asked for, artifacts written atomically."""
from __future__ import annotations

from pathlib import Path

from quant.cli.common import (add_data_options, add_device_option, add_ray_options, input_files, input_map_from_args,
                               preprocess_from_args, print_warnings, ray_from_args, stdout)
from quant.core.config import HIGH_PRECISION, METHOD_ALIASES, METHODS, REDUCE_RANGE, TARGETS, WEIGHT_METHODS, WEIGHT_STORAGE
from quant.cli import validators as V
from quant.core.text import counted, printable


def register(subparsers) -> None:
    parser = subparsers.add_parser("calibrate", help="calibrate an FP32 ONNX model and write a TensorRT-ready Q/DQ model",
                                   description="Collect activation histograms in one FP32 pass over the data, compute "
                                               "ranges, and write model.int8.onnx, calibration.cache, quant.json and "
                                               "histograms.npz into --output (one sub-folder per method when several).")
    parser.add_argument("model", help="FP32 ONNX model")
    add_data_options(parser, batch_default=None)
    parser.add_argument("--method", default="entropy", metavar="M[,M...]",
                        help=f"calibration method(s), comma-separated: {', '.join(METHODS)}; Model Optimizer's "
                             f"names {', '.join(f'{a} (= {m})' for a, m in METHOD_ALIASES.items())} are accepted "
                             "(default: entropy); auto: per tensor, the range of these (or between them) that gives "
                             "its consuming layer the lowest output error on calibration data")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (written atomically)")
    parser.add_argument("--percentile", type=V.percentile, help="percentile for --method percentile (default 99.99)")
    parser.add_argument("--weight-method", default="minmax", choices=WEIGHT_METHODS,
                        help="per-channel weight ranges (default: minmax = max |w|)")
    parser.add_argument("--bins", type=V.bins, default=4096, help="histogram bins on the dyadic grid (default 4096)")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE",
                        help="ONNX node name to keep in float, or re:PATTERN for a regular expression as "
                             "--exclude-regex takes (repeatable)")
    parser.add_argument("--exclude-op-type", action="append", default=[], metavar="OP",
                        help="keep every node of this op type in float, e.g. Conv (repeatable)")
    parser.add_argument("--exclude-regex", action="append", default=[], metavar="PATTERN",
                        help=r"keep nodes whose name matches this Python regular expression in float, searched "
                             r"anywhere in the name, e.g. '^/encoder/layer\.0/' (repeatable)")
    parser.add_argument("--include", action="append", default=[], metavar="NODE",
                        help="quantize this Conv/Gemm/MatMul although a speed heuristic (few channels, GEMV "
                             "shape) keeps it in float (repeatable)")
    parser.add_argument("--weight-storage", default="int8", choices=WEIGHT_STORAGE,
                        help="int8: weights stored as INT8 initializers read by DequantizeLinear only (Model "
                             "Optimizer's dq_only; a weight takes a quarter of its float32 bytes, model.int8.onnx "
                             "of the digits CNN 0.32x its FP32 file); float: float weights with QuantizeLinear + "
                             "DequantizeLinear (default: int8)")
    parser.add_argument("--high-precision", default="fp32", choices=HIGH_PRECISION,
                        help="type of the layers left unquantized in model.int8.onnx: fp16 converts them (and the "
                             "Q/DQ scales) to float16 as Model Optimizer's high_precision_dtype does, keeping the "
                             "model's float32 inputs and outputs (default: fp32, the model as it is)")
    parser.add_argument("--trt-version", default="10.3.0", type=V.trt_version, help="TensorRT version for the cache header (default 10.3.0)")
    parser.add_argument("--memory-budget", type=V.number(0, None, low_open=True, name="memory-budget"), default=128.0, metavar="MB",
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
    parser.add_argument("--bias-correction", action="store_true",
                        help="after the ranges, a second pass over the data measures each quantized layer's mean "
                             "output shift per channel (Q/DQ input and weight vs FP32) and folds it into the FP32 "
                             "bias of model.int8.onnx (a Conv/Gemm without a bias gets one)")
    parser.add_argument("--quantize-op-types", default="", metavar="OP[,OP...]",
                        help="also put Q/DQ on the float inputs of these op types, as Model Optimizer does "
                             "(e.g. Add,Mul,GlobalAveragePool,Resize); TensorRT fuses them")
    parser.add_argument("--smooth", action="store_true",
                        help="scale each depthwise convolution's input channels to one range (a per-channel Mul "
                             "before it, the inverse folded into its weights; measured on the data) so that its "
                             "per-tensor INT8 scale serves every channel; the FP32 function is unchanged")
    parser.add_argument("--equalize", action="store_true",
                        help="cross-layer equalization: balance the channel ranges of Conv -> (ReLU) -> Conv pairs "
                             "(depthwise convolutions included) in the FP32 weights before calibrating; the FP32 "
                             "function is unchanged")
    add_device_option(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    add_ray_options(parser, shards=True)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.config import CalibrationConfig
    from quant.core.io import dumps
    from quant.pipeline import calibrate

    methods = tuple(m.strip() for m in args.method.split(",") if m.strip())
    percentile = _percentile(args, methods)
    _refuse_ignored_target_options(args)
    config = CalibrationConfig(methods=methods, percentile=percentile, bins=args.bins, batch_size=args.batch_size,
                               memory_budget_mb=args.memory_budget,
                               num_samples=args.num_samples, seed=args.seed, weight_method=args.weight_method,
                               exclude=tuple(e for e in args.exclude if not e.startswith("re:")),
                               trt_version=args.trt_version,
                               external_data=args.external_data, target=args.target,
                               reduce_range=args.reduce_range, exclude_op_types=tuple(args.exclude_op_type),
                               exclude_patterns=tuple(args.exclude_regex) + tuple(e[3:] for e in args.exclude
                                                                                 if e.startswith("re:")),
                               include=tuple(args.include),
                               weight_storage=args.weight_storage, high_precision=args.high_precision,
                               bias_correction=args.bias_correction, equalize=args.equalize, smooth=args.smooth,
                               quantize_op_types=tuple(t.strip() for t in args.quantize_op_types.split(",") if t.strip()))
    preprocess = preprocess_from_args(args)
    from quant.core.io import check_output_dir

    inputs = input_files(args.model, args.data, args.preprocess)
    check_output_dir(args.output, protect=tuple(inputs))  # fail fast, before the pass
    result = calibrate(args.model, args.data, config, input_map=input_map_from_args(args), preprocess=preprocess,
                       split=args.split, progress=True, ray=ray_from_args(args), device=args.device)
    folders = result.save(args.output, protect=tuple(inputs))
    print_warnings(result)
    _warn_cache_version(args.trt_version)
    if args.json:
        stdout(dumps({"outputs": {m: str(f) for m, f in zip(result.methods, folders)}, **result.summary()}))
        return 0
    plan = result.plan
    stdout(result.headline())
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
        stdout(f"{method}: {printable(folder)}/{', '.join(result.files())}")  # a path on one line
    if config.bias_correction:
        _bias_lines(result)
    if "ort-cpu" in config.targets:
        _ort_cpu_lines(result, folders)
    if result.auto:
        stdout(auto_summary_line(result.auto))
    if config.smooth:
        stdout(smooth_summary_line(result.smoothing))
    clipping_warnings(result)
    return 0


def _bias_lines(result) -> None:
    """One line per method: whether its bias correction was applied, with the check that decided it."""
    for method in result.methods:
        entry = result.manifest(method)["bias_correction"]
        check = entry.get("check") or {}
        measured = (f"output SQNR on {check['samples']} calibration samples {check['output_sqnr_db_without']} -> "
                    f"{check['output_sqnr_db_with']} dB" if check else "")
        if entry["applied"]:
            left = len(entry["not_corrected"])
            stdout(f"bias correction ({method}): applied to {counted(len(entry['layers']), 'layer')}"
                   + (f", {measured}" if measured else "") + f" ({counted(left, 'layer')} {'has' if left == 1 else 'have'} "
                   "no bias to absorb a shift)")
        else:
            stdout(f"bias correction ({method}): not applied: {entry.get('why', 'no layer with a bias to correct')}")


def smooth_summary_line(record: dict) -> str:
    """'smooth: 37 depthwise convolutions, ...' or why nothing was smoothed."""
    layers = record.get("layers") or []
    if not layers:
        return "smooth: no quantized depthwise convolution to smooth (nothing changed)"
    spread = [l["max_to_min_range"] for l in layers if l.get("max_to_min_range")]
    widest = max(layers, key=lambda l: l.get("max_to_min_range") or 0)
    return (f"smooth: {len(layers)} depthwise convolution(s) read their input scaled per channel (one Mul each); "
            + (f"widest channel spread {max(spread):.4g}x at '{widest['node']}'; " if spread else "")
            + "quant.json: smoothing")


def auto_summary_line(record: dict) -> str:
    """'auto: 7 tensors: entropy 1, mse 3, search 3 (scored on 64 calibration samples)'."""
    taken = ", ".join(f"{label} {count}" for label, count in record["summary"].items() if count)
    whole = record.get("whole_model") or {}
    chosen, scores = whole.get("chosen"), whole.get("candidates") or {}
    if chosen is None or chosen == "per tensor":
        how = "each the range with the lowest error of its consuming layers"
    elif chosen == "per tensor, methods only":
        how = "each the method with the lowest error of its consuming layers"
    else:
        how = f"{chosen} alone"
    if len(scores) > 1 and scores.get(chosen) is not None:
        same = {}  # a method whose ranges equal an earlier candidate's is not scored twice: say whose
        for label, earlier in (whole.get("same_ranges_as") or {}).items():
            same.setdefault(earlier, []).append(label)
        others = ", ".join(f"{label}{' (= ' + '; '.join(same[label]) + ')' if label in same else ''} {value:.2f}"
                           for label, value in scores.items() if label != chosen and value is not None)
        outputs = whole.get("outputs") or []
        scored = (f" (mean over {_quoted_names(outputs)})" if len(outputs) > 1
                  else f" ({_quoted_names(outputs)})" if outputs else "")
        also = f" (= {'; '.join(same[chosen])})" if chosen in same else ""
        how += f"; whole-model output SQNR{scored} {scores[chosen]:.2f} dB{also} vs {others}"
    elif not whole:
        how += "; no float output to score the whole model on"
    return (f"auto: {sum(record['summary'].values())} tensors: {taken or 'none'} ({how}, on {record['samples']} "
            "calibration samples; quant.json: auto)")


def _refuse_ignored_target_options(args) -> None:
    """Options of the one form --target does not write: --reduce-range shapes model.ort-cpu.int8.onnx (not written
    by --target tensorrt); --high-precision and --weight-storage shape model.int8.onnx (not written by ort-cpu)."""
    from quant.core.errors import QuantError

    if args.reduce_range != "auto" and args.target == "tensorrt":
        raise QuantError(f"--reduce-range {args.reduce_range} applies to the ort-cpu model, but --target is tensorrt "
                         "(symmetric s8, full-range weights): it would be ignored",
                         hint="add --target ort-cpu or --target all, or drop --reduce-range")
    if args.target != "ort-cpu":
        return
    for flag, value, default in (("--high-precision", args.high_precision, "fp32"),
                                 ("--weight-storage", args.weight_storage, "int8")):
        if value != default:
            raise QuantError(f"{flag} {value} shapes model.int8.onnx (TensorRT's form), but --target ort-cpu writes "
                             "only model.ort-cpu.int8.onnx: it would be ignored",
                             hint=f"use --target all to write both, or drop {flag}")


def _quoted_names(names) -> str:
    """'output 'logits'' or 'outputs 'logits', 'feat'': model names quoted, on one line."""
    from quant.core.text import printable

    quoted = ", ".join(f"'{printable(n, 60)}'" for n in names)
    return f"output {quoted}" if len(names) == 1 else f"outputs {quoted}"


def _percentile(args, methods) -> float:
    """--percentile only means something to the percentile method (activations or weights): refused elsewhere."""
    if args.percentile is None:
        return 99.99
    from quant.core.config import CalibrationConfig

    CalibrationConfig(methods=methods, weight_method=args.weight_method).refuse_unused_percentile()
    return args.percentile


MAX_CLIPPING_WARNINGS = 10


def clipping_warnings(result) -> None:
    """One stderr line per tensor that entropy clips hard (at most MAX_CLIPPING_WARNINGS, then a count)."""
    from quant.calibrators.clipping import HARD_ENERGY_SHARE, HARD_VALUES_SHARE
    from quant.cli.common import stderr

    for method in result.methods:
        if method != "entropy":
            continue
        hard = result.hard_clipping(method)
        for entry in hard[:MAX_CLIPPING_WARNINGS]:
            instead = entry["instead"]
            from quant.core.numbers import percent

            stderr(f"warning: entropy clips {entry['tensor']!r} hard: {percent(100 * entry['values_share'])}% of its "
                   f"values above amax {entry['amax']:.4g}, {percent(100 * entry['energy_share'])}% of its energy; "
                   f"{instead['method']} keeps it within {100 * HARD_VALUES_SHARE:g}% / {100 * HARD_ENERGY_SHARE:g}% "
                   f"(amax {instead['amax']:.4g})")
        if len(hard) > MAX_CLIPPING_WARNINGS:
            stderr(f"warning: entropy clips {len(hard) - MAX_CLIPPING_WARNINGS} more tensors hard "
                   f"(quant.json: hard_clipping)")


def _ort_cpu_lines(result, folders) -> None:
    from quant.cli.common import stderr

    reduce, why = result.reduce_range()
    stdout(f"ort-cpu: {'7-bit' if reduce else '8-bit'} weights ({why})")
    for method, folder in zip(result.methods, folders):
        check = result.ort_cpu_validation.get(method) or {}
        if not check.get("validated"):
            continue
        line, warning = ort_cpu_check_lines(method, check)
        stdout(line)
        if warning:
            stderr(warning)


def ort_cpu_check_lines(method: str, check: dict) -> tuple[str, str | None]:
    """(result line, warning or None) for the ort-cpu validation recorded in quant.json."""
    from quant.pipeline.calibration import worst_kernel_sqnr

    samples = check.get("samples")
    if not check.get("integer_kernels"):
        return (f"ort-cpu {method}: ONNX Runtime runs no integer kernel on this model (it keeps every Q/DQ as "
                f"float ops: no INT8 speed-up on its CPU provider); kernel-vs-exact SQNR not available"), None
    kernels = ", ".join(f"{n} {op}" for op, n in sorted(check["integer_kernels"].items()))
    outputs = check.get("outputs", {})
    worst = worst_kernel_sqnr(outputs)
    parts = [f"SQNR {worst:.1f} dB"] if worst is not None else []
    if worst is None and any(v.get("identical") for v in outputs.values() if "equal_fraction" not in v):
        parts.append("float outputs identical")
    parts += [f"{name} {100 * v['equal_fraction']:.1f}% equal" for name, v in outputs.items() if "equal_fraction" in v]
    line = (f"ort-cpu {method}: ORT integer kernels {kernels}; on {samples} calibration samples ORT's kernels vs "
            f"exact Q/DQ: {'; '.join(parts) or 'no output to compare'}")
    warning = None
    if not check.get("agrees"):
        what = f"{worst:.1f} dB" if worst is not None else "; ".join(parts)
        warning = (f"warning: ORT's integer kernels disagree with the exact Q/DQ result ({what}): they "
                   "probably saturate on this CPU; calibrate again with --reduce-range on")
    return line, warning


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


def _warn_cache_version(trt_version: str) -> None:
    """calibration.cache is read by implicit calibration only, which TensorRT 11 removed."""
    from quant.backends.tensorrt import parse_version
    from quant.cli.common import stderr

    version = parse_version(trt_version)
    if version is not None and version[0] >= 11:
        stderr(f"note: calibration.cache is for TensorRT <= 10 (implicit calibration was removed in 11.0); "
               f"TensorRT {trt_version} builds model.int8.onnx (quant build DIR)")
