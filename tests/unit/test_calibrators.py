"""One contract suite over every registered calibrator, plus cross-checks against reference implementations."""
from collections import Counter

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from quant.calibrators import available, get
from quant.calibrators.mse import expected_squared_error
from quant.core.errors import NotCalibratedError
from quant.core.histogram import Histogram


def hist_of(values, bins=1024):
    return Histogram(bins=bins).update(np.asarray(values, dtype=np.float32))


RNG = np.random.default_rng(0)
CASES = {
    "gaussian": RNG.standard_normal(20000),
    "relu": np.maximum(RNG.standard_normal(20000), 0),
    "spike_at_zero": np.concatenate([np.zeros(50000), RNG.standard_normal(2000)]),
    "huge_outlier": np.concatenate([RNG.standard_normal(20000), [1000.0]]),
    "laplace": RNG.laplace(size=20000),
    "uniform": RNG.uniform(-3, 3, 20000),
}


@pytest.mark.parametrize("method", available())
def test_amax_before_fit_raises_not_calibrated(method):
    with pytest.raises(NotCalibratedError, match="not calibrated"):
        get(method).amax_


@pytest.mark.parametrize("method", available())
@pytest.mark.parametrize("case", sorted(CASES))
def test_contract(method, case):
    hist = hist_of(CASES[case])
    before = hist.copy()
    calibrator = get(method)
    assert calibrator.fit(hist) is calibrator
    amax = calibrator.amax_
    assert hist == before, "a calibrator wrote into its histogram"
    assert 0 < amax <= hist.absmax
    assert get(method).fit(hist.copy()).amax_ == amax  # deterministic


@pytest.mark.parametrize("method", available())
def test_all_zero_and_empty_tensors_give_zero(method):
    assert get(method).fit(hist_of(np.zeros(100))).amax_ == 0.0
    assert get(method).fit(Histogram(bins=256)).amax_ == 0.0


@pytest.mark.parametrize("method", available())
def test_constant_tensor_gives_its_value(method):
    amax = get(method).fit(hist_of(np.full(1000, -2.5))).amax_
    assert amax == pytest.approx(2.5, rel=1 / 256)


def test_minmax_is_exact_max_abs():
    values = np.float32([0.1, -7.25, 3.0])
    assert get("minmax").fit(hist_of(values)).amax_ == 7.25


# ---------------------------------------------------------------- references written from the published algorithms
def reference_percentile(values, percentile, hist):
    """Smallest bin edge e with fraction(|x| < e) >= p, capped at max |x|."""
    width = hist.width
    edges = np.arange(1, hist.bins + 1) * width
    a = np.abs(np.asarray(values, np.float64))
    for edge in edges:
        if np.mean(a < edge) >= percentile / 100 - 1e-12:
            return min(edge, a.max())


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("percentile", [99.0, 99.9, 99.99, 100.0])
def test_percentile_matches_reference(case, percentile):
    values = np.asarray(CASES[case], np.float32)
    hist = hist_of(values, bins=256)
    assert get("percentile", percentile=percentile).fit(hist).amax_ == pytest.approx(
        reference_percentile(values, percentile, hist), rel=1e-12)


