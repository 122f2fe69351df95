"""The data sources' bad-input corpus (tests/bad_inputs/cases_data.py), checked like the main corpus."""
import pytest

from bad_inputs.cases_data import CASES
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_data(case, tmp_path):
    check_bad_input(case, tmp_path)
