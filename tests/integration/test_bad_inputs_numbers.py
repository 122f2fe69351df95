"""The bad-input corpus of tests/bad_inputs/cases_numbers.py, checked like the main corpus."""
import pytest

from bad_inputs.cases_numbers import CASES
from conftest import run_cli
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_numbers(case, tmp_path):
    check_bad_input(case, tmp_path)  # the main corpus's checks: exit 2, Error (+ Hint), no traceback, nothing left


@pytest.mark.parametrize("command", ["eval", "gate", "build", "bench", "calibrate"])
def test_an_unknown_option_points_at_the_subcommands_own_help(command):
    proc = run_cli([command, "a", "b", "--no-such-flag"])
    assert proc.returncode == 2
    error, hint = proc.stderr.strip().splitlines()
    assert error.startswith("Error: ") and hint == f"Hint: see 'quant {command} --help'"
