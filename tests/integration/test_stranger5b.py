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
    assert info.value.message == ("unknown keyword argument 'method': not a keyword of quant.calibrate nor a "
                                  "calibration setting")
    assert info.value.hint.startswith("did you mean methods=")
    with pytest.raises(quant.QuantError) as info:
        quant.calibrate(digits["model"], digits["calibration"], batchsize=8)
    assert info.value.hint == "did you mean batch_size=?"
    with pytest.raises(quant.QuantError) as info:  # the CLI's comma list, given as one string
        quant.calibrate(digits["model"], digits["calibration"], methods="entropy,mse")
    assert info.value.hint == "name one method per item: methods=('entropy', 'mse')"


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
    # a flag of another command says whose it is (the hint was only "see 'quant calibrate --help'")
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o",
                    "--max-drop", "1"])
    assert proc.stderr.splitlines() == [
        "Error: unrecognized arguments: --max-drop",
        "Hint: --max-drop is an option of 'quant gate', 'quant fallback', not of 'quant calibrate' "
        "(see 'quant calibrate --help')"]
    # no far-fetched guess: eval's '--method' is not its '--std'
    proc = run_cli(["eval", digits["model"], tmp_path / "o", "--data", digits["heldout"], "--method", "mse"])
    assert proc.stderr.splitlines()[1].startswith("Hint: --method is an option of 'quant calibrate', ")


def test_a_flag_given_twice_is_refused_not_the_last_one_kept(digits, tmp_path):
    """'--method minmax --method mse' wrote the mse calibration alone (exit 0), as if minmax had not been asked."""
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o",
                    "--method", "minmax", "--method", "mse"])
    assert proc.returncode == 2 and not (tmp_path / "o").exists()
    assert proc.stderr.splitlines() == [
        "Error: --method is given twice (minmax, then mse): one value would be dropped silently",
        "Hint: give --method once, with the values separated by commas"]
    # the same value twice is no conflict (a script that appends its defaults)
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "same",
                    "--method", "minmax", "--method", "minmax"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("minmax: ")
    # flags that repeat by design still do: --exclude-op-type twice excludes both
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "x",
                    "--exclude-op-type", "Gemm", "--exclude-op-type", "Conv"])
    assert proc.returncode == 2 and "nothing to quantize" in proc.stderr


