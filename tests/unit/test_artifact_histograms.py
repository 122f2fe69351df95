"""histograms.npz read back: forged or damaged files are one clear error naming the tensor, checked before
anything large is allocated; a file quant wrote reads back exactly."""
import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from quant.core.errors import QuantError
from quant.core.histogram import Histogram, load_histograms, save_histograms
from quant.core.histogram_file import histogram_names

def _histograms():
    RNG = np.random.default_rng(0)
    out = {"relu": Histogram(bins=256).update(np.maximum(RNG.standard_normal(5000), 0).astype(np.float32)),
           "signed": Histogram(bins=256).update((RNG.standard_normal(3000) * 40).astype(np.float32)),
           "zeros": Histogram(bins=256).update(np.zeros(100, np.float32)),
           "empty": Histogram(bins=256)}
    out["merged"] = out["relu"].merge(Histogram(bins=256).update(np.array([1e-3, 7.5], np.float32)))
    return out


def _arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _resave(path, arrays):
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "histograms.npz"
    save_histograms(path, _histograms())
    return path


def test_a_file_quant_wrote_reads_back_exactly(saved):
    assert load_histograms(saved) == _histograms()
    assert load_histograms(saved, names=["signed"], bins=256) == {"signed": _histograms()["signed"]}
    assert histogram_names(saved) == ["relu", "signed", "zeros", "empty", "merged"]


def _forge(saved, index, key, value):
    arrays = _arrays(saved)
    arrays[f"{index}.{key}"] = value
    _resave(saved, arrays)


CASES = {
    "negative count": (0, "counts", lambda a: np.where(np.arange(a.size) == 3, -5, a), "negative count"),
    "float counts": (0, "counts", lambda a: a.astype(np.float64) + 0.5, "has dtype float64"),
    "count above total": (1, "counts", lambda a: a + (np.arange(a.size) == 0) * 10**9, "above its"),
    "nan statistic": (1, "stats", lambda a: np.array([np.nan, a[1], a[2]]), "non-finite statistics"),
    "inf statistic": (1, "stats", lambda a: np.array([a[0], -np.inf, a[2]]), "non-finite statistics"),
    "absurd exponent": (1, "meta", lambda a: np.array([a[0], 4000, a[2]]), "records exponent 4000"),
    "exponent of zeros": (2, "meta", lambda a: np.array([a[0], 3, a[2]]), "saw only zeros"),
    "bins not a power of two": (0, "meta", lambda a: np.array([300, a[1], a[2]]), "declares 300 bins"),
    "bins disagree with counts": (0, "meta", lambda a: np.array([512, a[1], a[2]]), "has shape (256,), expected (512,)"),
    "statistics disagree": (1, "stats", lambda a: np.array([a[0] * 2, a[1], a[2]]), "does not match"),
    "empty with statistics": (3, "stats", lambda a: np.array([1.0, 0.0, 1.0]), "saw no values"),
    "counts beyond max|x|": (0, "counts", lambda a: _shift(a), "do not end in the bin"),
    "meta of two values": (0, "meta", lambda a: a[:2], "has shape (2,), expected (3,)"),
    "string stats": (0, "stats", lambda a: np.array(["a", "b", "c"]), "has dtype <U1"),
    "2-D counts": (0, "counts", lambda a: a.reshape(16, 16), "has shape (16, 16)"),
}


def _shift(counts):
    """Move one value from the last nonzero bin to the very last bin (the sum is kept)."""
    counts = counts.copy()
    top = np.flatnonzero(counts)[-1]
    counts[top] -= 1
    counts[-1] += 1
    return counts


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_forged_histogram_is_one_error_naming_the_tensor(saved, case):
    index, key, change, message = CASES[case]
    names = ["relu", "signed", "zeros", "empty", "merged"]
    _forge(saved, index, key, change(_arrays(saved)[f"{index}.{key}"]))
    with pytest.raises(QuantError) as info:
        load_histograms(saved)
    assert message in info.value.message and f"tensor '{names[index]}'" in info.value.message
    assert "\n" not in info.value.message


def test_missing_array_duplicate_name_and_missing_tensor(saved):
    arrays = _arrays(saved)
    del arrays["2.stats"]
    _resave(saved, arrays)
    with pytest.raises(QuantError, match=r"tensor 'zeros': the array '2.stats' is missing"):
        load_histograms(saved)
    arrays = _arrays(saved) | {"2.stats": np.array([0.0, 0.0, 0.0]), "names": np.array(["a", "b", "a", "c", "d"])}
    _resave(saved, arrays)
    with pytest.raises(QuantError, match="tensor 'a' is listed twice"):
        load_histograms(saved)
    save_histograms(saved, _histograms())
    with pytest.raises(QuantError, match="no histogram for tensor 'conv_out'"):
        load_histograms(saved, names=["relu", "conv_out"])
    with pytest.raises(QuantError, match="has 256 bins but quant.json records --bins 4096"):
        load_histograms(saved, bins=4096)


