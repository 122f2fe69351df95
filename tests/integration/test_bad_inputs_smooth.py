"""The bad-input corpus of tests/bad_inputs/cases_smooth.py, checked like the main corpus."""
import pytest

from bad_inputs.cases_smooth import CASES
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_smooth(case, tmp_path):
    check_bad_input(case, tmp_path)  # the main corpus's checks: exit 2, Error (+ Hint), no traceback, nothing left
