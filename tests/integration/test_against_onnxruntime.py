"""minmax and percentile against ONNX Runtime's own calibrators on the same model and data."""
import numpy as np
import pytest

import quant

ort_calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")


class _Reader:
    def __init__(self, array):
        self.rows = iter(array)

    def get_next(self):
        row = next(self.rows, None)
        return None if row is None else {"input": row[None]}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _ort_ranges(model, data, method, tmp_path, **extra):
    calibrator = ort_calibrate.create_calibrator(
        str(model), ["Conv", "Gemm"], augmented_model_path=str(tmp_path / f"augmented-{method.name}.onnx"),
        calibrate_method=method, extra_options={"symmetric": True, **extra})
    calibrator.collect_data(_Reader(data))
    ranges = calibrator.compute_data()
    out = {}
    for name in ranges.data if hasattr(ranges, "data") else ranges:
        value = ranges[name]
        low, high = (value.range_value if hasattr(value, "range_value") else value)
        out[name] = max(abs(float(np.ravel(low)[0])), abs(float(np.ravel(high)[0])))
    return out


def test_minmax_equals_onnxruntime(digits, tmp_path):
    data = np.load(digits["calibration"])["input"]
    ours = quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).activation_amax["minmax"]
    theirs = _ort_ranges(digits["model"], data, ort_calibrate.CalibrationMethod.MinMax, tmp_path)
    common = set(ours) & set(theirs)
    assert len(common) >= 7
    for name in common:
        # ORT runs its own augmented graph one sample at a time: activations can differ in the last ulp.
        assert ours[name] == pytest.approx(theirs[name], rel=1e-6), name


def test_percentile_agrees_with_onnxruntime_within_a_bin(digits, tmp_path):
    data = np.load(digits["calibration"])["input"]
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("percentile",), percentile=99.9)
    ours = result.activation_amax["percentile"]
    bins = 2048
    theirs = _ort_ranges(digits["model"], data, ort_calibrate.CalibrationMethod.Percentile, tmp_path,
                         num_bins=bins, percentile=99.9)
    common = set(ours) & set(theirs)
    assert len(common) >= 7
    for name in common:
        hist = result.histograms[name]
        # ORT: left edge of the crossing bin on [0, absmax] in 2048 bins; ours: right edge on the dyadic grid.
        tolerance = hist.width + hist.absmax / bins
        assert abs(ours[name] - theirs[name]) <= tolerance + 1e-7, (name, ours[name], theirs[name])
