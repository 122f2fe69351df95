"""quant: INT8 post-training quantization and calibration for TensorRT.

>>> import quant
>>> result = quant.calibrate("model.onnx", "calibration.npz", methods=("entropy",))
>>> result.save("out")
>>> print(quant.evaluate("model.onnx", "out/model.int8.onnx", "heldout.npz").format_text())

``import quant`` stays light: onnxruntime, torch and datasets are imported only when used.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["CalibrationConfig", "QuantError", "calibrate", "evaluate", "evaluate_folder", "fallback", "gate",
           "load_calibration", "recalibrate", "sensitivity"]
_PIPELINE = ("calibrate", "evaluate", "evaluate_folder", "recalibrate", "gate", "sensitivity", "fallback",
             "load_calibration", "load_heldout", "CalibrationResult")

from quant.core.config import CalibrationConfig
from quant.core.errors import QuantError


def __getattr__(name: str):
    if name in _PIPELINE:
        from quant import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
