"""The ``quant`` command's entry point: a Ctrl-C while the CLI's modules still load is an interrupt as well.

``quant.cli.main`` imports numpy and every subcommand; a KeyboardInterrupt raised during those imports came
before main() could catch it and printed a traceback. Here it gets main()'s own line and exit code 130.
"""
from __future__ import annotations

import sys


def run() -> int:
    try:
        from quant.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted: nothing was written.\n")
        return 130
    return main()
