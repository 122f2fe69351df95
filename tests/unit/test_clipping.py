"""How much a threshold clips (values and energy), from the histogram."""
import numpy as np
import pytest

from quant.calibrators import get
from quant.calibrators.clipping import HARD_ENERGY_SHARE, clipping, gentler_method
from quant.core.histogram import Histogram


def test_shares_of_a_two_level_tensor_are_exact():
    # 900 values 0.25 and 100 values 1.0, clipped at 0.5: 10% of the values, energy 100*0.25 of 900/16 + 100
    values = np.r_[np.full(900, 0.25), np.full(100, 1.0)].astype(np.float32)
    hist = Histogram().update(values)
    stats = clipping(hist, 0.5)
    assert stats.values_share == pytest.approx(0.1, rel=1e-3)
    assert stats.energy_share == pytest.approx(100 * 0.25 / (900 / 16 + 100), rel=1e-2)
    assert stats.hard


def test_full_range_clips_nothing_and_sampled_shares_match_the_estimate():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(200_000).astype(np.float32)
    hist = Histogram().update(values)
    assert clipping(hist, hist.absmax).values_share == 0.0
    assert clipping(hist, get("minmax").fit(hist).amax_).energy_share == 0.0
    a = 1.5
    above = np.abs(values) > a
    stats = clipping(hist, a)
    assert stats.values_share == pytest.approx(above.mean(), rel=1e-3)
    energy = np.sum((np.abs(values[above]) - a) ** 2) / np.sum(values.astype(np.float64) ** 2)
    assert stats.energy_share == pytest.approx(energy, rel=1e-3)


def test_entropy_on_softmax_probabilities_clips_hard_and_mse_does_not():
    logits = np.random.default_rng(1).standard_normal((2000, 40)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    hist = Histogram().update(probs.astype(np.float32))
    entropy = clipping(hist, get("entropy").fit(hist).amax_)
    assert entropy.hard and entropy.energy_share > 10 * HARD_ENERGY_SHARE
    method, stats = gentler_method(hist, lambda m: get(m).fit(hist).amax_)
    assert method == "mse" and not stats.hard


def test_gaussian_activations_are_not_flagged():
    hist = Histogram().update(np.random.default_rng(2).standard_normal(100_000).astype(np.float32))
    for method in ("entropy", "mse", "percentile"):
        assert not clipping(hist, get(method).fit(hist).amax_).hard


def test_warning_lines_are_capped(capsys):
    from quant.cli.calibrate import MAX_CLIPPING_WARNINGS, clipping_warnings

    class Result:
        methods = ("entropy",)

        def hard_clipping(self, method):
            return [{"tensor": f"t{i}", "amax": 0.5, "values_share": 0.2, "energy_share": 0.3,
                     "instead": {"method": "mse", "amax": 1.0}} for i in range(MAX_CLIPPING_WARNINGS + 3)]

    clipping_warnings(Result())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == MAX_CLIPPING_WARNINGS + 1
    assert lines[0].startswith("warning: entropy clips 't0' hard: 20.00% of its values") and "mse" in lines[0]
    assert lines[-1] == "warning: entropy clips 3 more tensors hard (quant.json: hard_clipping)"
