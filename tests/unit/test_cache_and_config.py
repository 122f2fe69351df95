import struct

import numpy as np
import pytest

from quant.core.config import CalibrationConfig
from quant.core.errors import QuantError
from quant.qdq.cache import decode_scale, encode_scale, format_cache, read_cache, trt_version_number


def test_trt_version_numbers_match_nv_tensorrt_version():
    assert trt_version_number("8.6.1") == 8601
    assert trt_version_number("10.3.0") == 100300
    assert trt_version_number("10.13") == 101300


def test_cache_lines_are_big_endian_float32_of_amax_over_127(tmp_path):
    amax = {"input": 1.0, "conv/out:0": 6.5, "zeros": 0.0}
    text = format_cache(amax, "entropy", "8.6.1")
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert lines[1] == "input: " + struct.pack(">f", np.float32(1.0 / 127)).hex()
    path = tmp_path / "calibration.cache"
    path.write_text(text)
    header, scales = read_cache(path)
    assert scales["conv/out:0"] == float(np.float32(6.5 / 127))
    assert scales["zeros"] == float(np.float32(1.0 / 127))  # an all-zero tensor gets amax 1, never scale 0
    assert format_cache({"x": 1.0}, "minmax").splitlines()[0] == "TRT-100300-MinMaxCalibration"


def test_encode_decode_roundtrip():
    for value in (1e-8, 0.0078125, 3.3, 1e4):
        assert decode_scale(encode_scale(value)) == float(np.float32(value))


def test_malformed_cache_line_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.cache"
    path.write_text("TRT-8601-EntropyCalibration2\ninput: 3c010204\nbroken line\n")
    with pytest.raises(QuantError, match="line 3 is malformed"):
        read_cache(path)
    path.write_text("hello\n")
    with pytest.raises(QuantError, match="not a TensorRT calibration cache"):
        read_cache(path)


def test_config_json_roundtrip_and_validation():
    config = CalibrationConfig(methods=("entropy", "mse"), percentile=99.9, num_samples=10, exclude=("a",))
    assert CalibrationConfig.from_json(config.to_json()) == config
    assert CalibrationConfig(methods="minmax").methods == ("minmax",)
    for bad, match in [({"methods": ("kld",)}, "unknown calibration method"),
                       ({"percentile": 0}, "percentile"), ({"bins": 1000}, "power of two"),
                       ({"batch_size": 0}, "batch-size"), ({"methods": ("mse", "mse")}, "twice"),
                       ({"version": 99}, "version 99")]:
        with pytest.raises(QuantError, match=match):
            CalibrationConfig(**bad)
    with pytest.raises(QuantError, match="unknown calibration config keys"):
        CalibrationConfig.from_json({"method": "entropy"})
