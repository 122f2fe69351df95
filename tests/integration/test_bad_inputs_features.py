"""The Q/DQ-writing cases of the bad-input corpus, checked exactly as tests/integration/test_bad_inputs.py does."""
import pytest

import test_bad_inputs as corpus
from bad_inputs.cases_features import CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_features(case, tmp_path):
    corpus.test_bad_input(case, tmp_path)
