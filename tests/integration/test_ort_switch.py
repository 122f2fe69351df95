"""One emulate session for every Q/DQ variant (a variant is a feed): the same outputs, bit for bit, as each
variant's own Q/DQ model on ONNX Runtime, and the same sensitivity and fallback results."""
import itertools

import numpy as np
import pytest

import quant
from quant import pipeline
from quant.backends import onnxruntime as ort_backend
from quant.backends.ort_switch import SwitchedRunner
from quant.eval.fallback import bisect_fallback, fallback, screening_subset
from quant.eval.heldout import HeldOut
from quant.eval.scoring import get_metric
from quant.eval.sensitivity import sensitivity
from tests.float_models import shared_weight
from tests.models import pooled_residual
from tests.models_accuracy import bert_encoder


def _variants(names):
    """No layer, each layer alone, pairs and triples, every layer but one, and every layer."""
    sets = [frozenset()] + [frozenset([n]) for n in names]
    sets += [frozenset(p) for p in itertools.islice(itertools.combinations(names, 2), 0, None, 3)]
    sets += [frozenset(names[i:i + 3]) for i in range(0, len(names) - 2, 2)]
    sets += [frozenset(names) - {n} for n in names] + [frozenset(names)]
    return sets


def _assert_same_as_each_variant(result, method, feeds_list, switched=True):
    """Every variant's outputs from the search's runner factory equal those of its own Q/DQ model."""
    make = pipeline.qdq_runner_factory(result, method)
    names = [layer.node for layer in result.plan.layers]
    assert isinstance(make(frozenset()), SwitchedRunner) == switched
    variants = _variants(names)
    differs = 0
    for keep in variants:
        own = ort_backend.OrtRunner(result.qdq_model(method, keep_float=keep), mode="emulate")
        runner = make(keep)
        for feeds in feeds_list:
            for a, b in zip(own.run(feeds), runner.run(feeds)):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert np.array_equal(a, b), sorted(keep)
        differs += not np.array_equal(own.run(feeds_list[0])[0], make(frozenset(names)).run(feeds_list[0])[0])
    assert differs > 0  # the switch changes the outputs: variants are not all the FP32 model
    return variants


@pytest.mark.parametrize("storage", ["int8", "float"])
def test_digits_variants_are_bit_identical(digits, storage):
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",), weight_storage=storage)
    held = np.load(digits["heldout"])["input"]
    variants = _assert_same_as_each_variant(result, "entropy", [{"input": held[i:i + 64]} for i in (0, 64, 500)])
    assert sum(1 < len(v) < len(result.plan.layers) for v in variants) >= 10


def test_transformer_variants_are_bit_identical(tmp_path):
    model = bert_encoder(tmp_path / "bert.onnx", layers=2, hidden=128, heads=2)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((16, 40, 128)).astype(np.float32))
    result = quant.calibrate(model, tmp_path / "cal.npz", methods=("mse",))
    assert len(result.plan.layers) == 16
    variants = _assert_same_as_each_variant(result, "mse", [{"x": rng.standard_normal((n, 40, 128)).astype(np.float32)}
                                                            for n in (1, 3)])
    assert sum(1 < len(v) < 16 for v in variants) >= 10


