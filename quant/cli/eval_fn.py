"""--eval-fn FILE.py:FUNCTION[@SCORE]: a user evaluation function for eval, gate, sensitivity and fallback.

See quant.eval.user_eval for what the function receives (``run``, ``data``) and returns."""
from __future__ import annotations

import argparse

HELP = ("a user evaluation function FILE.py:FUNCTION or MODULE:FUNCTION, called as FUNCTION(run, data): run(feeds) "
        "runs the model being scored and returns its outputs, data is the held-out data (data.samples(), "
        "data.batches(), data.labels); it returns a number or a dict of named numbers (@SCORE picks one)")


def spec(text: str) -> str:
    """FILE.py:FUNCTION[@SCORE] or MODULE:FUNCTION[@SCORE] (the function is loaded later)."""
    from quant.eval.user_eval import split_spec

    base, _ = split_spec(text)
    source, sep, attribute = base.rpartition(":")
    if not sep or not source or not attribute:
        raise argparse.ArgumentTypeError(f"'{text}' is not FILE.py:FUNCTION or MODULE:FUNCTION")
    return text


def add_eval_fn_options(parser, action=None, gated: bool = False) -> None:
    """--eval-fn and --higher-is-better. ``action``: gate's per-check action (the bounds after --eval-fn are
    its own); None: a plain option (eval), with --lower-is-better as well."""
    if action is None:
        parser.add_argument("--eval-fn", metavar="FILE.py:FUNCTION", type=spec, help=HELP)
        parser.add_argument("--lower-is-better", dest="lower_is_better", action="store_const", const=True,
                            default=None, help="the --eval-fn scores are errors (or set FUNCTION.higher_is_better)")
        parser.add_argument("--higher-is-better", dest="lower_is_better", action="store_const", const=False,
                            help="the --eval-fn scores are accuracies (the default)")
        return
    parser.add_argument("--eval-fn", metavar="FILE.py:FUNCTION[@SCORE]", type=spec, action=action,
                        help=HELP + ("; repeat it, or mix it with --metric, each followed by its bounds" if gated
                                     else "; instead of --metric"))
    parser.add_argument("--higher-is-better", dest="lower_is_better", action=action, nargs=0, const=False,
                        help="the metric or --eval-fn score before it is an accuracy (the default)")


def eval_fn_from_args(args) -> str | None:
    """The one --eval-fn of a command that scores one (sensitivity, fallback), or None."""
    found = [c.get("eval_fn") for c in (getattr(args, "checks", None) or []) if c.get("eval_fn")]
    return found[0] if found else None


def input_file(text: str | None) -> str | None:
    """The .py file an --eval-fn names (an input quant must never write over), or None."""
    if not text:
        return None
    from quant.eval.user_eval import split_spec

    source = split_spec(text)[0].rpartition(":")[0]
    return source if source.endswith(".py") or "/" in source else None
