"""Every numeric option of every subcommand is checked when the command line is parsed: a bad value is one
'Error: argument --x: ...' line plus 'Hint: see 'quant <command> --help'', exit code 2, before any work."""
import argparse

import pytest

from quant.cli import validators
from quant.cli.main import build_parser, main

BAD = {
    "--seed": ["-1", "4294967296", "abc", "1.5"],
    "--num-samples": ["0", "-1", "abc", "nan"],
    "--batch-size": ["0", "-1", "1e3"],
    "--max-batch": ["0", "-3"],
    "--workspace": ["-5", "0", "lots"],
    "--repeat": ["0", "-1"],
    "--warmup": ["-1", "x"],
    "--worst": ["-1", "1.5"],
    "--max-float-layers": ["-1"],
    "--refine-rounds": ["-1", "x", "1.5"],
    "--threads": ["0", "-1", "99999"],
    "--ray-shards": ["0", "-2", "x", "1.5"],
    "--bins": [str(2**40), "1000", "128", "0", "-4096"],
    "--percentile": ["0", "101", "nan", "inf", "-5"],
    "--memory-budget": ["0", "-1", "inf", "nan"],
    "--trt-version": ["-1", "garbage", "1.2.3", "100.0", "10.x", "10..3"],
    "--max-drop": ["nan", "inf", "-1"],
    "--min-value": ["nan", "inf", "-inf"],
    "--scale": ["nan", "inf"],
    "--class-axis": ["99", "abc"],
    "--topk": ["-1", "0", "a", ",", "1,0"],
    "--metric": ["top0", "top0@logits", ":f", "module:"],
    "--eval-fn": ["evaluate", ":f", "file.py:", "file.py:@score"],
}
GOOD = {"--seed": "7", "--num-samples": "10", "--batch-size": "8", "--max-batch": "16", "--workspace": "1024",
        "--repeat": "3", "--warmup": "0", "--worst": "0", "--max-float-layers": "0", "--refine-rounds": "0", "--threads": "2",
        "--bins": "2048", "--percentile": "99.9", "--memory-budget": "64", "--trt-version": "8.6.1",
        "--max-drop": "0.5", "--min-value": "-3", "--scale": "0.5", "--class-axis": "-1", "--topk": "1,5",
        "--metric": "top5", "--ray-shards": "3", "--eval-fn": "examples/eval_fn/detection.py:mean_ap@AP50"}


def _typed_options():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.option_strings and action.type is not None:
                yield command, action


OPTIONS = sorted({(command, action.option_strings[-1]) for command, action in _typed_options()})


def test_no_numeric_option_takes_a_bare_int_or_float():
    bare = [(c, a.option_strings) for c, a in _typed_options() if a.type in (int, float)]
    assert bare == []


def test_every_typed_option_is_covered_here():
    assert {option for _, option in OPTIONS} <= set(BAD), sorted({o for _, o in OPTIONS} - set(BAD))
    assert len(OPTIONS) >= 25  # the options of calibrate, recalibrate, eval, gate, sensitivity, fallback, ...


@pytest.mark.parametrize("command,option", OPTIONS)
def test_bad_values_are_refused_when_parsed(command, option, capsys):
    for value in BAD[option]:
        capsys.readouterr()
        assert main([command, f"{option}={value}"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"Error: argument {option}: "), (value, lines)
        assert lines[1] == f"Hint: see 'quant {command} --help'"


@pytest.mark.parametrize("command,option", OPTIONS)
def test_a_good_value_passes_the_option(command, option, capsys):
    capsys.readouterr()
    main([command, f"{option}={GOOD[option]}"])  # fails later, on the missing arguments, not on this option
    assert f"argument {option}" not in capsys.readouterr().err


def test_validators_return_the_values():
    assert validators.bins("4096") == 4096 and validators.seed("0") == 0
    assert validators.percentile("100") == 100.0 and validators.trt_version("10.3.0.26") == "10.3.0.26"
    assert validators.int_list(1, 1000)("1, 5") == (1, 5)
