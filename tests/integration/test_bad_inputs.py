"""Run the bad-input corpus: exit code 2, one clear line, no traceback, nothing left behind."""
import pytest

from bad_inputs.cases import CASES
from conftest import run_cli


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path):
    argv = case.build(tmp_path)
    before = _tree(tmp_path)
    proc = run_cli(argv)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), proc.stderr
    assert case.error in lines[0], proc.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), proc.stderr
    assert _tree(tmp_path) == before, "the failed run left files behind or changed its inputs"
