"""quant gate: the release check. Exit 0 when INT8 is within the bound, 1 when not, 2 on bad input."""
from __future__ import annotations

import argparse

from quant.cli.common import (add_data_options, add_device_option, add_force_option, add_output_options, input_files, input_map_from_args,
                              preprocess_from_args, stdout)
from quant.core.errors import QuantError
from quant.cli import validators as V


STARTS = ("metric", "eval_fn")  # the options that start a gated score; the bounds after them belong to it


class _CheckOption(argparse.Action):
    """--metric starts a gated metric; the bounds after it (--max-drop, --relative, --min-value,
    --lower-is-better) belong to it. Bounds given before the first --metric belong to the first."""

    def __call__(self, parser, namespace, values, option_string=None):
        checks = list(getattr(namespace, "checks", None) or [])
        value = (True if self.const is None else self.const) if self.nargs == 0 else values
        if self.dest in STARTS:  # --metric or --eval-fn: a gated score
            if checks and not any(checks[-1].get(key) is not None for key in STARTS):
                checks[-1][self.dest] = value
            else:
                checks.append({self.dest: value})
        else:
            if not checks:
                checks.append({"metric": None})
            if self.dest in checks[-1]:
                which = checks[-1].get("metric") or "the first metric"
                raise QuantError(f"{option_string} is given twice for {which}",
                                 hint="give each --metric its own bounds after it: --metric top1 --max-drop 0.5 "
                                      "--metric sqnr --min-value 30")
            checks[-1][self.dest] = value
        namespace.checks = checks
        setattr(namespace, self.dest, value)  # the last value, for commands that take one metric


def add_metric_options(parser, with_bound: bool = True) -> None:
    parser.add_argument("--labels", help="labels: a .npy/.txt/.csv file or a column/key of the data (default: a 'label' "
                                         "column, or the data's one ClassLabel column)")
    parser.add_argument("--metric", action=_CheckOption, default=None, type=V.metric,
                        help="top1, topK (e.g. top5), agreement, cosine, sqnr, module:function or file.py:function (default top1); "
                             "METRIC@OUTPUT scores that output" + ("; repeat it to gate several metrics, each "
                                                                    "followed by its bounds" if with_bound else ""))
    parser.add_argument("--lower-is-better", action=_CheckOption, nargs=0, default=None,
                        help="for a module:function metric or an --eval-fn score that is an error rate (or set "
                             "function.higher_is_better)")
    from quant.cli.eval_fn import add_eval_fn_options

    add_eval_fn_options(parser, _CheckOption, gated=with_bound)
    add_output_options(parser)
    parser.set_defaults(checks=None)
    if with_bound:
        parser.add_argument("--max-drop", type=V.number(0, None, name="max-drop"), action=_CheckOption, metavar="X",
                            help="largest allowed drop of the metric before it: in points for percent metrics "
                                 "(0.5 = half a point of top-1), else in the metric's unit")
        parser.add_argument("--relative", action=_CheckOption, nargs=0, default=False,
                            help="--max-drop is a percent of the FP32 value")
        parser.add_argument("--min-value", type=V.number(name="min-value"), action=_CheckOption, metavar="V",
                            help="INT8 must reach V (e.g. --metric sqnr --min-value 30)")


def single_metric(args, command: str) -> str:
    """The one metric of a command that scores one (sensitivity, fallback); several are refused."""
    metrics = [c.get("metric") for c in (args.checks or []) if c.get("metric")]
    functions = [c.get("eval_fn") for c in (args.checks or []) if c.get("eval_fn")]
    if functions and (metrics or len(functions) > 1):
        raise QuantError(f"'quant {command}' scores one metric, got {', '.join(metrics + functions)}",
                         hint="pass either --metric or --eval-fn, once (quant gate checks several in one run)")
    if len(metrics) > 1:
        raise QuantError(f"'quant {command}' scores one metric, got {len(metrics)}: {', '.join(metrics)}",
                         hint=f"pass --metric once (quant gate checks several in one run)")
    return metrics[0] if metrics else "top1"


def data_options(args) -> dict:
    return {"batch_size": args.batch_size, "num_samples": args.num_samples, "seed": args.seed,
            "input_map": input_map_from_args(args), "preprocess": preprocess_from_args(args), "split": args.split}


