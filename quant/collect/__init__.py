"""Run the FP32 model over the calibration data and stream a histogram for every tensor to calibrate."""
from quant.collect.collector import AutoBatchSize, CollectionResult, collect, merge_collections

__all__ = ["AutoBatchSize", "CollectionResult", "collect", "merge_collections"]