def reference_entropy_divergences(counts, start=128, levels=128, suppress_zero_bin=True):
    """pytorch-quantization's loop, without its in-place write and with real normalization."""
    bins = np.array(counts, dtype=np.float64)
    if suppress_zero_bin:
        bins[0] = bins[1]
    total = bins.sum()
    out = []
    for i in range(start, len(bins) + 1):
        space = np.linspace(0, i, num=levels + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        q_counts = np.zeros(levels)
        for idx, group in enumerate(digitized):
            if group != -1:
                q_counts[group] += bins[idx]
        for group, n in Counter(digitized).items():
            if group != -1:
                q_counts[group] /= n
        q = np.array([q_counts[g] if g != -1 else 0.0 for g in digitized])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        assert round(p.sum()) == round(total)
        out.append(scipy_entropy(p / p.sum(), q / q.sum()) if q.sum() > 0 else np.inf)
    return np.array(out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_entropy_matches_reference(case):
    hist = hist_of(CASES[case], bins=512)
    extent = int(np.flatnonzero(hist.counts)[-1]) + 1
    reference = reference_entropy_divergences(hist.counts[:extent])
    chosen = get("entropy", reference_bins=None).fit(hist).amax_  # candidates from bin 128, as the reference
    best = np.min(reference)
    candidate = int(round(min(chosen, hist.absmax) / hist.width)) if chosen < hist.absmax else None
    if candidate is not None:  # our pick is (up to float rounding) a minimizer of the reference divergence
        assert reference[candidate - 128] <= best + 1e-9 * max(1.0, abs(best))
    ref_pick = len(reference) - 1 - int(np.argmin(reference[::-1])) + 128
    assert chosen == pytest.approx(min(ref_pick * hist.width, hist.absmax), rel=1e-12) or candidate is not None


def test_entropy_closed_form_equals_reference_divergences():
    from quant.calibrators.entropy import kl_divergences

    hist = hist_of(CASES["laplace"], bins=512)
    extent = int(np.flatnonzero(hist.counts)[-1]) + 1
    counts = hist.counts[:extent].astype(np.float64)
    counts_suppressed = counts.copy()
    counts_suppressed[0] = counts_suppressed[1]
    ours = kl_divergences(counts_suppressed, np.arange(128, extent + 1))
    np.testing.assert_allclose(ours, reference_entropy_divergences(counts), rtol=1e-9, atol=1e-12)


def test_single_huge_outlier_percentile_clips_it_entropy_keeps_it_as_tensorrt_does():
    hist = hist_of(CASES["huge_outlier"], bins=4096)
    assert get("percentile").fit(hist).amax_ < 0.01 * hist.absmax
    # Clipping folds the outlier into an empty last bin of P, where Q is 0: infinite KL for every
    # threshold below it, so TensorRT's algorithm (and ours) keeps the full range.
    assert get("entropy").fit(hist).amax_ == hist.absmax


def test_mse_error_matches_sampling_the_quantizer():
    """The model is of |x|, so both signs clip at 127 steps (the [-128, 127] range differs by one step)."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal(400000).astype(np.float32)
    hist = hist_of(values, bins=4096)
    extent = int(np.flatnonzero(hist.counts)[-1]) + 1
    edges = hist.edges[: extent + 1]
    for index in (600, 1200, 2000):
        t = edges[index]
        s = t / 127
        sampled = np.mean((np.clip(np.round(values / s), -127, 127) * s - values) ** 2)
        modelled = expected_squared_error(hist.counts[:extent], edges, np.array([index]))[0]
        assert modelled == pytest.approx(sampled, rel=0.02)


def test_mse_picks_the_minimum_of_a_brute_force_scan():
    hist = hist_of(CASES["laplace"], bins=1024)
    extent = int(np.flatnonzero(hist.counts)[-1]) + 1
    edges = hist.edges[: extent + 1]
    errors = [expected_squared_error(hist.counts[:extent], edges, np.array([i]))[0] for i in range(128, extent + 1)]
    best = 128 + len(errors) - 1 - int(np.argmin(errors[::-1]))
    assert get("mse", reference_bins=None).fit(hist).amax_ == pytest.approx(min(edges[best], hist.absmax))


@pytest.mark.parametrize("method", ["entropy", "mse"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_search_starts_where_tensorrts_does(method, case):
    """TensorRT: 2048 bins over [0, max|x|], first candidate bin 128, so no threshold below max|x| / 16."""
    hist = hist_of(CASES[case], bins=4096)
    assert get(method).fit(hist).amax_ >= hist.absmax / 16 - hist.width


def test_percentile_parameter_is_validated_at_construction():
    from quant.core.errors import QuantError

    with pytest.raises(QuantError, match="percentile must be in"):
        get("percentile", percentile=120)


def test_weight_amax_per_channel():
    from quant.calibrators import weight_amax

    w = np.arange(24, dtype=np.float32).reshape(4, 3, 2) - 5
    np.testing.assert_array_equal(weight_amax(w, 0), np.abs(w).reshape(4, -1).max(1))
    np.testing.assert_array_equal(weight_amax(w, 2), np.abs(np.moveaxis(w, 2, 0)).reshape(2, -1).max(1))
    assert np.all(weight_amax(w, 0, "percentile", percentile=50.0) <= weight_amax(w, 0))


from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(200, 2000), elements=st.floats(-50, 50, width=32)), st.integers(1, 97),
       st.randoms())
def test_every_method_gives_bit_identical_amax_for_any_batching_and_order(values, batch, rnd):
    shuffled = values[np.array(rnd.sample(range(len(values)), len(values)))]
    whole = Histogram(bins=512).update(values)
    streamed = Histogram(bins=512)
    for start in range(0, len(shuffled), batch):
        streamed.update(shuffled[start:start + batch])
    for method in available():
        assert get(method).fit(streamed).amax_ == get(method).fit(whole).amax_
