"""The artifacts part of the bad-input corpus, checked exactly as tests/integration/test_bad_inputs.py checks cases.py."""
import pytest

from bad_inputs.cases_artifacts import CASES
from test_bad_inputs import test_bad_input as check_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_artifact_input(case, tmp_path):
    check_case(case, tmp_path)
