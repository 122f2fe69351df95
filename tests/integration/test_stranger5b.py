"""The Python API and the CLI's flags tried as a stranger would (fifth stranger round): a keyword or flag that
quant does not take, or that no method reads, is refused with the fix, never ignored."""
from __future__ import annotations

import pytest

import quant
from conftest import run_cli


def test_api_keyword_typo_names_the_keyword_it_meant(digits):
    """quant.calibrate(..., method="mse") (the CLI's flag is --method) said "unknown calibration config keys
    ['method']" with no hint; batchsize= the same."""
    with pytest.raises(quant.QuantError) as info:
        quant.calibrate(digits["model"], digits["calibration"], method="mse")
    assert info.value.message == "unknown keyword argument 'method': not a calibration setting"
    assert info.value.hint.startswith("did you mean methods=")
    with pytest.raises(quant.QuantError) as info:
        quant.calibrate(digits["model"], digits["calibration"], batchsize=8)
    assert info.value.hint == "did you mean batch_size=?"


def test_api_percentile_that_no_method_reads_is_refused_as_on_the_command_line(digits, tmp_path):
    """`quant calibrate --percentile 50` (entropy) is refused; quant.calibrate(percentile=50) and
    quant.recalibrate(folder, "mse", percentile=50) calibrated without it and said nothing."""
    cli = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--percentile", "50",
                   "--output", tmp_path / "cli"])
    assert cli.returncode == 2
    line = cli.stderr.splitlines()[0].removeprefix("Error: ")
    with pytest.raises(quant.QuantError) as info:
        quant.calibrate(digits["model"], digits["calibration"], percentile=50)
    assert info.value.message == line  # the same one line as the CLI
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",))
    result.save(tmp_path / "cal")
    with pytest.raises(quant.QuantError, match="--method is mse and --weight-method minmax: it would be ignored"):
        quant.recalibrate(tmp_path / "cal", "mse", percentile=50)
    # where a method reads it, it is used: percentile 50 of the input is far below its max
    amax = quant.recalibrate(tmp_path / "cal", "percentile", percentile=50).activation_amax["percentile"]["input"]
    assert amax < result.activation_amax["minmax"]["input"] / 4


def test_an_abbreviated_or_misspelled_flag_names_the_flag_it_nearly_is(digits, tmp_path):
    """argparse took '--meth minmax' as '--method minmax' (exit 0): the day a '--meth...' flag is added, the same
    command line changes meaning. Now refused, with the full name in the hint."""
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o",
                    "--meth", "minmax"])
    assert proc.returncode == 2 and not (tmp_path / "o").exists()
    assert proc.stderr.splitlines() == ["Error: unrecognized arguments: --meth",
                                        "Hint: did you mean --method? (see 'quant calibrate --help')"]
    # a misspelling, and '--out' where '--output' is also missing: the unknown flag is the news, not '--output'
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--out", tmp_path / "o"])
    assert proc.stderr.splitlines()[1] == "Hint: did you mean --output? (see 'quant calibrate --help')"
    proc = run_cli(["eval", digits["model"], tmp_path / "o", "--data", digits["heldout"], "--output-js", tmp_path / "e.json"])
    assert proc.stderr.splitlines()[1] == "Hint: did you mean --output-json? (see 'quant eval --help')"
    assert not (tmp_path / "e.json").exists()


def test_a_flag_given_twice_is_refused_not_the_last_one_kept(digits, tmp_path):
    """'--method minmax --method mse' wrote the mse calibration alone (exit 0), as if minmax had not been asked."""
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o",
                    "--method", "minmax", "--method", "mse"])
    assert proc.returncode == 2 and not (tmp_path / "o").exists()
    assert proc.stderr.splitlines() == [
        "Error: --method is given twice (minmax, then mse): one value would be dropped silently",
        "Hint: give --method once, with the values separated by commas"]
    # flags that repeat by design still do: --exclude-op-type twice excludes both
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "x",
                    "--exclude-op-type", "Gemm", "--exclude-op-type", "Conv"])
    assert proc.returncode == 2 and "nothing to quantize" in proc.stderr
