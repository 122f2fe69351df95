"""Human reports: report.md and a self-contained report.html with matplotlib plots."""
from quant.report.render import write_report

__all__ = ["write_report"]
