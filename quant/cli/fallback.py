"""quant fallback: return the most sensitive layers to float until the accuracy gate holds."""
from __future__ import annotations

import sys
from pathlib import Path

from quant.cli.common import (add_data_options, add_device_option, add_ray_options, input_files, print_warnings,
                              ray_from_args, stdout, stderr)
from quant.cli.gate import add_metric_options, data_options, single_metric
from quant.cli import validators as V
from quant.core.text import printable


def register(subparsers) -> None:
    parser = subparsers.add_parser("fallback", help="mixed precision: keep the fewest layers in float to pass a bound",
                                   description="Greedily return the most sensitive layers to float (re-ranking when a "
                                               "step does not help) until the gate holds; writes the final Q/DQ model, "
                                               "the float layers and the path into --output. Exit 0 when the bound is "
                                               "met, 1 when no set of layers meets it.")
    parser.add_argument("fp32_model")
    parser.add_argument("--calibration", required=True, metavar="DIR", help="a folder written by 'quant calibrate'")
    add_data_options(parser)
    add_metric_options(parser)
    parser.add_argument("--output", "-o", required=True, metavar="DIR")
    parser.add_argument("--max-float-layers", type=V.count(0, "max-float-layers"), metavar="N", help="give up after N layers in float")
    parser.add_argument("--naive", action="store_true", help="also report the 'first/last N layers' search")
    add_ray_options(parser)
    parser.add_argument("--search", default="bisect", choices=["bisect", "greedy"],
                        help="bisect (default): bisection over the ranking, screened on a subset of the held-out "
                             "data and confirmed on all of it, a bounded number of evaluations; greedy: one layer "
                             "at a time, re-ranking by trying every layer when a step does not help")
    parser.add_argument("--refine-rounds", type=V.count(0, "refine-rounds"), metavar="N",
                        help="bisect: at most N rounds after the first bisection, then keep every remaining "
                             "candidate in float (bounds the cost where many layers matter; default: no bound)")
    parser.add_argument("--sensitivity", metavar="FILE",
                        help="rank layers by this sensitivity.json (default: CALIBRATION/sensitivity.json for the "
                             "same metric if present, else the one-pass local SQNR)")
    add_device_option(parser)
    parser.set_defaults(run=run)


def calibration_identity(folder) -> dict:
    """What sensitivity.json records of the calibration it ranked: the folder and the sha256 of its quant.json."""
    from quant.core.onnx_model import file_hash

    folder = Path(folder)
    return {"path": str(folder.resolve()), "quant_json_sha256": file_hash(folder / "quant.json")}


def saved_ranking(path: Path, metric: str | None, calibration: Path | None = None) -> list[str] | None:
    """The layer ranking of 'quant sensitivity' in ``path`` when it was computed for ``metric`` (any metric when
    None); every field checked: one Error line for a damaged file, or one that ranked another calibration than
    ``calibration`` (when given). None when there is no such file."""
    from quant.core.errors import QuantError
    from quant.core.readback import RANKING_SPEC, read_report_input

    if not path.exists():
        return None
    saved = read_report_input(path, RANKING_SPEC)
    recorded = saved.get("calibration")
    if (calibration is not None and recorded
            and recorded["quant_json_sha256"] != calibration_identity(calibration)["quant_json_sha256"]):
        raise QuantError(f"'{path}' ranks the layers of the calibration '{recorded['path']}', not of '{calibration}' "
                         "(their quant.json differ)",
                         hint="run 'quant sensitivity' on this calibration, or drop --sensitivity")
    if metric is not None and saved["metric"] != metric:
        return None
    return list(dict.fromkeys(layer["node"] for layer in saved["layers"]))


def run(args) -> int:
    from quant.core.errors import QuantError
    from quant.core.io import check_output_dir, json_output
    from quant.pipeline import fallback

    if args.max_drop is None and args.min_value is None:
        raise QuantError("fallback needs a bound", hint="pass --max-drop X (and --relative) or --min-value V")
    from quant.cli.gate import refuse_relative_without_max_drop

    refuse_relative_without_max_drop(args.relative, args.max_drop)
    if args.refine_rounds is not None and args.search != "bisect":
        raise QuantError(f"--refine-rounds bounds the bisect search, but --search is {args.search}: it would be ignored",
                         hint="drop --refine-rounds, or use --search bisect (the default)")
    from quant.cli.eval_fn import eval_fn_from_args, input_file

    metric = single_metric(args, "fallback")
    eval_fn = eval_fn_from_args(args)
    metric = eval_fn or metric  # the name a saved sensitivity.json gives it
    inputs = tuple(input_files(args.fp32_model, args.data, args.calibration, args.labels, args.preprocess,
                               args.sensitivity, input_file(eval_fn)))
    check_output_dir(args.output, protect=inputs)  # fail fast, before the search
    ranking = _ranking(args, metric)

    def log(line: str) -> None:  # one line per step, flushed, whether or not stderr is a terminal
        stderr(line)
        sys.stderr.flush()

    result, outcome = fallback(args.fp32_model, args.calibration, args.data, metric=metric, eval_fn=eval_fn,
                               max_drop=args.max_drop, relative=args.relative, min_value=args.min_value,
                               labels=args.labels, lower_is_better=args.lower_is_better, ranking=ranking,
                               naive=args.naive, max_float=args.max_float_layers, progress=True,
                               output_name=args.output_name, class_axis=args.class_axis, ray=ray_from_args(args),
                               search=args.search, log=log, device=args.device, refine_rounds=args.refine_rounds,
                               **data_options(args))
    stdout(outcome.format_text())
    if not outcome:
        stderr(f"No set of float layers met the bound ({outcome.criterion}); nothing was written.")
        return 1
    keep = [layer["node"] for layer in outcome.float_layers]
    result.save(args.output, protect=inputs, keep_float=keep,
                extra_files={"fallback.json": json_output(outcome.to_json())})
    print_warnings(result, keep_float=keep)
    stdout(f"wrote {printable(args.output)}/model.int8.onnx with {len(keep)} layer(s) in float: "
           f"{', '.join(printable(n) for n in keep) or 'none'}")  # names and paths on one line
    return 0


def _ranking(args, metric: str) -> list[str] | None:
    """Layers most sensitive first from ``--sensitivity`` (whatever its metric), else from the calibration
    folder's sensitivity.json when it was computed for ``metric``."""
    if args.sensitivity is None:
        return saved_ranking(Path(args.calibration) / "sensitivity.json", metric, Path(args.calibration))
    path = Path(args.sensitivity)
    if not path.exists():
        from quant.core.errors import QuantError

        raise QuantError(f"sensitivity file '{path}' does not exist", hint="write one with 'quant sensitivity'")
    return saved_ranking(path, None, Path(args.calibration))
