"""What CI reads from `quant gate`: several gated metrics from one run, JUnit parsed by a JUnit reader,
and report files that hold the error when the run stops on bad input (exit 2)."""
import json

import pytest
from junitparser import Error, Failure, JUnitXml

import quant
from conftest import run_cli


@pytest.fixture(scope="module")
def calibration(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate_reports") / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(out)
    return out


def _suite(path):
    suites = list(JUnitXml.fromfile(str(path)))  # <testsuites> holding one <testsuite>
    assert len(suites) == 1
    return suites[0]


def test_several_metrics_each_with_its_bound_one_testcase_each(digits, calibration, tmp_path):
    proc = run_cli(["gate", digits["model"], calibration / "model.int8.onnx", "--data", digits["heldout"],
                    "--metric", "top1", "--max-drop", "1.0", "--metric", "sqnr", "--min-value", "30",
                    "--metric", "cosine", "--min-value", "0.99999999",
                    "--output-json", tmp_path / "gate.json", "--junit", tmp_path / "gate.xml"])
    assert proc.returncode == 1, proc.stderr  # cosine's bound is out of reach; the other two pass
    result = json.loads((tmp_path / "gate.json").read_text())
    checks = {c["metric"]: c for c in result["checks"]}
    assert list(checks) == ["top1", "sqnr", "cosine"] and result["passed"] is False
    assert checks["top1"]["passed"] and checks["sqnr"]["passed"] and not checks["cosine"]["passed"]
    assert checks["top1"]["max_drop"] == 1.0 and checks["sqnr"]["min_value"] == 30.0  # each keeps its own bound
    assert checks["sqnr"]["unit"] == "dB" and checks["top1"]["drop_unit"] == "pp"

    suite = _suite(tmp_path / "gate.xml")
    cases = list(suite)
    assert [c.name for c in cases] == ["top1@logits", "sqnr@logits", "cosine@logits"]
    assert suite.tests == 3 and suite.failures == 1 and suite.errors == 0
    assert all(c.time is not None and c.time >= 0 for c in cases) and suite.time >= 0
    failed = [c.name for c in cases if any(isinstance(r, Failure) for r in c.result)]
    assert failed == ["cosine@logits"]
    properties = {p.name: p.value for p in suite.properties()}
    assert "agreement@logits" in properties and properties["samples"] == "540"  # reported, not a passing test
    assert "top1@logits" not in properties  # gated metrics are test cases, not properties


def test_bounds_before_the_metric_and_the_old_single_metric_usage(digits, calibration, tmp_path):
    proc = run_cli(["gate", digits["model"], calibration / "model.int8.onnx", "--data", digits["heldout"],
                    "--max-drop", "1.0", "--metric", "top1", "--json-out", tmp_path / "g.json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "g.json").read_text())["checks"][0]["max_drop"] == 1.0
    proc = run_cli(["gate", digits["model"], calibration / "model.int8.onnx", "--data", digits["heldout"],
                    "--metric", "top1", "--max-drop", "1", "--max-drop", "2"])
    assert proc.returncode == 2 and "--max-drop is given twice for top1" in proc.stderr


@pytest.mark.parametrize("case", ["missing model", "bad flag"])
def test_exit_2_still_writes_junit_with_an_error_and_json_with_the_error(digits, calibration, tmp_path, case):
    reports = ["--output-json", tmp_path / "gate.json", "--junit", tmp_path / "gate.xml"]
    if case == "missing model":
        args = ["gate", tmp_path / "nope.onnx", calibration / "model.int8.onnx", "--data", digits["heldout"],
                "--metric", "top1", "--max-drop", "1", *reports]
    else:
        args = ["gate", digits["model"], calibration / "model.int8.onnx", "--data", digits["heldout"],
                "--metric", "top1", "--max-drop", "half", *reports]
    proc = run_cli(args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.splitlines()[0].removeprefix("Error: ")
    suite = _suite(tmp_path / "gate.xml")
    assert suite.errors == 1 and suite.tests == 1
    (case_,) = list(suite)
    errors = [r for r in case_.result if isinstance(r, Error)]
    assert len(errors) == 1 and errors[0].message == message
    result = json.loads((tmp_path / "gate.json").read_text())
    assert result["passed"] is False and result["error"]["message"] == message and result["checks"] == []


def test_error_reports_never_replace_an_input(digits, calibration, tmp_path):
    data = tmp_path / "heldout.npz"
    data.write_bytes(digits["heldout"].read_bytes())
    before = data.read_bytes()
    proc = run_cli(["gate", tmp_path / "nope.onnx", calibration / "model.int8.onnx", "--data", data,
                    "--metric", "top1", "--max-drop", "1", "--junit", data])
    assert proc.returncode == 2 and data.read_bytes() == before
