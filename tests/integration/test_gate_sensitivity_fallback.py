"""Release gate, sensitivity, fallback and report on the bundled example."""
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest

import quant
from conftest import run_cli
from quant import pipeline


@pytest.fixture(scope="module")
def calibration(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("minmax",)).save(out)
    return out


def _gate(digits, calibration, tmp_path, *extra):
    return run_cli(["gate", digits["model"], calibration / "model.int8.onnx", "--data", digits["heldout"],
                    "--json-out", tmp_path / "gate.json", "--junit", tmp_path / "gate.xml", *extra])


def test_gate_exit_codes_json_and_junit(digits, calibration, tmp_path):
    passing = _gate(digits, calibration, tmp_path, "--metric", "top1", "--max-drop", "1.0")
    assert passing.returncode == 0, passing.stderr
    result = json.loads((tmp_path / "gate.json").read_text())
    check = result["checks"][0]
    assert result["passed"] is True and check["metric"] == "top1" and check["output"] == "logits"
    assert result["samples"] == 540 and check["unit"] == "%" and check["drop_unit"] == "pp"
    assert check["drop"] == pytest.approx(check["fp32"] - check["int8"])
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"top1@logits"} and suite.get("failures") == "0"  # only gated metrics are test cases
    reported = {p.get("name") for p in suite.find("properties").findall("property")}
    assert {"agreement@logits", "cosine@logits", "sqnr@logits"} <= reported

    failing = _gate(digits, calibration, tmp_path, "--metric", "agreement", "--max-drop", "0.0001")
    result = json.loads((tmp_path / "gate.json").read_text())
    assert failing.returncode == 1 and failing.stdout.startswith("FAIL") and result["passed"] is False
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    failed = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed == ["agreement@logits"] and suite.get("failures") == "1"


def test_gate_relative_and_min_value(digits, calibration, tmp_path):
    fp32_vs_int8 = pipeline.gate(digits["model"], calibration / "model.int8.onnx", digits["heldout"],
                                 metric="agreement", max_drop=100.0, relative=True)
    assert fp32_vs_int8 and fp32_vs_int8.drop == pytest.approx(100 * (100 - fp32_vs_int8.int8) / 100)
    sqnr = _gate(digits, calibration, tmp_path, "--metric", "sqnr", "--min-value", "20")
    assert sqnr.returncode == 0, sqnr.stderr
    too_high = _gate(digits, calibration, tmp_path, "--metric", "sqnr", "--min-value", "90")
    assert too_high.returncode == 1


def test_gate_user_metric_module_function(digits, calibration, tmp_path):
    (tmp_path / "my_metrics.py").write_text(
        "import numpy as np\n"
        "def error_rate(outputs, labels):\n"
        "    return 100.0 * float(np.mean(outputs[0].argmax(1) != labels))\n"
        "error_rate.higher_is_better = False\n")
    proc = run_cli(["gate", digits["model"], calibration / "model.int8.onnx", "--data", digits["heldout"],
                    "--metric", "my_metrics:error_rate", "--max-drop", "1.0", "--json-out", tmp_path / "g.json"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "g.json").read_text())["checks"][0]
    top1 = pipeline.gate(digits["model"], calibration / "model.int8.onnx", digits["heldout"], max_drop=1.0)
    assert result["fp32"] == pytest.approx(100 - top1.fp32) and result["int8"] == pytest.approx(100 - top1.int8)


