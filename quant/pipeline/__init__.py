"""Wires the stages: data -> collect -> calibrators -> Q/DQ model and cache -> evaluation.

The one place that picks a backend (ONNX Runtime, or TensorRT where asked). The CLI and the Python API both
call into here: ``calibration`` (calibrate, recalibrate, save) and ``evaluation`` (eval, gate, sensitivity,
fallback).
"""
from quant.pipeline.calibration import (CalibrationResult, calibrate, compute_ranges, load_calibration, prepare_model,
                                        recalibrate, save_model)
from quant.pipeline.evaluation import (RUNTIMES, evaluate, fallback, find_labels, gate, load_heldout, qdq_runner_factory,
                                       sensitivity)
from quant.pipeline.folder_eval import evaluate_folder

__all__ = ["RUNTIMES", "CalibrationResult", "calibrate", "compute_ranges", "evaluate", "evaluate_folder", "fallback", "find_labels", "gate",
           "load_calibration", "load_heldout", "prepare_model", "qdq_runner_factory", "recalibrate", "save_model",
           "sensitivity"]
