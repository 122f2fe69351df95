"""quant fallback: return the most sensitive layers to float until the accuracy gate holds."""
from __future__ import annotations

import json
from pathlib import Path

from quant.cli.common import add_data_options, add_device_option, stdout, stderr
from quant.cli.gate import add_metric_options, data_options


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
    parser.add_argument("--max-float-layers", type=int, metavar="N", help="give up after N layers in float")
    parser.add_argument("--naive", action="store_true", help="also report the 'first/last N layers' search")
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.errors import QuantError
    from quant.core.io import check_output_dir, dumps
    from quant.pipeline import fallback

    if args.max_drop is None and args.min_value is None:
        raise QuantError("fallback needs a bound", hint="pass --max-drop X (and --relative) or --min-value V")
    check_output_dir(args.output, protect=(Path(args.fp32_model), Path(args.data), Path(args.calibration)))
    ranking = None
    sensitivity_file = Path(args.calibration) / "sensitivity.json"
    if sensitivity_file.exists():  # a ranking computed by 'quant sensitivity' for the same metric is reused
        saved = json.loads(sensitivity_file.read_text())
        if saved.get("metric") == args.metric:
            ranking = [layer["node"] for layer in saved["layers"]]
    result, outcome = fallback(args.fp32_model, args.calibration, args.data, metric=args.metric,
                               max_drop=args.max_drop, relative=args.relative, min_value=args.min_value,
                               labels=args.labels, lower_is_better=args.lower_is_better, ranking=ranking,
                               naive=args.naive, max_float=args.max_float_layers, progress=True, device=args.device,
                               **data_options(args))
    stdout(outcome.format_text())
    if not outcome:
        stderr(f"No set of float layers met the bound ({outcome.criterion}); nothing was written.")
        return 1
    keep = [layer["node"] for layer in outcome.float_layers]
    result.save(args.output, protect=(Path(args.data),), keep_float=keep,
                extra_files={"fallback.json": dumps(outcome.to_json())})
    stdout(f"wrote {args.output}/model.int8.onnx with {len(keep)} layer(s) in float: {', '.join(keep) or 'none'}")
    return 0
