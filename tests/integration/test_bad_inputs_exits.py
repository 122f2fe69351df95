"""The corpus of tests/bad_inputs/cases_exits.py (tracebacks and wrong exit codes), checked like the main corpus."""
import pytest

from bad_inputs.cases_exits import CASES
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits(case, tmp_path):
    check_bad_input(case, tmp_path)
