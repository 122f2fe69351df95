"""FP32-vs-INT8 evaluation: metrics and the side-by-side comparison."""
from quant.eval.compare import EvalReport, compare
from quant.eval.metrics import OutputStats, TopK, sqnr_db

__all__ = ["EvalReport", "OutputStats", "TopK", "compare", "sqnr_db"]
