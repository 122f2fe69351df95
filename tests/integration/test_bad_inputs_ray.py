"""The --ray/--device bad-input corpus (tests/bad_inputs/cases_ray.py), checked as the main corpus is."""
import pytest

from bad_inputs.cases_ray import CASES
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ray(case, tmp_path):
    check_bad_input(case, tmp_path)
