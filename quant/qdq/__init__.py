"""Q/DQ placement for TensorRT, Q/DQ insertion, and the legacy calibration cache."""
from quant.qdq.cache import format_cache, read_cache
from quant.qdq.insert import build_qdq_model, scale_from_amax
from quant.qdq.placement import Layer, QuantPlan, WeightSpec, plan_qdq

__all__ = ["Layer", "QuantPlan", "WeightSpec", "build_qdq_model", "format_cache", "plan_qdq", "read_cache",
           "scale_from_amax"]
