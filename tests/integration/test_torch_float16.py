"""A float16 model on the PyTorch backend (a stranger's model): its Q/DQ model and the Q/DQ switch run there as
ONNX Runtime emulates them (float16 scales, float32 arithmetic, float16 results), no dtype clash."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import quant  # noqa: E402
from float_models import float16_conv  # noqa: E402
from quant import pipeline  # noqa: E402
from quant.backends.onnxruntime import OrtRunner  # noqa: E402
from quant.backends.torch.runner import TorchRunner  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def fp16(tmp_path_factory):
    d = tmp_path_factory.mktemp("fp16-torch")
    model = float16_conv(d / "model.fp16.onnx")
    rng = np.random.default_rng(1)
    np.savez(d / "calib.npz", x=rng.standard_normal((48, 3, 12, 12)).astype(np.float16))
    result = quant.calibrate(model, d / "calib.npz", methods=("minmax",), device="cpu")
    return result, {"x": rng.standard_normal((32, 3, 12, 12)).astype(np.float16)}


def _close(a, b, reference, what):
    """Same dtype; the torch-vs-ORT difference at least 10 dB below the INT8 error itself. float16 sums in another
    order land on other float16 roundings and on other INT8 rounding ties, so a few elements differ by a step."""
    assert a.dtype == b.dtype == np.float16, what
    a, b, reference = (v.astype(np.float64) for v in (a, b, reference))
    difference, int8_error = float(np.sum((a - b) ** 2)), float(np.sum((b - reference) ** 2))
    assert int8_error > 0 and difference <= 0.1 * int8_error, (what, difference, int8_error)
    assert np.mean(np.abs(a - b) <= 2e-3 * np.abs(b).max()) >= 0.95, what


def test_float16_qdq_model_runs_on_torch_as_ort_emulates_it(fp16):
    result, feeds = fp16
    qdq = result.qdq_model("minmax")
    got, want = TorchRunner(qdq, DEVICE).run(feeds)[0], OrtRunner(qdq, mode="emulate").run(feeds)[0]
    _close(got, want, OrtRunner(result.model).run(feeds)[0], "float16 Q/DQ model")


def test_float16_qdq_switch_equals_ort_emulate_of_each_variant(fp16):
    result, feeds = fp16
    make = pipeline.qdq_runner_factory(result, "minmax", device="cpu")
    layers = [layer.node for layer in result.plan.layers]
    reference = OrtRunner(result.model).run(feeds)[0]
    for keep in (frozenset(), frozenset(layers[:1]), frozenset(layers[1:])):
        got = make(keep).run(feeds)[0]
        want = OrtRunner(result.qdq_model("minmax", keep_float=keep), mode="emulate").run(feeds)[0]
        _close(got, want, reference, f"keep_float={sorted(keep)}")