def register(subparsers) -> None:
    parser = subparsers.add_parser("gate", help="pass/fail release check on the INT8 accuracy drop (exit 0/1/2)",
                                   description="Score FP32 and INT8 on held-out data (one pass each) and check every "
                                               "--metric against its own bounds. Exit code 0: all within their "
                                               "bounds; 1: not; 2: bad input (the JSON and JUnit files then hold the "
                                               "error). Writes JSON and JUnit XML for CI systems.")
    parser.add_argument("fp32_model")
    parser.add_argument("int8_model")
    add_data_options(parser)
    add_metric_options(parser)
    parser.add_argument("--runtime", default="emulate", choices=["emulate", "ort-int8", "openvino", "tensorrt"])
    parser.add_argument("--output-json", dest="output_json", metavar="FILE",
                        help="write the result as JSON (atomically), as 'quant eval --output-json'")
    parser.add_argument("--json-out", dest="output_json", help=argparse.SUPPRESS)  # the old name, kept working
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per gated metric)")
    add_force_option(parser)
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.io import json_output, write_file_atomic, writing, xml_output
    from quant.pipeline import gate

    from quant.cli.eval_fn import input_file

    check_output_files(args, {"--output-json": args.output_json, "--junit": args.junit},
                       (args.fp32_model, args.int8_model, args.data, args.labels, args.preprocess,
                        *(input_file(c.get("eval_fn")) for c in args.checks or [])))
    try:
        checks = args.checks or [{"metric": None}]
        if all(c.get("max_drop") is None and c.get("min_value") is None for c in checks):
            raise QuantError("the gate needs a bound", hint="pass --max-drop X (and --relative) or --min-value V")
        for check in checks:
            refuse_relative_without_max_drop(check.get("relative"), check.get("max_drop"),
                                             check.get("metric") or check.get("eval_fn"))
        checks = [c if c.get("eval_fn") is not None else {**c, "metric": c.get("metric") or "top1"} for c in checks]
        result = gate(args.fp32_model, args.int8_model, args.data, checks=checks, labels=args.labels,
                      runtime=args.runtime, output_name=args.output_name, class_axis=args.class_axis,
                      device=args.device, **data_options(args))
    except QuantError as exc:
        write_error_reports(args, exc)
        raise
    with writing(force=args.force):
        if args.output_json:
            write_file_atomic(args.output_json, json_output(result.to_json()))
        if args.junit:
            write_file_atomic(args.junit, xml_output(result.to_junit()))
    stdout(result.format_text())
    return 0 if result else 1


def refuse_relative_without_max_drop(relative, max_drop, metric=None) -> None:
    """--relative makes a --max-drop a percent of FP32; alone (with --min-value only) it would be ignored."""
    if relative and max_drop is None:
        which = f" of {metric}" if metric else ""
        raise QuantError(f"--relative makes --max-drop a percent of FP32, but the bounds{which} have no --max-drop: "
                         "it would be ignored", hint="add --max-drop X after it, or drop --relative")


def check_output_files(args, outputs: dict, inputs) -> None:
    """Fail fast, before the evaluation: each output may be written, and no two name the same file."""
    import os

    from quant.core.errors import QuantError
    from quant.core.io import check_output_file

    given = {flag: path for flag, path in outputs.items() if path is not None}
    seen = {}
    for flag, path in given.items():
        real = os.path.realpath(path) if "\0" not in str(path) else str(path)
        if real in seen:
            raise QuantError(f"{seen[real]} and {flag} name the same file '{path}'", hint="give each output its own path")
        seen[real] = flag
        check_output_file(path, input_files(*inputs), args.force, flag)


def write_error_reports(args, exc: QuantError, extra_protected: list[str] = ()) -> None:
    """On bad input (exit 2) still write gate.json and the JUnit file with the error, so CI shows a report.

    Never onto one of the command's inputs; a file that cannot be written is skipped (the error is the news)."""
    from quant.core.io import check_output_file, json_output, write_file_atomic, writing, xml_output
    from quant.eval.gate import error_json, error_junit

    inputs = [getattr(args, name, None) for name in ("fp32_model", "int8_model", "data", "labels", "preprocess")]
    inputs += list(extra_protected)
    protected = [p for p in inputs if isinstance(p, str)]
    for path, text in ((getattr(args, "output_json", None), lambda: json_output(error_json(exc.message, exc.hint))),
                       (getattr(args, "junit", None), lambda: xml_output(error_junit(exc.message, exc.hint)))):
        if not path:
            continue
        try:  # the same checks as a successful run's outputs: never an input, never a file quant did not write
            check_output_file(path, input_files(*protected), bool(getattr(args, "force", False)))
            with writing(force=bool(getattr(args, "force", False))):
                write_file_atomic(path, text())
        except (QuantError, OSError, ValueError):
            pass


def write_error_reports_from_argv(argv: list[str], exc: QuantError) -> None:
    """The command line did not parse: find --output-json/--junit in it and write the error reports there."""
    import argparse as _argparse
    from pathlib import Path

    finder = _argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # "--output" is no --output-json: refused
    finder.add_argument("--output-json", "--json-out", dest="output_json")
    finder.add_argument("--junit")
    try:
        found, rest = finder.parse_known_args(argv)
    except SystemExit:
        return
    inputs = [token for token in rest if not token.startswith("-") and Path(token).exists()]
    args = _argparse.Namespace(output_json=found.output_json, junit=found.junit, fp32_model=None, int8_model=None,
                               data=None, labels=None)
    write_error_reports(args, exc, extra_protected=inputs)
