"""Features of one round that meet in one command: each combination gives what each gives alone."""
import numpy as np
import pytest

import quant
from quant.backends.onnxruntime import OrtRunner
from quant.pipeline.evaluation import qdq_runner_factory
from test_bias_correction import _data, conv_relu_conv


@pytest.mark.parametrize("device", ["ort", "cpu"])
def test_search_variants_of_a_bias_corrected_method_are_its_written_models(tmp_path, device):
    """Sensitivity and fallback score variants on one switched graph built from the FP32 model; a bias-corrected
    method must score the corrected biases (a layer in float keeping its own), as its written Q/DQ model does."""
    if device == "cpu":
        pytest.importorskip("torch")
    model = conv_relu_conv(tmp_path / "m.onnx")
    np.save(tmp_path / "cal.npy", _data((4, 10, 10), 96, seed=2))
    result = quant.calibrate(str(model), tmp_path / "cal.npy", methods=("percentile",), percentile=99.0,
                             bias_correction=True)
    assert result.manifest("percentile")["bias_correction"]["applied"]
    x = {"x": _data((4, 10, 10), 16, seed=5)}
    make = qdq_runner_factory(result, "percentile", device=device)
    for keep_float in (frozenset(), frozenset({"conv1"}), frozenset({"conv2"})):
        scored = make(keep_float).run(x)[0]
        written = OrtRunner(result.qdq_model("percentile", keep_float=keep_float), mode="emulate").run(x)[0]
        if device == "ort":
            np.testing.assert_array_equal(scored, written)
        else:  # PyTorch's convolution sums in another order: within fp32 rounding of the same model
            np.testing.assert_allclose(scored, written, rtol=1e-5, atol=1e-5)


def _report(top1=None, sqnr=None):
    from types import SimpleNamespace

    task = {} if top1 is None else {"top1": {"int8": top1}}
    return SimpleNamespace(task=task, outputs={"ids": {"sqnr_db": None}, "logits": {"sqnr_db": sqnr}}, worst_output="")


def test_a_methods_folder_names_every_method_that_ties_for_the_highest_score():
    from quant.pipeline.folder_eval import FolderEval

    folder = FolderEval.__new__(FolderEval)
    folder.reports = {"auto": _report(99.07), "entropy": _report(99.07), "minmax": _report(98.89)}
    assert folder.best() == ("auto, entropy (tied)", "top1", "99.07%")  # it named 'auto' alone
    folder.reports = {"auto": _report(sqnr=30.0), "mse": _report(sqnr=31.5)}  # no labels: the first output with
    assert folder.best() == ("mse", "SQNR of output 'logits'", "31.50 dB")  # an SQNR (an int64 'ids' has none)
