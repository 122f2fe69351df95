"""quant build: a TensorRT engine from a calibration folder or Q/DQ model (Python API or trtexec)."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from quant.cli.common import add_force_option, input_files, stdout
from quant.cli import validators as V


def register(subparsers) -> None:
    parser = subparsers.add_parser("build", help="build a TensorRT INT8 engine (needs TensorRT), or print the command",
                                   description="Build an engine with TensorRT's Python API, or trtexec when only it is "
                                               "installed. Q/DQ models build strongly typed on TensorRT 10 "
                                               "(--stronglyTyped), with --int8 on 8.x, with no precision flag on 11. "
                                               "--print-command prints the trtexec command alone and exits 0; "
                                               "without TensorRT a build exits 2 and names that command.")
    parser.add_argument("target", metavar="DIR|MODEL", help="a 'quant calibrate' folder or a Q/DQ .onnx model")
    parser.add_argument("--output", "-o", required=True, metavar="ENGINE", help="engine file to write (atomically)")
    parser.add_argument("--shapes", dest="shapes", action="append", default=[], help=argparse.SUPPRESS)  # = --shape
    parser.add_argument("--shape", dest="shapes", action="append", default=[],
                        metavar="NAME:DxDxD[/DxDxD/DxDxD]",
                        help="shape of an input (repeatable): one shape, or MIN/OPT/MAX for the optimization profile, "
                             "e.g. input:8x3x224x224 or input:1x3x224x224/8x3x224x224/32x3x224x224 "
                             "(default: from the model and the calibration data's observed shapes)")
    parser.add_argument("--max-batch", type=V.count(1, "max-batch"), default=32, help="max batch of the default profile (default 32)")
    parser.add_argument("--workspace", type=V.count(1, "workspace"), metavar="MIB", help="builder workspace limit in MiB")
    parser.add_argument("--trt-version", type=V.trt_version, metavar="X.Y.Z",
                        help="TensorRT version the command targets where none is installed (default: the one "
                             "'quant calibrate --trt-version' recorded in quant.json, else 10.3.0)")
    parser.add_argument("--implicit", action="store_true",
                        help="TensorRT <= 10 only: build the FP32 model with INT8 and the calibration.cache "
                             "(legacy implicit quantization); refused on TensorRT 11")
    add_force_option(parser)
    parser.add_argument("--print-command", "--dry-run", dest="print_command", action="store_true",
                        help="print the trtexec command alone on stdout and exit 0 (builds nothing; needs no TensorRT)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.build import build, plan_build
    from quant.core.io import check_output_file, writing

    plan = plan_build(args.target, args.output, shapes=args.shapes, workspace_mib=args.workspace,
                      implicit=args.implicit, max_batch=args.max_batch, trt_version=args.trt_version)
    target = Path(args.target)
    reads = [target / n for n in ("model.int8.onnx", "calibration.cache", "quant.json")] if target.is_dir() else [target]
    reads += [plan.onnx_path] + ([plan.implicit_cache] if plan.implicit_cache else [])  # --implicit: the FP32 model
    if args.print_command:  # the command is not run here, but it must not write its engine over what it reads
        check_output_file(args.output, input_files(*reads), True, "--output")
        _notes(plan)
        stdout(shlex.join(plan.command))
        return 0
    for path in (args.output, f"{args.output}.log"):  # the engine, and trtexec's log beside it
        check_output_file(path, input_files(*reads), args.force, "--output")  # never over what the build reads
    with writing(force=args.force):
        plan = build(args.target, args.output, plan=plan)  # on bad input: the Error and Hint lines alone
    _notes(plan)
    stdout(f"built {args.output} with TensorRT {'.'.join(map(str, plan.version))} ({plan.via})")
    if plan.via == "trtexec":
        stdout(f"command: {shlex.join(plan.command)}")
    return 0


def _notes(plan) -> None:
    from quant.cli.common import stderr

    for note in plan.notes:
        stderr(note if note.startswith("warning:") else f"note: {note}")
