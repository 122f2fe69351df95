"""The --ray/--device bad-input corpus (tests/bad_inputs/cases_ray.py), checked as the main corpus is."""
import pytest

from bad_inputs.cases_ray import CASES, NO_GPU_CASES
from test_bad_inputs import test_bad_input as check_bad_input


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ray(case, tmp_path):
    check_bad_input(case, tmp_path)


@pytest.mark.parametrize("case", NO_GPU_CASES, ids=[c.name for c in NO_GPU_CASES])
def test_bad_input_ray_without_a_local_gpu(case, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the driver's part of the command can run here")
    check_bad_input(case, tmp_path)
