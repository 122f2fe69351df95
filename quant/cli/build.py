"""quant build: a TensorRT engine from a calibration folder or Q/DQ model (Python API or trtexec)."""
from __future__ import annotations

import shlex
from pathlib import Path

from quant.cli.common import add_force_option, input_files, stdout


def register(subparsers) -> None:
    parser = subparsers.add_parser("build", help="build a TensorRT INT8 engine (needs TensorRT)",
                                   description="Build an engine with TensorRT's Python API, or trtexec when only it is "
                                               "installed. Q/DQ models build strongly typed on TensorRT >= 10. Without "
                                               "TensorRT, prints the exact trtexec command and exits 2.")
    parser.add_argument("target", metavar="DIR|MODEL", help="a 'quant calibrate' folder or a Q/DQ .onnx model")
    parser.add_argument("--output", "-o", required=True, metavar="ENGINE", help="engine file to write (atomically)")
    parser.add_argument("--shapes", action="append", default=[], metavar="NAME:MIN/OPT/MAX",
                        help="optimization profile of an input, e.g. input:1x3x224x224/8x3x224x224/32x3x224x224 "
                             "(default: from the model and the calibration data's observed shapes)")
    parser.add_argument("--max-batch", type=int, default=32, help="max batch of the default profile (default 32)")
    parser.add_argument("--workspace", type=int, metavar="MIB", help="builder workspace limit in MiB")
    parser.add_argument("--implicit", action="store_true",
                        help="TensorRT <= 10 only: build the FP32 model with INT8 and the calibration.cache "
                             "(legacy implicit quantization); refused on TensorRT 11")
    add_force_option(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.build import build
    from quant.core.io import check_output_file, writing

    target = Path(args.target)
    reads = [target / n for n in ("model.int8.onnx", "calibration.cache", "quant.json")] if target.is_dir() else [target]
    for path in (args.output, f"{args.output}.log"):  # the engine, and trtexec's log beside it
        check_output_file(path, input_files(*reads), args.force, "--output")  # never over what the build reads
    with writing(force=args.force):
        plan = build(args.target, args.output, shapes=args.shapes, workspace_mib=args.workspace,
                     implicit=args.implicit, max_batch=args.max_batch)
    stdout(f"built {args.output} with TensorRT {'.'.join(map(str, plan.version))} ({plan.via})")
    if plan.via == "trtexec":
        stdout(f"command: {shlex.join(plan.command)}")
    return 0
