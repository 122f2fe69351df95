import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from quant.core.errors import NonFiniteError
from quant.core.histogram import Histogram, load_histograms, save_histograms

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


def _stream(values, batch, order=None, bins=256):
    hist = Histogram(bins=bins)
    data = values if order is None else values[order]
    for start in range(0, len(data), batch):
        hist.update(data[start:start + batch])
    return hist


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 400), elements=finite), st.integers(1, 64), st.randoms())
def test_counts_do_not_depend_on_batch_size_or_order(values, batch, rnd):
    order = np.array(rnd.sample(range(len(values)), len(values)))
    whole = _stream(values, len(values))
    assert _stream(values, batch) == whole
    assert _stream(values, batch, order) == whole


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=finite), st.integers(0, 300))
def test_merge_of_halves_equals_histogram_of_all(values, cut):
    cut = min(cut, len(values))
    left, right = Histogram(bins=512).update(values[:cut]), Histogram(bins=512).update(values[cut:])
    assert left.merge(right) == Histogram(bins=512).update(values)
    assert right.merge(left) == Histogram(bins=512).update(values)


def test_bin_of_every_value_matches_direct_floor_on_final_grid():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.standard_normal(5000), rng.standard_normal(5000) * 50]).astype(np.float32)
    hist = _stream(values, 333)
    width = 2.0 ** hist.exponent / hist.bins
    expected = np.bincount(np.floor(np.abs(values.astype(np.float64)) / width).astype(int), minlength=hist.bins)
    np.testing.assert_array_equal(hist.counts, expected)
    assert np.abs(values).max() < 2.0 ** hist.exponent <= 2 * np.abs(values).max()
    assert hist.absmax == float(np.abs(values).max())
    assert (hist.min, hist.max) == (float(values.min()), float(values.max()))


def test_nan_and_inf_raise_a_clear_error_naming_the_tensor():
    with pytest.raises(NonFiniteError, match="conv1 contains NaN"):
        Histogram().update(np.array([1.0, np.nan], np.float32), name="conv1")
    with pytest.raises(NonFiniteError, match="Inf"):
        Histogram().update(np.array([1.0, np.inf], np.float32))


def test_all_zero_tensor_then_real_values():
    hist = Histogram(bins=256).update(np.zeros(10, np.float32))
    assert hist.exponent is None and hist.counts[0] == 10 and hist.width == 0.0
    hist.update(np.array([3.0, -0.5], np.float32))
    assert hist.counts[0] == 10 + 0 and hist.count == 12 and hist.counts.sum() == 12


def test_does_not_keep_activations():
    hist = Histogram()
    for _ in range(5):
        hist.update(np.random.default_rng(0).standard_normal(100_000).astype(np.float32))
    assert hist.counts.nbytes == hist.bins * 8 and hist.count == 500_000


def test_roundtrip_through_npz(tmp_path):
    hists = {"a/b:0": Histogram(bins=256).update(np.arange(-5, 50, dtype=np.float32)),
             "zeros": Histogram(bins=256).update(np.zeros(3, np.float32)), "empty": Histogram(bins=256)}
    save_histograms(tmp_path / "h.npz", hists)
    loaded = load_histograms(tmp_path / "h.npz")
    assert list(loaded) == list(hists)
    for name in hists:
        assert loaded[name] == hists[name]


def test_bins_must_be_power_of_two():
    from quant.core.errors import QuantError

    with pytest.raises(QuantError, match="power of two"):
        Histogram(bins=1000)


def test_extreme_ranges_bin_exactly():
    for scale in (1e-38, 1e-30, 1.0, 1e30, 3e38):
        values = (np.linspace(-1, 1, 1001) * scale).astype(np.float32)
        hist = Histogram(bins=256).update(values)
        width = 2.0 ** hist.exponent / 256
        expected = np.bincount(np.floor(np.abs(values.astype(np.float64)) / width).astype(int), minlength=256)
        np.testing.assert_array_equal(hist.counts, expected)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e4, 1e4, width=32)),
       st.sampled_from([0.5, 1.0, 3.0, 1e-20]))
def test_c_accelerator_counts_equal_the_numpy_path(values, scale):
    from quant.core import histogram as module

    if module._histc is None:
        pytest.skip("the C accelerator was not built (no compiler at install time)")
    values = (values * np.float32(scale)).astype(np.float32)
    fast, slow = Histogram(bins=512), Histogram(bins=512)
    fast.update(values)
    accelerator, module._histc = module._histc, None
    try:
        slow.update(values)
    finally:
        module._histc = accelerator
    assert fast == slow


def test_c_accelerator_is_built_where_a_compiler_exists():
    import shutil

    from quant.core import histogram as module

    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler: the numpy path is used")
    assert module._histc is not None, "pip install should have built quant/core/_histc.c"
