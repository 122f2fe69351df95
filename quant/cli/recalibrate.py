"""quant recalibrate: new ranges and a new model from a saved histograms.npz, without running the model."""
from __future__ import annotations

import os
from pathlib import Path

from quant.cli.common import input_files, print_warnings, stdout
from quant.core.config import METHODS, REDUCE_RANGE, TARGETS
from quant.cli import validators as V
from quant.core.text import printable


def register(subparsers) -> None:
    parser = subparsers.add_parser("recalibrate", help="apply other methods to saved histograms (no model run)",
                                   description="Read histograms.npz and quant.json from a calibration folder and "
                                               "write new artifacts for the given method(s).")
    parser.add_argument("folder", help="a folder written by 'quant calibrate' (one method's folder)")
    parser.add_argument("--method", required=True, metavar="M[,M...]", help=f"method(s): {', '.join(METHODS)}")
    parser.add_argument("--output", "-o", metavar="DIR", help="output folder (default: FOLDER-<method>)")
    parser.add_argument("--model", help="the FP32 model, if it moved since calibration (sha256 is checked)")
    parser.add_argument("--percentile", type=V.percentile, help="percentile for --method percentile")
    parser.add_argument("--target", choices=TARGETS, help="which model(s) to write (default: the folder's own)")
    parser.add_argument("--reduce-range", choices=REDUCE_RANGE, help="ort-cpu: 7-bit weights (default: the folder's own)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.errors import QuantError
    from quant.core.io import check_output_dir
    from quant.pipeline import recalibrate

    methods = tuple(m.strip() for m in args.method.split(",") if m.strip())
    overrides = {} if args.percentile is None else {"percentile": args.percentile}
    overrides.update({k: v for k, v in (("target", args.target), ("reduce_range", args.reduce_range)) if v})
    folder = Path(os.path.realpath(args.folder))  # 'quant recalibrate .' names the output after the folder itself
    if not folder.name:
        raise QuantError(f"cannot name an output after '{args.folder}'", hint="pass --output DIR")
    output = args.output or str(folder.parent / f"{folder.name}-{'-'.join(methods)}")
    inputs = tuple(input_files(args.folder, args.model))
    check_output_dir(output, protect=inputs)  # fail fast
    result = recalibrate(args.folder, methods, model=args.model, **overrides)
    folders = result.save(output, protect=inputs)
    print_warnings(result)
    for method, out in zip(result.methods, folders):
        stdout(f"{method}: {printable(out)}/{', '.join(result.files())}")  # a path on one line
    from quant.cli.calibrate import clipping_warnings

    clipping_warnings(result)
    return 0
