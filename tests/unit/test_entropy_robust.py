"""Entropy on discrete, spiky and sparse histograms: the choice must not be decided by float roundoff."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from quant.calibrators import get
from quant.calibrators.entropy import kl_divergences, kl_divergences_with_bound, robust_last_argmin
from quant.core.histogram import Histogram

from tests.unit.test_calibrators import reference_entropy_divergences


def _levels_data(frequencies, n, scale, seed):
    """n samples of the levels k / (L - 1) * scale, k drawn with the given relative frequencies."""
    rng = np.random.default_rng(seed)
    p = np.asarray(frequencies, dtype=np.float64)
    k = rng.choice(p.size, size=n, p=p / p.sum())
    k[:1] = p.size - 1  # the top level is present, so max|x| = scale
    return (k / (p.size - 1) * scale).astype(np.float32)


def digits_like(n, seed=0):
    """n images of 64 pixels on 17 levels k/16 (as scikit-learn's digits / 16): most pixels 0."""
    rng = np.random.default_rng(seed)
    frequencies = np.r_[10.0, rng.uniform(0.5, 1.5, 15), 3.0]
    return _levels_data(frequencies, n * 64, 1.0, seed)


@pytest.mark.parametrize("samples", [50, 64, 128, 199, 200, 201, 256, 500, 1000, 1500, 2000])
def test_seventeen_levels_keep_the_full_range_for_every_sample_count(samples):
    hist = Histogram().update(digits_like(samples, seed=samples))
    assert get("entropy").fit(hist).amax_ == 1.0


def test_seventeen_levels_of_scikit_learns_digits():
    digits = pytest.importorskip("sklearn.datasets").load_digits().data.astype(np.float32) / 16
    for n in (50, 128, 200, 500, 1000, 1797):
        assert get("entropy").fit(Histogram().update(digits[:n])).amax_ == 1.0, n


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(2, 65), n=st.integers(20, 50_000), exponent=st.integers(-6, 8),
       mantissa=st.floats(1.0, 1.99), spike=st.floats(0.0, 50.0), seed=st.integers(0, 2**31 - 1))
def test_discrete_levels_alone_in_their_groups_keep_the_full_range(levels, n, exponent, mantissa, spike, seed):
    # At most 65 equally spaced levels over >= 2049 bins: each level sits alone in its group of Q at the
    # full range, so KL(full range) is exactly 0, the least possible, and ties go to the larger threshold.
    rng = np.random.default_rng(seed)
    frequencies = rng.uniform(0.1, 1.0, levels)
    frequencies[0] += spike  # a spike of exact zeros, as after a ReLU or on an image background
    values = _levels_data(frequencies, n, np.ldexp(mantissa, exponent), seed)
    hist = Histogram().update(values)
    assert get("entropy").fit(hist).amax_ == hist.absmax


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), factor=st.integers(2, 1000), kind=st.sampled_from(["sparse", "spiky", "discrete"]))
def test_choice_depends_on_the_distribution_not_on_the_number_of_samples(seed, factor, kind):
    # Repeating the data k times leaves the normalized P and Q, and so every exact divergence, unchanged.
    rng = np.random.default_rng(seed)
    if kind == "sparse":
        values = rng.standard_normal(int(rng.integers(3, 40))) * 10.0 ** rng.uniform(-3, 3)
    elif kind == "spiky":
        values = np.concatenate([np.zeros(int(rng.integers(0, 5000))), rng.laplace(size=int(rng.integers(5, 3000))),
                                 np.full(int(rng.integers(1, 500)), rng.uniform(0.5, 4.0))])
    else:
        values = rng.integers(0, int(rng.integers(2, 300)), size=int(rng.integers(5, 4000))).astype(np.float64)
    values = values.astype(np.float32)
    once = Histogram().update(values)
    repeated = Histogram().update(np.tile(values, factor))
    np.testing.assert_array_equal(repeated.counts, once.counts * factor)
    assert get("entropy").fit(repeated).amax_ == get("entropy").fit(once).amax_


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["sparse", "spiky", "discrete"]))
def test_pick_is_a_minimizer_of_the_reference_kl_loop(seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "sparse":
        values = rng.standard_normal(int(rng.integers(3, 60)))
    elif kind == "spiky":
        values = np.concatenate([np.zeros(int(rng.integers(0, 3000))), rng.standard_normal(int(rng.integers(5, 2000))),
                                 np.full(int(rng.integers(1, 300)), rng.uniform(0.2, 3.0))])
    else:
        values = rng.integers(0, int(rng.integers(2, 40)), size=int(rng.integers(5, 3000))) / 16.0
    hist = Histogram(bins=512).update(values.astype(np.float32))
    extent = int(np.flatnonzero(hist.counts)[-1]) + 1
    if extent < 128:
        return
    reference = reference_entropy_divergences(hist.counts[:extent])
    chosen = get("entropy", reference_bins=None).fit(hist).amax_
    candidate = int(round(chosen / hist.width)) if chosen < hist.absmax else extent
    best = np.min(reference)
    assert reference[candidate - 128] <= best + 1e-9 * max(1.0, abs(best))
    # and no larger candidate is a clearly better (or equal) minimizer: ties went to the larger threshold
    assert np.all(reference[candidate - 128 + 1:] > best + 1e-12) or candidate == extent


def test_the_bound_covers_the_roundoff_of_exact_ties():
    counts = Histogram().update(digits_like(200)).counts
    extent = int(np.flatnonzero(counts)[-1]) + 1
    bins = counts[:extent].astype(np.float64)
    bins[0] = bins[1]
    candidates = np.arange(128, extent + 1)
    divergence, bound = kl_divergences_with_bound(bins, candidates)
    np.testing.assert_array_equal(divergence, kl_divergences(bins, candidates))
    exact_zero = [1, candidates.size - 1]  # bin 128 (candidate 129): P and Q are one spike; last: P == Q
    assert np.all(np.abs(divergence[exact_zero]) <= bound[exact_zero])
    assert np.all(bound[np.isfinite(divergence)] < 1e-9)
    assert robust_last_argmin(divergence, bound) == candidates.size - 1


def test_robust_argmin_prefers_a_clearly_smaller_value():
    values = np.array([0.5, 1e-3, 0.2, 1e-3 + 1e-6])
    assert robust_last_argmin(values, np.full(4, 1e-12)) == 1
    assert robust_last_argmin(values, np.full(4, 1e-6)) == 3
    assert robust_last_argmin(np.array([np.inf, np.inf]), np.zeros(2)) == 1
