"""quant bench: latency and throughput of FP32 and INT8 models on CPU runtimes, side by side."""
from __future__ import annotations

import argparse

from quant.cli.common import add_force_option, input_files, stdout
from quant.cli import validators as V


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="latency/throughput of FP32 vs INT8 on CPU (ONNX Runtime, OpenVINO)",
                                   description="Median latency after warm-up of the FP32 model and each INT8 model, "
                                               "runs alternating between the models, for each runtime and batch size; "
                                               "prints the ratio to FP32 and the fastest INT8 path.")
    parser.add_argument("fp32_model", help="FP32 ONNX model")
    parser.add_argument("int8_models", nargs="+", metavar="INT8_MODEL",
                        help="INT8 Q/DQ models (model.int8.onnx, model.ort-cpu.int8.onnx, ...)")
    parser.add_argument("--runtime", default="ort", metavar="R[,R]",
                        help="comma-separated: ort (ONNX Runtime CPU), openvino (default: ort)")
    parser.add_argument("--batch", default="1", metavar="B[,B]", help="batch sizes, comma-separated (default 1)")
    parser.add_argument("--threads", type=V.integer(1, 4096, "threads"), help="intra-op threads (default: the runtime's own choice)")
    parser.add_argument("--repeat", type=V.count(1, "repeat"), default=30, help="timed runs per model (default 30)")
    parser.add_argument("--warmup", type=V.count(0, "warmup"), default=5, help="untimed runs first (default 5)")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME:DxDxD",
                        help="full shape of an input with dynamic dimensions besides the batch (repeatable; "
                             "the syntax of 'quant build --shape')")
    parser.add_argument("--shapes", dest="shape", action="append", default=[], help=argparse.SUPPRESS)  # = --shape
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--output-json", metavar="FILE", help="also write the results as JSON (atomically)")
    add_force_option(parser)
    parser.set_defaults(run=run)


def _ints(text: str, what: str) -> list[int]:
    from quant.core.errors import QuantError, refuse_repeated

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise QuantError(f"{what} must be comma-separated integers, got '{text}'", hint="e.g. 1,16") from None
    if not values or min(values) < 1:
        raise QuantError(f"{what} must be positive integers, got '{text}'", hint="e.g. 1,16")
    refuse_repeated(values, what, "batch size")
    return values


def _shapes(items: list[str]) -> dict[str, list[int]]:
    from quant.core.errors import QuantError, refuse_repeated

    shapes, names = {}, []
    for item in items:
        name, _, dims = item.rpartition(":")
        try:
            shapes[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            name = ""
        if not name:
            raise QuantError(f"--shape '{item}' is not NAME:DxDxD", hint="e.g. --shape input:1x3x48x320")
        names.append(name)
    refuse_repeated(names, "--shape", "input")
    return shapes


def run(args) -> int:
    from quant.bench import bench
    from quant.core.io import check_output_file, dumps, json_output, write_file_atomic, writing

    from quant.core.errors import refuse_repeated

    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()]
    refuse_repeated(runtimes, "--runtime", "runtime")
    refuse_repeated(args.int8_models, "the INT8_MODEL list", "model")
    if args.output_json is not None:  # fail fast, before the measurements
        check_output_file(args.output_json, input_files(args.fp32_model, *args.int8_models), args.force, "--output-json")
    result = bench(args.fp32_model, args.int8_models, runtimes=runtimes, batches=_ints(args.batch, "--batch"),
                   threads=args.threads, repeat=args.repeat, warmup=args.warmup, shapes=_shapes(args.shape))
    if args.output_json is not None:
        with writing(force=args.force):
            write_file_atomic(args.output_json, json_output(result.to_json()))
    stdout(dumps(result.to_json()) if args.json else result.format_text())
    return 0
