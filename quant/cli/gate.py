"""quant gate: the release check. Exit 0 when INT8 is within the bound, 1 when not, 2 on bad input."""
from __future__ import annotations

from quant.cli.common import add_data_options, add_device_option, input_map_from_args, preprocess_from_args, stdout


def add_metric_options(parser, with_bound: bool = True) -> None:
    parser.add_argument("--labels", help="labels: a .npy file or a column/key of the data (default: a 'label' column)")
    parser.add_argument("--metric", default="top1",
                        help="top1, topK (e.g. top5), agreement, cosine, sqnr, or module:function (default top1)")
    parser.add_argument("--lower-is-better", action="store_true", default=None,
                        help="for a module:function metric that is an error rate (or set function.higher_is_better)")
    if with_bound:
        parser.add_argument("--max-drop", type=float, metavar="X",
                            help="largest allowed drop, in the metric's printed units (0.5 = half a point of top-1)")
        parser.add_argument("--relative", action="store_true", help="--max-drop is a percent of the FP32 value")
        parser.add_argument("--min-value", type=float, metavar="V",
                            help="INT8 must reach V (e.g. --metric sqnr --min-value 30)")


def data_options(args) -> dict:
    return {"batch_size": args.batch_size, "num_samples": args.num_samples, "seed": args.seed,
            "input_map": input_map_from_args(args), "preprocess": preprocess_from_args(args), "split": args.split}


def register(subparsers) -> None:
    parser = subparsers.add_parser("gate", help="pass/fail release check on the INT8 accuracy drop (exit 0/1/2)",
                                   description="Score FP32 and INT8 on held-out data. Exit code 0: within the bound; "
                                               "1: not; 2: bad input. Writes JSON and JUnit XML for CI systems.")
    parser.add_argument("fp32_model")
    parser.add_argument("int8_model")
    add_data_options(parser)
    add_metric_options(parser)
    parser.add_argument("--runtime", default="emulate", choices=["emulate", "ort-int8", "openvino", "tensorrt"])
    add_device_option(parser)
    parser.add_argument("--json-out", metavar="FILE", help="write the result as JSON")
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per metric)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.errors import QuantError
    from quant.core.io import dumps, write_file_atomic
    from quant.pipeline import gate

    if args.max_drop is None and args.min_value is None:
        raise QuantError("the gate needs a bound", hint="pass --max-drop X (and --relative) or --min-value V")
    result = gate(args.fp32_model, args.int8_model, args.data, metric=args.metric, max_drop=args.max_drop,
                  relative=args.relative, min_value=args.min_value, labels=args.labels, runtime=args.runtime,
                  lower_is_better=args.lower_is_better, device=args.device, **data_options(args))
    if args.json_out:
        write_file_atomic(args.json_out, dumps(result.to_json()))
    if args.junit:
        write_file_atomic(args.junit, result.to_junit())
    stdout(result.format_text())
    return 0 if result else 1
