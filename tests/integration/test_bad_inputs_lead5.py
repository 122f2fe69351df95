"""The bad-input corpus of tests/bad_inputs/cases_lead5.py, checked like the main corpus."""
import pytest

from bad_inputs.cases_lead5 import CASES
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_lead5(case, tmp_path):
    check_bad_input(case, tmp_path)  # exit 2, one Error (+ Hint) line, no traceback, nothing left or changed