def test_residual_add_and_shared_weight_follow_their_layer(tmp_path):
    rng = np.random.default_rng(1)
    path = pooled_residual(tmp_path / "res.onnx")
    np.save(tmp_path / "x.npy", rng.standard_normal((32, 3, 16, 16)).astype(np.float32))
    result = quant.calibrate(str(path), str(tmp_path / "x.npy"), methods=("minmax",))
    assert result.plan.residuals  # the Add after conv2 gets a residual Q/DQ, switched with conv2
    _assert_same_as_each_variant(result, "minmax", [{"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)}])

    path = shared_weight(tmp_path / "shared.onnx")
    np.save(tmp_path / "s.npy", rng.standard_normal((64, 6)).astype(np.float32))
    result = quant.calibrate(str(path), str(tmp_path / "s.npy"), methods=("minmax",), batch_size=8)
    assert {"mm_left", "mm_right"} <= {layer.node for layer in result.plan.layers}  # both read W
    _assert_same_as_each_variant(result, "minmax", [{"x": rng.standard_normal((5, 6)).astype(np.float32)}])


def _per_variant_factory(result, method):
    """The factory as it was: a Q/DQ model and a session per variant."""
    def make(keep):
        return ort_backend.OrtRunner(result.qdq_model(method, keep_float=keep), mode="emulate")
    return make


def test_sensitivity_and_fallback_equal_per_variant_sessions_with_one_session(digits, monkeypatch):
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",))
    held = np.load(digits["heldout"])
    x, labels = held["input"][:192], held["label"][:192] if "label" in held else None
    reference = ort_backend.OrtRunner(result.model, mode="fp32")
    batches = [(list(range(i, i + 32)), {"input": x[i:i + 32]}) for i in range(0, 192, 32)]
    heldout = HeldOut(batches, [reference.run(f) for _, f in batches], labels, reference.output_names)
    metric = get_metric("sqnr")
    layers = [(layer.node, layer.op_type) for layer in result.plan.layers]

    sessions = []
    real_init = ort_backend.OrtRunner.__init__

    def counting(self, *args, **kwargs):
        sessions.append(args[0] if args else kwargs.get("model"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ort_backend.OrtRunner, "__init__", counting)
    switched = pipeline.qdq_runner_factory(result, "entropy")
    fast = sensitivity(heldout, metric, layers, switched, {})
    assert len(sessions) == 1  # 2 x 7 + 1 evaluations, one session
    slow = sensitivity(heldout, metric, layers, _per_variant_factory(result, "entropy"), {})
    assert fast.to_json() == slow.to_json()
    assert len({layer.only_this for layer in fast.layers}) > 1  # the variants differ: a real comparison

    ranking = [layer.node for layer in result.plan.layers]
    bound = fast.all_quantized + 6.0  # SQNR in dB: needs some layers in float
    for search in (fallback, lambda *a, **k: bisect_fallback(*a, **k, screen=screening_subset(heldout))):
        fast_outcome = search(heldout, metric, ranking, pipeline.qdq_runner_factory(result, "entropy"), max_drop=None, min_value=bound)
        slow_outcome = search(heldout, metric, ranking, _per_variant_factory(result, "entropy"), max_drop=None, min_value=bound)
        fast_json, slow_json = fast_outcome.to_json(), slow_outcome.to_json()
        for outcome in (fast_json, slow_json):
            outcome.pop("seconds", None)
        assert fast_json == slow_json and fast_outcome.passed and fast_outcome.float_layers


def _stranger_models():
    from tests.float_models import float16_conv, ir3_conv_matmul, mixed_float16_island
    from tests.models_shapes import SHAPES

    def with_data(build, shape, dtype=np.float32):
        def make(path):
            return build(path), {"x": np.random.default_rng(2).standard_normal((16, *shape)).astype(dtype)}
        return make

    models = dict(SHAPES)  # If and Loop subgraphs, int and bool outputs, 1-D conv, weight on the left ...
    models.update(float16_conv=with_data(float16_conv, (3, 8, 8), np.float16),
                  mixed_float16_island=with_data(mixed_float16_island, (3, 8, 8)),
                  ir3_conv_matmul=with_data(ir3_conv_matmul, (3, 12, 12)))  # initializers are graph inputs
    return models


@pytest.mark.parametrize("name", sorted(_stranger_models()))
def test_model_shapes_and_float_types_are_bit_identical(name, tmp_path):
    model, feeds = _stranger_models()[name](tmp_path / f"{name}.onnx")
    np.savez(tmp_path / "cal.npz", **feeds)
    result = quant.calibrate(str(model), str(tmp_path / "cal.npz"), methods=("minmax",))
    if not result.plan.layers:
        pytest.skip("no quantized layer")
    float32 = all(v.dtype == np.float32 for v in feeds.values()) and "float16" not in name
    batch = 1 if name == "ir3_conv_matmul" else 3  # its input shape is fixed at batch 1
    _assert_same_as_each_variant(result, "minmax", [{k: v[:batch] for k, v in feeds.items()}], switched=float32)
