"""`quant eval FP32 DIR` on a calibration folder: every method against one FP32 pass, one table; eval.json names
both models (sha256) and `quant report` checks they are the folder's; worst samples named by file."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import quant
from conftest import run_cli
from quant.core.onnx_model import file_hash

METHODS = ["entropy", "minmax", "percentile", "mse"]


@pytest.fixture(scope="module")
def multi(digits, tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", ",".join(METHODS),
                    "--output", d / "out"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["eval", digits["model"], d / "out", "--data", digits["heldout"], "--num-samples", "200",
                    "--output-json", d / "out" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    return d / "out", proc.stdout


def test_one_table_with_a_column_per_method(multi):
    _, stdout = multi
    header = next(line for line in stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "FP32"] + METHODS
    top1 = next(line for line in stdout.splitlines() if line.startswith("top1"))
    assert len(top1.split()) == 2 + len(METHODS)
    assert "FP32 run once for 4 methods" in stdout


def test_each_method_equals_its_own_evaluation(multi, digits):
    out, _ = multi
    folder = json.loads((out / "eval.json").read_text())
    assert folder["format"] == "quant-eval-folder/1" and list(folder["methods"]) == METHODS
    for method in ("entropy", "mse"):
        alone = quant.evaluate(str(digits["model"]), str(out / method / "model.int8.onnx"), str(digits["heldout"]),
                               num_samples=200).to_json()
        got = folder["methods"][method]
        assert got["task"] == alone["task"] and got["outputs"] == alone["outputs"], method
        assert [w["index"] for w in got["worst_samples"]] == [w["index"] for w in alone["worst_samples"]]


def test_fp32_model_runs_once_for_all_methods(multi, digits, monkeypatch):
    from quant.backends import onnxruntime as backend
    from quant.pipeline.folder_eval import evaluate_folder

    out, _ = multi
    calls = {"fp32": 0, "emulate": 0}
    original = backend.OrtRunner.run

    def counting(self, feeds, outputs=None):
        calls[self.mode] += 1
        return original(self, feeds, outputs)

    monkeypatch.setattr(backend.OrtRunner, "run", counting)
    evaluate_folder(str(digits["model"]), out, str(digits["heldout"]), num_samples=100, batch_size=25)
    assert calls == {"fp32": 4, "emulate": 16}  # 4 batches: once for FP32, once per method


def test_eval_json_names_both_models_with_sha256(multi, digits, tmp_path):
    out, _ = multi
    folder = json.loads((out / "eval.json").read_text())
    assert folder["models"]["fp32"]["sha256"] == file_hash(digits["model"])
    for method in METHODS:
        assert folder["models"]["int8"][method]["sha256"] == file_hash(out / method / "model.int8.onnx")
    proc = run_cli(["eval", digits["model"], out / "mse" / "model.int8.onnx", "--data", digits["heldout"],
                    "--num-samples", "50", "--output-json", tmp_path / "single.json"])
    assert proc.returncode == 0, proc.stderr
    single = json.loads((tmp_path / "single.json").read_text())
    assert single["models"]["int8"] == {"path": str((out / "mse" / "model.int8.onnx").resolve()),
                                        "sha256": file_hash(out / "mse" / "model.int8.onnx")}


def test_report_renders_the_comparison(multi):
    out, _ = multi
    proc = run_cli(["report", out])
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    md = (out / "report.md").read_text()
    assert "| metric | FP32 | `entropy` | `minmax` | `percentile` | `mse` |" in md
    folder = json.loads((out / "eval.json").read_text())
    top1 = folder["methods"]["mse"]["task"]["top1"]["int8"]
    assert f"{top1:.2f}%" in md.split("| `top1@logits` |")[1].splitlines()[0]
    assert "Where the methods disagree most" in md and (out / "plots" / "methods_histogram_0.png").exists()
    assert "<table>" in (out / "report.html").read_text()


def test_report_warns_when_eval_json_is_not_about_this_folder(multi, tmp_path):
    out, _ = multi
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    folder = json.loads((copy / "eval.json").read_text())
    folder["models"]["int8"]["minmax"]["sha256"] = "0" * 64  # as if measured on another model
    (copy / "eval.json").write_text(json.dumps(folder))
    proc = run_cli(["report", copy])
    assert proc.returncode == 0, proc.stderr
    assert "warning: eval.json was measured on" in proc.stderr and "minmax" in proc.stderr
    assert "**Warning**: eval.json was measured on" in (copy / "report.md").read_text()


def test_single_method_report_checks_eval_json(multi, digits, tmp_path):
    out, _ = multi
    folder = tmp_path / "entropy"
    shutil.copytree(out / "entropy", folder)
    # eval.json of the mse model put in the entropy folder
    proc = run_cli(["eval", digits["model"], out / "mse" / "model.int8.onnx", "--data", digits["heldout"],
                    "--num-samples", "50", "--output-json", folder / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["report", folder])
    assert proc.returncode == 0 and "warning: eval.json was measured on" in proc.stderr
    proc = run_cli(["eval", digits["model"], folder, "--data", digits["heldout"], "--num-samples", "50",
                    "--output-json", tmp_path / "eval.json"])  # the folder itself: its model.int8.onnx
    assert proc.returncode == 0, proc.stderr
    shutil.copy(tmp_path / "eval.json", folder / "eval.json")
    proc = run_cli(["report", folder])
    assert proc.returncode == 0 and "warning" not in proc.stderr


def test_worst_samples_are_named_by_file_for_image_folders(multi, digits, tmp_path):
    out, _ = multi
    data = np.load(digits["heldout"])
    root = tmp_path / "images"
    for i in range(24):
        label = int(data["label"][i])
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((data["input"][i, 0] * 255).round().astype(np.uint8), mode="L").save(root / str(label) / f"d{i:02d}.png")
    proc = run_cli(["eval", digits["model"], out / "entropy" / "model.int8.onnx", "--data", root, "--color", "L",
                    "--output-json", tmp_path / "e.json"])
    assert proc.returncode == 0, proc.stderr
    worst = json.loads((tmp_path / "e.json").read_text())["worst_samples"]
    assert worst and all(w["file"].endswith(".png") and (root / w["file"]).is_file() for w in worst)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("worst samples"))
    assert worst[0]["file"] in line
    proc = run_cli(["eval", digits["model"], out, "--data", root, "--color", "L"])
    assert proc.returncode == 0, proc.stderr
    assert any(".png" in line for line in proc.stdout.splitlines() if "worst samples" in line)


def test_report_heading_quotes_a_folder_name_with_markdown_in_it(multi, tmp_path):
    out, _ = multi
    odd = tmp_path / "run *1* | `x`"
    shutil.copytree(out, odd)
    proc = run_cli(["report", odd])
    assert proc.returncode == 0, proc.stderr
    from markdown_it import MarkdownIt

    heading = (odd / "report.md").read_text().splitlines()[0]
    tokens = MarkdownIt().parseInline(heading[2:])[0].children
    assert [t.type for t in tokens] == ["text", "code_inline", "text"], heading  # the name is one code span
    assert "*1*" in tokens[1].content and "|" in tokens[1].content
