"""quant report: report.md and a self-contained report.html for a calibration folder."""
from __future__ import annotations

import re
from pathlib import Path

from quant.cli.common import add_force_option, stdout
from quant.cli import validators as V
from quant.core.text import printable


PLOT_NAMES = re.compile(r"(methods_)?histogram_\d+\.png|sensitivity\.png|fallback\.png")


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write report.md and report.html (with plots) for a folder",
                                   description="Histograms with every method's threshold, the FP32-vs-INT8 table "
                                               "(eval.json / gate.json in the folder), per-layer sensitivity "
                                               "(sensitivity.json) and the fallback path (fallback.json).")
    parser.add_argument("folder", help="a folder written by 'quant calibrate' or 'quant fallback'")
    parser.add_argument("--output", "-o", metavar="DIR", help="where to write (default: the folder)")
    parser.add_argument("--worst", type=V.count(0, "worst"), default=6, help="how many tensors' histograms to plot (default 6)")
    add_force_option(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.io import check_output_file, writing
    from quant.report import write_report

    out = Path(args.output or args.folder)
    # the plot names a report writes (quant.report.render / methods); other files in plots/ are left alone
    plots = sorted(p for p in (out / "plots").glob("*.png") if PLOT_NAMES.fullmatch(p.name)) \
        if (out / "plots").is_dir() else []
    for path in [out / "report.md", out / "report.html", *plots]:  # fail fast: nothing half-written
        check_output_file(path, (), args.force)  # names that no input of the report has
    with writing(force=args.force, register=True):  # a folder output: its files are listed in its manifest
        md, page = write_report(args.folder, args.output, args.worst, log=_stage_line)
    stdout(f"wrote {printable(md)} and {printable(page)}")  # paths on one line
    return 0


def _stage_line(line: str) -> None:
    """One line per report stage on stderr, flushed (a CI log shows where it is)."""
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()
