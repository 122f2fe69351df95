"""The --device bad-input corpus (tests/bad_inputs/cases_gpu.py), checked as the main corpus is."""
import pytest

from bad_inputs.cases_gpu import CASES
from test_bad_inputs import test_bad_input as check_bad_input

pytest.importorskip("torch")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gpu(case, tmp_path):
    check_bad_input(case, tmp_path)
