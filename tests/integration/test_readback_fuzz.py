"""Fuzz every JSON file quant reads back: a structural mutation of a real file gives exit 0, or exit 2 with
one Error line (and at most one Hint) that names the file or its folder; never a traceback.

The files: quant.json (recalibrate, build, report), eval.json / gate.json / sensitivity.json /
fallback.json (report; sensitivity.json also fallback's saved ranking), a --preprocess spec, and the
JSON metadata of a Hugging Face dataset saved to disk (state.json, dataset_info.json,
dataset_dict.json). Runs in-process (quant.cli.main.main) so hundreds of mutations take seconds; the
report's plots are replaced by a stub (they render numbers already checked here, and cost ~1 s each).
"""
import json
import random
import shutil

import numpy as np
import pytest

from bad_inputs.mutate import mutate
from conftest import DIGITS
from quant.cli.main import main

MODEL, CALIBRATION, HELDOUT = DIGITS / "model.onnx", DIGITS / "calibration.npz", DIGITS / "heldout.npz"
MUTATIONS = 60


def _run(argv, capsys):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def _assert_clean(code, captured, names, argv):
    text = captured.err.strip()
    assert code in (0, 2), f"{argv}: exit {code}\n{captured.err}"
    assert "Traceback" not in captured.err + captured.out
    if code == 2:
        lines = text.splitlines()
        assert lines and lines[0].startswith("Error: "), text
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("Hint: ")), text
        assert names is None or any(str(n) in lines[0] for n in names), f"the error names neither of {names}: {text}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A calibration folder with every file quant reads back: quant.json, eval/gate/sensitivity/fallback.json."""
    root = tmp_path_factory.mktemp("readback")
    cal = root / "cal"
    assert main(["calibrate", str(MODEL), "--data", str(CALIBRATION), "--output", str(cal), "--method", "minmax"]) == 0
    assert main(["eval", str(MODEL), str(cal / "model.int8.onnx"), "--data", str(HELDOUT),
                 "--output-json", str(cal / "eval.json")]) == 0
    assert main(["gate", str(MODEL), str(cal / "model.int8.onnx"), "--data", str(HELDOUT), "--max-drop", "5",
                 "--json-out", str(cal / "gate.json")]) == 0
    assert main(["sensitivity", str(MODEL), "--calibration", str(cal), "--data", str(HELDOUT),
                 "--num-samples", "60"]) == 0
    assert main(["fallback", str(MODEL), "--calibration", str(cal), "--data", str(HELDOUT), "--num-samples", "60",
                 "--max-drop", "50", "--output", str(root / "fb")]) == 0
    shutil.copy(root / "fb" / "fallback.json", cal / "fallback.json")
    return cal


@pytest.fixture
def no_plots(monkeypatch):
    from quant.report import plots

    for name in ("histogram_plot", "sensitivity_plot", "fallback_plot"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: b"\x89PNG stub")


def _copy(folder, target):
    target.mkdir()
    for name in ("quant.json", "histograms.npz", "eval.json", "gate.json", "sensitivity.json", "fallback.json"):
        shutil.copy(folder / name, target / name)
    return target


def test_manifest_mutations(folder, tmp_path, capsys, no_plots):
    original = json.loads((folder / "quant.json").read_text())
    rng = random.Random(13)
    codes = []
    for i in range(40):
        work = _copy(folder, tmp_path / f"m{i}")
        (work / "quant.json").write_bytes(mutate(original, rng))
        for argv, names in ((["recalibrate", work, "--method", "mse", "--output", tmp_path / f"r{i}"], [work]),
                            (["build", work, "--implicit", "--output", tmp_path / f"e{i}.engine"], None),
                            (["report", work, "--output", tmp_path / f"p{i}"], [work])):
            code, captured = _run(argv, capsys)
            _assert_clean(code, captured, names, argv)
            codes.append(code)
    assert 0 in codes and 2 in codes  # both outcomes happen: the mutations reach fields that matter and some that do not


@pytest.mark.parametrize("name", ["eval.json", "gate.json", "sensitivity.json", "fallback.json"])
def test_report_input_mutations(folder, tmp_path, capsys, no_plots, monkeypatch, name):
    from quant.report import render

    monkeypatch.setattr(render, "_worst_tensors", lambda *args: [])  # the histograms section reads quant.json only
    original = json.loads((folder / name).read_text())
    rng = random.Random(name)
    codes = []
    for i in range(MUTATIONS):
        work = _copy(folder, tmp_path / f"m{i}")
        (work / name).write_bytes(mutate(original, rng))
        argv = ["report", work, "--output", tmp_path / f"p{i}"]
        code, captured = _run(argv, capsys)
        _assert_clean(code, captured, [work / name], argv)
        codes.append(code)
    assert 0 in codes and 2 in codes


def test_saved_ranking_mutations(folder, tmp_path):
    from quant.cli.fallback import saved_ranking
    from quant.core.errors import QuantError

    original = json.loads((folder / "sensitivity.json").read_text())
    expected = [layer["node"] for layer in original["layers"]]
    assert saved_ranking(folder / "sensitivity.json", original["metric"]) == expected
    rng = random.Random(7)
    for i in range(300):
        path = tmp_path / f"s{i}.json"
        path.write_bytes(mutate(original, rng))
        try:
            ranking = saved_ranking(path, original["metric"])
        except QuantError as exc:
            assert str(path) in exc.message
            continue
        assert ranking is None or all(isinstance(n, str) for n in ranking)


def test_preprocess_spec_mutations(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images" / "zero"
    images.mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(images / f"{k}.png")
    spec = {"resize": [8, 8], "color": "L", "scale": 0.00392156862745098, "mean": [0.5], "std": [0.25],
            "layout": "NCHW", "dtype": "float32"}
    rng = random.Random(3)
    codes = []
    for i in range(MUTATIONS):
        path = tmp_path / f"spec{i}.json"
        path.write_bytes(mutate(spec, rng))
        argv = ["calibrate", MODEL, "--data", tmp_path / "images", "--preprocess", path, "--output", tmp_path / f"o{i}",
                "--method", "minmax"]
        code, captured = _run(argv, capsys)
        names = [path, "expects", "has rank", "is float32", "NaN or Inf"]  # or the model refuses what the spec makes
        _assert_clean(code, captured, names, argv)
        codes.append(code)
    assert 0 in codes and 2 in codes


@pytest.mark.parametrize("kind", ["dataset", "dict"])
def test_hf_metadata_mutations(tmp_path, capsys, kind):
    datasets = pytest.importorskip("datasets")
    data = np.load(CALIBRATION)
    table = datasets.Dataset.from_dict({"input": data["input"][:8].tolist(), "label": data["label"][:8].tolist()})
    base = tmp_path / "base"
    if kind == "dict":
        datasets.DatasetDict({"validation": table}).save_to_disk(str(base))
        files = ["dataset_dict.json", "validation/state.json", "validation/dataset_info.json"]
    else:
        table.save_to_disk(str(base))
        files = ["state.json", "dataset_info.json"]
    rng = random.Random(kind)
    codes = []
    for i in range(MUTATIONS):
        name = files[i % len(files)]
        work = tmp_path / f"d{i}"
        shutil.copytree(base, work)
        (work / name).write_bytes(mutate(json.loads((base / name).read_text()), rng))
        argv = ["calibrate", MODEL, "--data", work, "--output", tmp_path / f"o{i}", "--method", "minmax"]
        code, captured = _run(argv, capsys)
        _assert_clean(code, captured, [work], argv)
        codes.append(code)
    assert 0 in codes and 2 in codes
