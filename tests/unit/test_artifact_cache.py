"""calibration.cache: a name never forges a line, every scale is finite, positive and normal, and the
table read back is exactly the table written (or quant refuses to write it)."""
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from quant.core.errors import QuantError
from quant.qdq.cache import format_cache, read_cache
from quant.qdq.insert import SMALLEST_SCALE, scale_from_amax

WEIRD = ["\n", "\r", "\r\n", "\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\x1b", "\t", "\x7f", "\ud800"]


def _write(tmp_path, text: str):
    path = tmp_path / "calibration.cache"
    path.write_bytes(text.encode("utf-8"))
    return path


def test_newline_in_a_name_is_refused_not_forged():
    with pytest.raises(QuantError, match=r"holds the character '\\n'") as info:
        format_cache({"evil\nforged: 7f7fffff": 1.0}, "entropy")
    assert "\n" not in info.value.message  # the Error line stays one line


@pytest.mark.parametrize("char", WEIRD)
def test_every_line_breaking_or_control_character_is_refused(char):
    with pytest.raises(QuantError, match="rename the tensor|calibration cache"):
        format_cache({f"a{char}b": 1.0}, "entropy")


def test_names_with_colons_spaces_and_unicode_round_trip(tmp_path):
    # TensorRT writes ':' in names as they are (torch's onnx::Conv_1, tf2onnx's input:0); the value follows the last one.
    table = {"onnx::Conv_1": 1.0, "input:0": 2.0, "x: 3c010204": 3.0, "trailing:": 4.0, " lead and trail ": 5.0,
             "Ünïcødé/名前": 6.0, "TRT-100300-EntropyCalibration2": 7.0, "<b>`|$x$": 8.0}
    header, scales = read_cache(_write(tmp_path, format_cache(table, "entropy")))
    assert header == "TRT-100300-EntropyCalibration2"
    assert scales == {name: float(scale_from_amax(value)) for name, value in table.items()}


def test_scales_are_never_zero_denormal_inf_or_nan(tmp_path):
    table = {"zero": 0.0, "denormal": 1e-40, "tiny": 1e-36, "big": float(np.finfo(np.float32).max)}
    _, scales = read_cache(_write(tmp_path, format_cache(table, "minmax")))
    assert scales["zero"] == float(np.float32(1 / 127))
    assert scales["denormal"] == scales["tiny"] == SMALLEST_SCALE  # raised to 2**-126: still covers the range
    assert math.isfinite(scales["big"]) and scales["big"] > 1e36
    for bad in (float("nan"), float("inf"), -1.0, 1e39):
        with pytest.raises(QuantError, match="amax"):
            format_cache({"t": bad}, "entropy")


@pytest.mark.parametrize("bits,problem", [("7fc00000", "not finite"), ("7f800000", "not finite"),
                                          ("00000000", "not finite and positive"), ("bf800000", "positive"),
                                          ("00000001", "denormal")])
def test_reader_refuses_scales_tensorrt_cannot_use(tmp_path, bits, problem):
    path = _write(tmp_path, f"TRT-8601-EntropyCalibration2\nt: {bits}\n")
    with pytest.raises(QuantError, match=problem):
        read_cache(path)


@pytest.mark.parametrize("text,match", [
    ("TRT-8601-EntropyCalibration2\nt: 3c01 204\n", "bad hex"),  # bytes.fromhex would accept the space
    ("TRT-8601-EntropyCalibration2\nt: 3c010204\nt: 3c010204\n", "appears twice"),
    ("TRT-8601-EntropyCalibration2\na\x00b: 3c010204\n", "holds the character"),
    ("TRT-8601-EntropyCalibration2\na\x0bb: 3c010204\n", "holds the character"),
    ("TRT-8601\n", "not a TensorRT calibration cache"),
])
def test_reader_refuses_forged_or_ambiguous_lines(tmp_path, text, match):
    with pytest.raises(QuantError, match=match):
        read_cache(_write(tmp_path, text))


def test_reader_refuses_non_utf8_with_the_line_number(tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(b"TRT-8601-EntropyCalibration2\ninput: 3c010204\n\xff\xfe: 3c010204\n")
    with pytest.raises(QuantError, match="line 3 is not UTF-8"):
        read_cache(path)


def test_reader_tolerates_crlf(tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(b"TRT-8601-EntropyCalibration2\r\ninput: 3c010204\r\n")
    assert read_cache(path)[1] == {"input": struct.unpack(">f", bytes.fromhex("3c010204"))[0]}


names = st.text(alphabet=st.characters(codec=None, exclude_categories=()), min_size=0, max_size=12)
amaxes = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=1e-35),
                   st.sampled_from([0.0, 1e-45, 127 * 2.0 ** -126, 3.4028234663852886e38]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.dictionaries(st.one_of(names, st.sampled_from(["a\nb: 7f7fffff", "x:", ":", " ", "onnx::C_1"])),
                             amaxes, max_size=6))
def test_write_then_read_gives_back_exactly_the_table_or_a_refusal(tmp_path, table):
    try:
        text = format_cache(table, "entropy")
    except QuantError as exc:
        assert "\n" not in exc.message
        return
    header, scales = read_cache(_write(tmp_path, text))
    assert header == "TRT-100300-EntropyCalibration2"
    assert list(scales) == list(table)
    for name, amax in table.items():
        expected = float(scale_from_amax(amax))
        assert scales[name] == expected and math.isfinite(expected) and expected >= SMALLEST_SCALE


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200),
                      st.builds(lambda tail: b"TRT-8601-EntropyCalibration2\n" + tail, st.binary(max_size=200)),
                      st.builds(lambda t: ("TRT-8601-EntropyCalibration2\n" + t).encode("utf-8", "surrogatepass"),
                                st.text(max_size=120))))
def test_reader_on_random_bytes_gives_a_table_or_one_line_error(tmp_path, data):
    path = tmp_path / "fuzz.cache"
    path.write_bytes(data)
    try:
        _, scales = read_cache(path)
    except QuantError as exc:
        assert "\n" not in exc.message and len(exc.message) < 400
        return
    for name, scale in scales.items():
        assert name and math.isfinite(scale) and scale >= SMALLEST_SCALE


def test_trtexec_shape_spec_refuses_an_input_name_it_cannot_quote():
    from quant.backends.tensorrt import Profile, trtexec_command

    quoted = trtexec_command("m", "e", (10, 0, 0), {"a,b": Profile("a,b", (1, 4), (2, 4), (4, 4))})
    assert "--minShapes='a,b':1x4" in quoted
    with pytest.raises(QuantError, match="holds a single quote"):
        trtexec_command("m", "e", (10, 0, 0), {"it's": Profile("it's", (1, 4), (2, 4), (4, 4))})
