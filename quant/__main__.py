import sys

from quant.cli.entry import run

sys.exit(run())
