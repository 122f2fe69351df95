"""The `quant` command: a table of contents of subcommands, one module each."""
from __future__ import annotations

import argparse
import signal
import sys

from quant.cli import bench, build, calibrate, eval as eval_cmd, fallback, gate, recalibrate, report, sensitivity
from quant.cli.common import Parser, stderr
from quant.core.errors import QuantError

COMMANDS = (calibrate, recalibrate, eval_cmd, gate, sensitivity, fallback, report, build, bench)


def build_parser() -> Parser:
    from quant import __version__

    parser = Parser(prog="quant", description="INT8 post-training quantization and calibration for TensorRT.")
    parser.add_argument("--version", action="version", version=f"quant {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args = _parse(parser, argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.run(args) or 0)
    except QuantError as exc:
        stderr(f"Error: {exc.message}")
        if exc.hint:
            stderr(f"Hint: {exc.hint}")
        return 2
    except KeyboardInterrupt:
        stderr("Interrupted: nothing was written.")
        return 130


def _parse(parser: Parser, argv: list[str] | None):
    """Parse; an unknown option is reported by the subcommand it was given to (its own --help)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
            (choices.get(getattr(args, "command", None)) or parser).error(f"unrecognized arguments: {' '.join(extras)}")
    except QuantError as exc:
        if argv and argv[0] == "gate":  # CI still gets its report files, holding the error
            gate.write_error_reports_from_argv(argv[1:], exc)
        raise
    return args


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
