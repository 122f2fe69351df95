"""End to end on the bundled model with hostile names: report.md/html, sensitivity.csv and plots show every
name literally; damaged histograms.npz give one Error line (exit 2) or the original result; all-zero tensors
are warned about and recorded."""
import csv
import html
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import quant
from bad_inputs.cases_artifacts import calibration_folder, renamed_model
from conftest import run_cli
from quant.core.errors import QuantError
from quant.core.text import printable
from quant.pipeline import recalibrate

TENSORS = {"/stem/stem.2/Relu_output_0": "<script>alert('t')</script>", "/down/down.2/Relu_output_0": "`a`|b **c**",
           "/block2/relu/Relu_output_0": "$x^$ \\alpha", "/block1/relu_1/Relu_output_0": "名前/Ünïcødé"}
NODES = {"/block1/conv2/Conv": "<img src=x onerror=alert(1)>`x`|y\nz", "/down/down.0/Conv": '=HYPERLINK("http://x","y")',
         "/block2/conv1/Conv": "$\\undefinedcommand$", "/stem/stem.0/Conv": "+SUM(A1),evil",
         "/head/Gemm": "\x1b[2J\x1b[31mred\x07"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, digits):
    d = tmp_path_factory.mktemp("hostile")
    model = renamed_model(d / "m<b>`|.onnx", TENSORS, NODES)
    out = d / "cal"
    quant.calibrate(model, digits["calibration"], methods=("minmax",)).save(out)
    proc = run_cli(["sensitivity", model, "--calibration", out, "--data", digits["heldout"], "--num-samples", "48"])
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "\\x1b[31mred\\x07" in proc.stdout  # no terminal control
    proc = run_cli(["report", out])
    assert proc.returncode == 0, proc.stderr
    return out


def test_report_md_shows_every_name_literally_as_github_reads_it(hostile):
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (dev extra) reads the Markdown as GitHub")
    text = (hostile / "report.md").read_bytes().decode("utf-8")
    tokens = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").parse(text)
    inline = [c for t in tokens if t.type == "inline" for c in t.children]
    assert not [c for c in inline if c.type in ("html_inline", "html_block")]
    assert not [t for t in tokens if t.type == "html_block"]
    codes = {c.content for c in inline if c.type == "code_inline"}
    for name in list(TENSORS.values()) + list(NODES.values()):  # minmax: amax = max|x|, the first 6 tensors shown
        assert printable(name) in codes, name
    tables, cells = [], 0
    for token in tokens:
        if token.type == "table_open":
            tables.append([])
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            tables[-1].append(cells)
            cells = 0
    assert len(tables) >= 2 and all(len(set(rows)) == 1 for rows in tables), tables  # no cell added or row forged


def test_report_html_escapes_every_name(hostile):
    text = (hostile / "report.html").read_bytes().decode("utf-8")
    assert "<script>alert" not in text and "<img src=x" not in text
    for name in list(NODES.values()) + list(TENSORS.values()):
        assert html.escape(printable(name)) in text, name
    assert "sensitivity.png" in text


def test_sensitivity_csv_has_one_row_per_layer_and_no_formula(hostile):
    rows = list(csv.reader((hostile / "sensitivity.csv").open(newline="", encoding="utf-8")))
    layers = json.loads((hostile / "sensitivity.json").read_text())["layers"]
    assert len(rows) == len(layers) + 1 and {len(r) for r in rows} == {8}
    nodes = [r[1] for r in rows[1:]]
    assert "'" + NODES["/down/down.0/Conv"] in nodes and "'" + NODES["/stem/stem.0/Conv"] in nodes
    assert printable(NODES["/block1/conv2/Conv"]) in nodes
    assert not [n for n in nodes if n[:1] in "=+-@\t\r"]
    assert {l["node"] for l in layers} >= set(NODES.values())  # the JSON keeps the exact names


def test_all_zero_tensor_is_warned_and_recorded(tmp_path, digits):
    np.savez(tmp_path / "zeros.npz", input=np.zeros((8, 1, 8, 8), np.float32))
    proc = run_cli(["calibrate", digits["model"], "--data", tmp_path / "zeros.npz", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert "warning: tensor 'input' was all zeros on the 512 calibration values" in proc.stderr
    manifest = json.loads((tmp_path / "out" / "quant.json").read_text())
    assert manifest["warnings"][0]["tensor"] == "input" and "1/127" in manifest["warnings"][0]["problem"]
    assert manifest["activations"]["input"]["all_zero"] and manifest["activations"]["input"]["scale"] == pytest.approx(1 / 127)
    clean = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "clean"])
    assert "warning" not in clean.stderr and json.loads((tmp_path / "clean" / "quant.json").read_text())["warnings"] == []


def test_all_zero_weight_channel_gets_a_finite_positive_scale(tmp_path, digits):
    from bad_inputs.cases_artifacts import changed_weight

    model = changed_weight(tmp_path / "m.onnx", "onnx::Conv_69", lambda w: w.__setitem__(2, 0.0))
    result = quant.calibrate(model, digits["calibration"], methods=("minmax",))
    weights = result.manifest("minmax")["weights"]["onnx::Conv_69"]
    assert weights["zero_channels"] == 1 and weights["scale_min"] > 0 and np.isfinite(weights["scale_max"])
    onnx = pytest.importorskip("onnx")
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in result.qdq_model().graph.initializer if "scale" in i.name}
    assert all(np.isfinite(s).all() and (s > 0).all() for s in scales.values())


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    folder = calibration_folder(tmp_path_factory.mktemp("orig"))
    return folder, recalibrate(folder, "entropy").activation_amax["entropy"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_histograms_give_one_error_or_the_original_scales(original, tmp_path_factory, data):
    folder, amax = original
    copy = tmp_path_factory.mktemp("fuzz") / "cal"
    shutil.copytree(folder, copy)
    path = copy / "histograms.npz"
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans()):  # damage the bytes
        position = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw = raw[:position]
        else:
            raw[position] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
    else:  # damage one value of one array, keeping the file valid
        with np.load(path) as loaded:
            arrays = {k: loaded[k] for k in loaded.files}
        key = data.draw(st.sampled_from(sorted(k for k in arrays if k != "names")))
        array = arrays[key].astype(np.float64) if data.draw(st.booleans()) else arrays[key].copy()
        index = data.draw(st.integers(0, array.size - 1))
        values = [-1, 0, 1, 2**40, 2**62, -10**6, 4096] + ([np.nan, np.inf, -np.inf, 1e300, 0.5] if array.dtype.kind == "f" else [])
        array[index] = data.draw(st.sampled_from(values))
        arrays[key] = array
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    try:
        result = recalibrate(copy, "entropy")
    except QuantError as exc:
        assert "\n" not in exc.message
        return
    assert result.activation_amax["entropy"] == amax


def test_damaged_histograms_on_the_command_line_exit_2_with_one_error_line(tmp_path):
    folder = calibration_folder(tmp_path)
    raw = bytearray((folder / "histograms.npz").read_bytes())
    raw[len(raw) // 2] ^= 0x55
    (folder / "histograms.npz").write_bytes(bytes(raw))
    for argv in (["recalibrate", folder, "--method", "mse", "--output", tmp_path / "re"], ["report", folder]):
        proc = run_cli(argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("Error: cannot read histograms") and len(lines) <= 2
