"""The accuracy area's bad-input cases, checked by the corpus's own check (exit 2, one Error: line, nothing left)."""
import pytest

import test_bad_inputs as corpus
from bad_inputs.cases_accuracy import CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_accuracy(case, tmp_path):
    corpus.test_bad_input(case, tmp_path)
