"""quant sensitivity: every quantized layer scored both ways plus a one-pass local score, ranked."""
from __future__ import annotations

from pathlib import Path

from quant.cli.common import (add_data_options, add_device_option, add_force_option, add_ray_options, input_files,
                              ray_from_args, stdout)
from quant.cli.gate import add_metric_options, data_options, single_metric
from quant.core.text import printable


def register(subparsers) -> None:
    parser = subparsers.add_parser("sensitivity", help="rank layers by how much INT8 costs (both directions)",
                                   description="For every quantized layer: the metric with only it quantized, with "
                                               "all but it quantized, and its local output SQNR from one pass. "
                                               "Writes sensitivity.json and sensitivity.csv.")
    parser.add_argument("fp32_model")
    parser.add_argument("--calibration", required=True, metavar="DIR", help="a folder written by 'quant calibrate'")
    add_data_options(parser)
    add_metric_options(parser, with_bound=False)
    parser.add_argument("--output", "-o", metavar="DIR", help="where to write (default: the calibration folder)")
    parser.add_argument("--runtime", default="emulate", choices=["emulate", "ort-int8", "openvino"],
                        help="where the INT8 variants run (default: emulate, TensorRT's arithmetic in float)")
    add_force_option(parser)
    add_ray_options(parser)
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.io import check_output_file, json_output, write_file_atomic, writing
    from quant.pipeline import sensitivity

    out = Path(args.output or args.calibration)
    inputs = input_files(args.fp32_model, args.data, args.labels, args.preprocess, _eval_file(args))  # (it writes into --calibration)
    for name in ("sensitivity.json", "sensitivity.csv"):  # fail fast, before the evaluations
        check_output_file(out / name, inputs, args.force)
    from quant.cli.eval_fn import eval_fn_from_args

    metric = single_metric(args, "sensitivity")
    report = sensitivity(args.fp32_model, args.calibration, args.data, metric=metric, eval_fn=eval_fn_from_args(args),
                         labels=args.labels, lower_is_better=args.lower_is_better, progress=True, runtime=args.runtime,
                         output_name=args.output_name, class_axis=args.class_axis, ray=ray_from_args(args),
                         device=args.device,
                         **data_options(args))
    with writing(force=args.force, register=True):  # a folder output: its files are listed in its manifest
        from quant.cli.fallback import calibration_identity

        record = dict(report.to_json(), calibration=calibration_identity(args.calibration))  # checked by fallback
        write_file_atomic(out / "sensitivity.json", json_output(record))
        write_file_atomic(out / "sensitivity.csv", report.to_csv().encode("utf-8"))  # UTF-8 names whatever the locale
    stdout(report.format_text())
    stdout(f"wrote {printable(out / 'sensitivity.json')} and {printable(out / 'sensitivity.csv')}")
    return 0


def _eval_file(args):
    """The --eval-fn file, protected like the other inputs (None for a module)."""
    from quant.cli.eval_fn import eval_fn_from_args, input_file

    return input_file(eval_fn_from_args(args))