@pytest.mark.parametrize("args, message", [
    (["--metric", "sqnr", "--max-drop", "1"], "gate it with --min-value"),
    (["--metric", "nonsense", "--max-drop", "1"], "unknown metric"),
    (["--metric", "nomodule_xyz:f", "--max-drop", "1"], "cannot load metric"),
    ([], "needs a bound"),
])
def test_gate_bad_input_exits_2(digits, calibration, tmp_path, args, message):
    proc = _gate(digits, calibration, tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_sensitivity_ranks_every_layer_and_reuses_fp32_outputs(digits, calibration, monkeypatch):
    calls = {"fp32": 0}
    from quant.backends import onnxruntime as backend

    real_run = backend.OrtRunner.run

    def counting_run(self, feeds, outputs=None):
        if self.mode == "fp32":
            calls["fp32"] += 1
        return real_run(self, feeds, outputs)

    monkeypatch.setattr(backend.OrtRunner, "run", counting_run)
    report = pipeline.sensitivity(digits["model"], calibration, digits["heldout"], metric="agreement", batch_size=540)
    nodes = {n.name for n in onnx.load(str(digits["model"])).graph.node if n.op_type in ("Conv", "Gemm")}
    assert {layer.node for layer in report.layers} == nodes
    # one FP32 pass over the held-out data, one for the local scores: never one per evaluation
    assert calls["fp32"] <= 2
    assert all(np.isfinite(layer.local_sqnr_db) and layer.local_sqnr_db > 10 for layer in report.layers)
    recoveries = [layer.recovery for layer in report.layers]
    assert recoveries == sorted(recoveries, reverse=True)
    assert -1.0 <= report.rank_correlation <= 1.0 or np.isnan(report.rank_correlation)
    assert report.fp32 == 100.0 and report.all_quantized < 100.0


def test_fallback_meets_a_bound_plain_int8_misses_and_writes_the_model(digits, calibration, tmp_path):
    plain = pipeline.gate(digits["model"], calibration / "model.int8.onnx", digits["heldout"], metric="sqnr",
                          min_value=40.0)
    assert not plain
    out = tmp_path / "fb"
    proc = run_cli(["fallback", digits["model"], "--calibration", calibration, "--data", digits["heldout"],
                    "--metric", "sqnr", "--min-value", "40", "--output", out, "--naive"])
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads((out / "fallback.json").read_text())
    assert outcome["passed"] and 1 <= len(outcome["float_layers"]) < 7
    assert outcome["path"][0]["float_layers"] == [] and outcome["path"][-1]["passed"]
    manifest = json.loads((out / "quant.json").read_text())
    kept = {u["node"] for u in manifest["unquantized"] if "fallback" in u["reason"]}
    assert kept == {layer["node"] for layer in outcome["float_layers"]}
    model = onnx.load(str(out / "model.int8.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name in kept:
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input)
    gate = pipeline.gate(digits["model"], out / "model.int8.onnx", digits["heldout"], metric="sqnr", min_value=40.0)
    assert gate  # the written model passes the bound on its own
    naive = outcome["naive_first_last"]
    assert len(outcome["float_layers"]) <= min(n for n in naive.values() if n is not None)


def test_fallback_that_cannot_meet_the_bound_says_so(digits, calibration, tmp_path):
    proc = run_cli(["fallback", digits["model"], "--calibration", calibration, "--data", digits["heldout"],
                    "--metric", "agreement", "--max-drop", "0", "--max-float-layers", "0", "--output", tmp_path / "x"])
    assert proc.returncode == 1 and "No set of float layers met the bound" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_report_renders_with_plots(digits, calibration, tmp_path):
    folder = tmp_path / "cal"
    shutil.copytree(calibration, folder)
    report = pipeline.sensitivity(digits["model"], folder, digits["heldout"], metric="agreement")
    (folder / "sensitivity.json").write_text(json.dumps(report.to_json()))
    proc = run_cli(["eval", digits["model"], folder / "model.int8.onnx", "--data", digits["heldout"],
                    "--output-json", folder / "eval.json"])
    assert proc.returncode == 0
    proc = run_cli(["report", folder])
    assert proc.returncode == 0, proc.stderr
    md = (folder / "report.md").read_text()
    assert "## FP32 vs INT8" in md and "## Per-layer sensitivity" in md and "top1" in md
    pngs = sorted((folder / "plots").glob("*.png"))
    assert len(pngs) >= 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000 for p in pngs)
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs) and "src='plots/" not in page  # self-contained
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no headless Chromium here to open report.html")
    shot = tmp_path / "shot.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                           f"--screenshot={shot}", "--window-size=1200,2000", (folder / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    console_errors = [l for l in proc.stderr.splitlines() if "CONSOLE" in l and ("Error" in l or "Uncaught" in l)]
    assert not console_errors
