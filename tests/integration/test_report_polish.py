"""What a user sees of `quant report` and the sensitivity progress in a CI log (stderr not a terminal):
a line per stage, plots at the page's width, rounded numbers, parameters as a table, a bar that counts
evaluations from the start."""
import json
import re
import shutil
from html.parser import HTMLParser

import pytest

import quant
from conftest import run_cli


@pytest.fixture(scope="module")
def folder(digits, tmp_path_factory):
    """A percentile calibration of the digits model with sensitivity.json, fallback.json and eval.json."""
    root = tmp_path_factory.mktemp("report")
    quant.calibrate(digits["model"], digits["calibration"], methods=("percentile",), percentile=99.9).save(root / "cal")
    proc = run_cli(["sensitivity", digits["model"], "--calibration", root / "cal", "--data", digits["heldout"],
                    "--num-samples", "128", "--metric", "agreement"])
    assert proc.returncode == 0, proc.stderr
    root.joinpath("sensitivity.stderr").write_text(proc.stderr)
    proc = run_cli(["eval", digits["model"], root / "cal" / "model.int8.onnx", "--data", digits["heldout"],
                    "--num-samples", "128", "--output-json", root / "cal" / "eval.json"])
    assert proc.returncode == 0, proc.stderr
    return root


def test_sensitivity_progress_counts_evaluations_from_the_start(folder):
    lines = folder.joinpath("sensitivity.stderr").read_text().splitlines()
    layers = len(json.loads((folder / "cal" / "sensitivity.json").read_text())["layers"])
    total = 2 * layers + 1  # all INT8, then only-this and all-but-this per layer
    progress = [l for l in lines if l.startswith("sensitivity: ")]
    assert progress[0].startswith(f"sensitivity: 1/{total} evaluations, ")  # as soon as the first is done
    assert progress[-1].startswith(f"sensitivity: {total}/{total} evaluations, ")
    counts = [int(re.match(r"sensitivity: (\d+)/", l).group(1)) for l in progress]
    assert counts == sorted(counts) and len(progress) <= 22  # about 20 lines, however many layers
    assert all(re.search(r", \d+\.\d s$", l) for l in progress)  # with the time spent


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.style, self._in_style = [], "", False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.style += data

    def handle_endtag(self, tag):
        self._in_style = False


def test_report_stages_width_numbers_and_parameters(folder, tmp_path):
    cal = tmp_path / "cal"
    shutil.copytree(folder / "cal", cal)
    proc = run_cli(["report", cal])
    assert proc.returncode == 0, proc.stderr
    stages = [l for l in proc.stderr.splitlines() if l.startswith("report: ")]
    assert stages[0].startswith("report: read quant.json, the histograms of ") and stages[-1].startswith("report: done, ")
    assert "sensitivity.json" in stages[0] and "eval.json" in stages[0]
    assert any(l.startswith("report: plotting the histograms of 6 tensors") for l in stages)
    assert any(l.startswith("report: sensitivity of ") for l in stages)
    assert all(re.search(r", \d+\.\d s$", l) for l in stages)

    page = _Page()
    page.feed((cal / "report.html").read_text())
    assert page.images and all("width" not in img and "height" not in img for img in page.images)
    rules = dict(re.findall(r"(\w+)\{([^}]*)\}", page.style))
    assert "width:100%" in rules["img"] and "height:auto" in rules["img"]
    assert "px" not in rules["body"] and "max-width:1100px" not in page.style  # the page's width, not pixels

    md = (cal / "report.md").read_text()
    assert "{'percentile'" not in md and "{" not in md.split("## Calibration")[1].split("##")[0]
    assert "| parameter | value |" in md and re.search(r"\| `percentile` \| 99\\\.9 \|", md)
    cells = [c.strip() for line in md.splitlines() if line.startswith("|") for c in line.strip("|").split("|")]
    numbers = [c for c in cells if re.fullmatch(r"-?[\d\\.]+(%| pp)?", c)]
    assert numbers and not [c for c in numbers if re.search(r"\d(\\)?\.\d{6,}", c)]  # no 0.9998765432
    sensitivity = md.split("## Per-layer sensitivity")[1]
    row = next(l for l in sensitivity.splitlines() if l.startswith("| 1 |"))
    only_this = row.split("|")[3].strip().replace("\\", "")
    assert len(only_this.replace("-", "").replace(".", "").lstrip("0")) <= 4  # 4 significant digits
