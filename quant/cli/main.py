"""The `quant` command: a table of contents of subcommands, one module each."""
from __future__ import annotations

import argparse
import signal
import sys

from quant.cli import bench, build, calibrate, eval as eval_cmd, fallback, gate, recalibrate, report, sensitivity
from quant.cli.common import Parser, stderr, unknown_arguments
from quant.core.errors import QuantError
from quant.core.text import printable

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
    if hasattr(signal, "SIGHUP"):  # a closed terminal or ssh session: clean up as for SIGTERM
        signal.signal(signal.SIGHUP, _terminate)
    try:
        args = _parse(parser, argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.run(args) or 0)
    except QuantError as exc:
        stderr(f"Error: {printable(exc.message)}")  # one line whatever names the message quotes
        if exc.hint:
            stderr(f"Hint: {printable(exc.hint)}")
        return 2
    except KeyboardInterrupt:
        stderr("Interrupted: nothing was written.")
        return 130
    except BrokenPipeError:  # `quant ... | head`: the reader left; end quietly, as Unix tools do (128 + SIGPIPE)
        _silence_stdout()
        return 141
    except OSError as exc:  # the safety net: the common cases already have their own message
        from quant.core.oserrors import os_error

        error = os_error(exc, "access", exc.filename if exc.filename is not None else "?")
        stderr(f"Error: {error.message}")
        stderr(f"Hint: {error.hint}")
        return 2
    except ValueError as exc:
        if "null byte" not in str(exc):
            raise
        stderr(f"Error: a path contains a NUL byte ({exc})")
        stderr("Hint: paths cannot contain NUL bytes")
        return 2


def _parse(parser: Parser, argv: list[str] | None):
    """Parse; an unknown option is reported by the subcommand it was given to (its own --help)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        command = choices.get(argv[0]) if argv else None
        if command is not None:  # before argparse's own checks: '--out DIR' is not 'missing --output'
            options = command._option_string_actions
            given = argv[1:argv.index("--")] if "--" in argv else argv[1:]
            unknown = [t for t in given if t.startswith("--") and t.split("=", 1)[0] not in options]
            if unknown:
                unknown_arguments(command, unknown, choices)
        args, extras = parser.parse_known_args(argv)
        if extras:
            unknown_arguments(choices.get(getattr(args, "command", None)) or parser, extras, choices)
    except QuantError as exc:
        if argv and argv[0] == "gate":  # CI still gets its report files, holding the error
            gate.write_error_reports_from_argv(argv[1:], exc)
        raise
    return args


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail on the closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