@pytest.fixture(scope="module")
def minmax_folder(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("s5b") / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(folder)
    return folder


def test_api_gate_bound_that_the_command_line_refuses_is_refused(digits, minmax_folder):
    """quant.gate(max_drop=-1) printed 'FAIL ... drop 0.0000 pp > max -1.0 pp' (no model can pass), max_drop=nan
    'max nan pp', max_drop="1" a TypeError; `quant gate --max-drop -1` is refused. Same for fallback."""
    int8 = minmax_folder / "model.int8.onnx"
    for bad, shown in ((-1, "-1"), (float("nan"), "nan"), ("1", "'1'")):
        with pytest.raises(quant.QuantError) as info:
            quant.gate(digits["model"], int8, digits["heldout"], metric="top1", max_drop=bad)
        assert info.value.message == f"--max-drop for top1 must be a finite number >= 0, got {shown}"
    with pytest.raises(quant.QuantError, match="--min-value for sqnr must be a finite number, got inf"):
        quant.gate(digits["model"], int8, digits["heldout"], checks=[{"metric": "sqnr", "min_value": float("inf")}])
    with pytest.raises(quant.QuantError, match="--max-drop for top1 must be a finite number >= 0, got -0.5"):
        quant.fallback(digits["model"], minmax_folder, digits["heldout"], metric="top1", max_drop=-0.5)
    assert quant.gate(digits["model"], int8, digits["heldout"], metric="top1", max_drop=1)  # a good bound passes


def test_api_keyword_typo_of_gate_sensitivity_fallback_names_the_function_and_the_keyword(digits, minmax_folder):
    """quant.gate(..., metrc="top1") raised "TypeError: load_heldout() got an unexpected keyword argument 'metrc'"
    (a function the user never called, after the bounds were judged: maxdrop= said 'the gate needs a bound');
    a key typo in checks=[{...}] was ignored."""
    int8 = minmax_folder / "model.int8.onnx"
    with pytest.raises(quant.QuantError) as info:
        quant.gate(digits["model"], int8, digits["heldout"], metric="top1", maxdrop=1)
    assert (info.value.message, info.value.hint) == (
        "unknown keyword argument 'maxdrop': not a keyword of quant.gate", "did you mean max_drop=?")
    with pytest.raises(quant.QuantError, match="'metrc': not a keyword of quant.sensitivity") as info:
        quant.sensitivity(digits["model"], minmax_folder, digits["heldout"], metrc="sqnr")
    assert info.value.hint == "did you mean metric=?"
    with pytest.raises(quant.QuantError, match="'minvalue': not a keyword of quant.fallback"):
        quant.fallback(digits["model"], minmax_folder, digits["heldout"], metric="sqnr", minvalue=40)
    with pytest.raises(quant.QuantError, match="'maxdrop': not a key of a gate check"):
        quant.gate(digits["model"], int8, digits["heldout"], checks=[{"metric": "top1", "maxdrop": 1}])
    with pytest.raises(quant.QuantError) as info:  # calibrate's own keywords are suggested too
        quant.calibrate(digits["model"], digits["calibration"], devices="cpu")
    assert info.value.hint == "did you mean device=?"


def test_calibration_result_repr_is_the_line_the_cli_prints(digits, tmp_path):
    """A notebook cell ending in `result` showed the dataclass repr: the ModelProto, the plan, every histogram and
    weight array (7.7 kB on the digits CNN, growing with the model) and not the line `quant calibrate` prints."""
    result = quant.calibrate(digits["model"], digits["calibration"], methods=("entropy", "mse"))
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "entropy,mse",
                    "--output", tmp_path / "o"])
    first = proc.stdout.splitlines()[0]
    assert first == "calibrated 7 activation tensors on 200 samples (" + str(digits["calibration"]) + ")"
    assert repr(result) == f"<CalibrationResult entropy,mse: {first}>"
    assert repr(quant.load_calibration(tmp_path / "o" / "mse")).startswith("<CalibrationResult mse: calibrated 7 ")


def test_torch_cpu_and_ort_ranges_agree_as_readme_says(digits):
    """README said only "bit-identical whatever the batch size, use --device ort (or cpu)"; measured here, the two
    devices agree bit for bit on the histogram methods and minmax moves by < 1e-6 relative (3.3e-7 seen), as README
    now says; batch size and order change nothing on either."""
    pytest.importorskip("torch")
    import numpy as np

    methods = ("entropy", "percentile", "mse", "minmax")
    ort = quant.calibrate(digits["model"], digits["calibration"], methods=methods).activation_amax
    cpu = quant.calibrate(digits["model"], digits["calibration"], methods=methods, device="cpu", batch_size=3)
    for method in ("entropy", "percentile", "mse"):
        assert cpu.activation_amax[method] == ort[method], method
    relative = [abs(cpu.activation_amax["minmax"][t] / ort["minmax"][t] - 1) for t in ort["minmax"]]
    assert max(relative) < 1e-6, relative
    data = dict(np.load(digits["calibration"]))
    order = np.random.default_rng(5).permutation(len(data["input"]))
    shuffled = quant.calibrate(digits["model"], {"input": data["input"][order]}, methods=methods, device="cpu",
                               batch_size=7).activation_amax
    assert shuffled == cpu.activation_amax


def test_calibrator_registry_takes_the_method_aliases_calibrate_takes(digits):
    """quant.calibrate(methods="kl") and --method max work (Model Optimizer's / TensorRT's names), but
    quant.calibrators.get("kl") said "unknown calibration method 'kl'"."""
    from quant.calibrators import get

    result = quant.calibrate(digits["model"], digits["calibration"], methods=("kl", "max"))
    histogram = result.histograms["input"]
    assert get("kl").fit(histogram).amax_ == result.activation_amax["entropy"]["input"]
    assert get("max").fit(histogram).amax_ == result.activation_amax["minmax"]["input"] == histogram.absmax
    assert result.qdq_model("kl").SerializeToString() == result.qdq_model("entropy").SerializeToString()  # was refused
    with pytest.raises(quant.QuantError) as info:
        get("Entropy")
    assert info.value.hint == "choose from: entropy, minmax, mse, percentile (aliases: max = minmax, kl = entropy)"