def _npy(shape, dtype):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()  # magic string and header


def _bomb(path, bins, counts_shape):
    """A small file whose headers declare ``bins`` bins (and a counts array of ``counts_shape``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("names.npy", _npy((1,), "<U3") + np.array(["big"], "<U3").tobytes())
        archive.writestr("0.meta.npy", _npy((3,), "<i8") + np.array([bins, 1, 10], "<i8").tobytes())
        archive.writestr("0.stats.npy", _npy((3,), "<f8") + np.array([1.5, 0.0, 1.5], "<f8").tobytes())
        archive.writestr("0.counts.npy", _npy(counts_shape, "<i8") + bytes(1 << 16))


@pytest.mark.parametrize("bins,shape,message", [(1 << 30, (1 << 30,), "declares 1073741824 bins"),
                                                (4096, (1 << 30,), "expected (4096,)"),
                                                (1 << 20, (1 << 20,), "records --bins 4096")])
def test_a_small_file_declaring_a_huge_histogram_is_refused_without_allocating_it(tmp_path, bins, shape, message):
    path = tmp_path / "histograms.npz"
    _bomb(path, bins, shape)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(QuantError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_histograms(path, bins=4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse a {path.stat().st_size} byte file"


def test_truncated_counts_are_refused(tmp_path):
    path = tmp_path / "histograms.npz"
    _bomb(path, 1 << 16, (1 << 16,))  # declares 512 KiB of counts, holds 64 KiB
    with pytest.raises(QuantError, match="is truncated"):
        load_histograms(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_is_an_error_or_the_same_histograms(saved, data):
    original = saved.read_bytes()
    damaged = bytearray(original)
    kind = data.draw(st.sampled_from(["flip", "truncate", "zero", "insert"]))
    position = data.draw(st.integers(0, len(original) - 1))
    if kind == "flip":
        damaged[position] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        damaged = damaged[:position]
    elif kind == "zero":
        damaged[position:position + data.draw(st.integers(1, 64))] = bytes(min(64, len(damaged) - position))
    else:
        damaged[position:position] = data.draw(st.binary(min_size=1, max_size=16))
    saved.write_bytes(bytes(damaged))
    try:
        result = load_histograms(saved)
    except QuantError as exc:
        assert "\n" not in exc.message and len(exc.message) < 600
        return
    finally:
        saved.write_bytes(original)
    assert result == _histograms()


def test_ranges_that_cannot_be_float32_scales_are_refused_naming_the_tensor():
    from quant.pipeline.checks import check_ranges

    check_ranges({"entropy": {"a": 0.0, "b": 3.4e38}}, {"w": np.array([0.0, 1.0])})
    for bad in (np.nan, np.inf, 1e300, -1.0):
        with pytest.raises(QuantError, match="tensor 'conv\\\\nout' gets amax"):
            check_ranges({"entropy": {"conv\nout": bad}}, {})
    with pytest.raises(QuantError, match="weight 'w'"):
        check_ranges({}, {"w": np.array([1.0, np.nan])})


def test_guessed_or_raised_scales_are_warned_with_the_tensor_name():
    from quant.pipeline.checks import range_warnings, warning_lines

    histograms = {"dead": Histogram(bins=256).update(np.zeros(64, np.float32)), "never": Histogram(bins=256),
                  "tiny": Histogram(bins=256).update(np.full(8, 1e-39, np.float32)),
                  "fine": Histogram(bins=256).update(np.ones(8, np.float32))}
    amax = {"dead": 0.0, "never": 0.0, "tiny": 1e-39, "fine": 1.0}
    warnings = range_warnings(histograms, amax, {"w": np.array([1.0, 1e-38, 0.0])})
    assert [w["tensor"] for w in warnings] == ["dead", "never", "tiny", "w"]
    assert "all zeros on the 64 calibration values" in warnings[0]["problem"]
    assert "received no values" in warnings[1]["problem"] and "raised to 2**-126" in warnings[2]["problem"]
    assert "1 channel(s)" in warnings[3]["problem"]  # the all-zero channel (scale 1/127) is not warned about
    lines = warning_lines(warnings * 5, limit=3)
    assert len(lines) == 4 and lines[-1].startswith("warning: 17 more")
