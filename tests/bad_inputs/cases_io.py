"""Bad-input corpus of the output contract: data loss, outputs that are inputs, outputs inside input
folders, and OS errors. Checked by tests/integration/test_output_contract.py: exit code 2, one 'Error:'
line (and at most one 'Hint:'), no traceback, and every file in the case's folder byte-identical and
still present afterwards (nothing added, nothing removed, nothing changed).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case

_CACHE: dict[str, Path] = {}


def quant_output(d: Path, name: str = "R") -> Path:
    """A real calibration folder written by quant (made once, copied: the copy's hashes still match)."""
    if "cal" not in _CACHE:
        import atexit
        import tempfile

        import quant

        root = Path(tempfile.mkdtemp(prefix="quant-io-cases-"))
        atexit.register(shutil.rmtree, root, True)
        quant.calibrate(MODEL, CALIBRATION, methods=("minmax",)).save(root / "cal")
        _CACHE["cal"] = root / "cal"
    shutil.copytree(_CACHE["cal"], d / name)
    return d / name


def _user_files(folder: Path) -> None:
    (folder / "thesis.tex").write_text("\\section{Results} six months of work\n")
    (folder / "data.csv").write_text("a,b\n1,2\n")


def rerun_with_user_files(d: Path):
    _user_files(quant_output(d))
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "R"]


def forged_quant_json(d: Path):
    """The issue's case: a folder with a quant.json and summary.json that quant did not write."""
    (d / "R").mkdir()
    (d / "R" / "quant.json").write_text('{"format": "quant-calibration/1"}\n')
    (d / "R" / "summary.json").write_text("{}\n")
    _user_files(d / "R")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "R"]


def edited_artifact(d: Path):
    """A quant folder whose quant.json the user edited: the hash no longer matches, so it is theirs now."""
    folder = quant_output(d)
    (folder / "quant.json").write_text((folder / "quant.json").read_text() + " \n")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", folder, "--method", "mse"]


def manifest_with_wrong_hash(d: Path):
    folder = quant_output(d)
    (folder / "notes.txt").write_text("my notes\n")
    text = (folder / ".quant-manifest.json").read_text()
    (folder / ".quant-manifest.json").write_text(text.replace('"files": {', '"files": {"notes.txt": "00", ', 1))
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", folder]


def user_file_in_subfolder(d: Path):
    folder = quant_output(d)
    (folder / "plots").mkdir()
    (folder / "plots" / "mine.png").write_bytes(b"\x89PNG user's figure")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", folder]


def preprocess_spec_in_output(d: Path):
    folder = quant_output(d)
    (folder / "spec.json").write_text('{"resize": [8, 8], "color": "L"}\n')
    return ["calibrate", MODEL, "--data", CALIBRATION, "--preprocess", folder / "spec.json", "--output", folder]


def labels_in_fallback_output(d: Path):
    folder = quant_output(d)
    np.save(folder / "labels.npy", np.load(HELDOUT)["label"])
    return ["fallback", MODEL, "--calibration", quant_output(d, "cal"), "--data", HELDOUT, "--labels",
            folder / "labels.npy", "--metric", "top1", "--max-drop", "5", "--output", folder]


def fallback_output_with_notes(d: Path):
    folder = quant_output(d)
    (folder / "notes.md").write_text("keep me\n")
    return ["fallback", MODEL, "--calibration", quant_output(d, "cal"), "--data", HELDOUT, "--metric", "top1",
            "--max-drop", "5", "--output", folder]


def recalibrate_output_with_notes(d: Path):
    folder = quant_output(d)
    (folder / "notes.md").write_text("keep me\n")
    return ["recalibrate", quant_output(d, "cal"), "--method", "mse", "--output", folder]


def recalibrate_output_inside_its_input(d: Path):
    cal = quant_output(d, "cal")
    return ["recalibrate", cal, "--method", "mse", "--output", cal / "mse"]


def output_folder_is_a_file(d: Path):
    (d / "R").write_text("a user's file\n")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "R"]


def _images(d: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (d / "images" / label).mkdir(parents=True)
        for index in range(3):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(d / "images" / label / f"{index}.png")
    return d / "images"


def output_inside_image_folder(d: Path):
    images = _images(d)
    return ["calibrate", MODEL, "--data", images, "--color", "L", "--resize", "8,8", "--output", images / "out"]


def eval_json_inside_data_folder(d: Path):
    (d / "arrays").mkdir()
    np.save(d / "arrays" / "input.npy", np.load(HELDOUT)["input"][:20])
    return ["eval", MODEL, MODEL, "--data", d / "arrays", "--output-json", d / "arrays" / "eval.json"]


def _local_model(d: Path) -> Path:
    shutil.copy(MODEL, d / "m.onnx")
    return d / "m.onnx"


def eval_json_is_fp32_model(d: Path):
    model = _local_model(d)
    return ["eval", model, MODEL, "--data", HELDOUT, "--output-json", model]


def eval_json_hardlink_of_model(d: Path):
    model = _local_model(d)
    os.link(model, d / "link.json")
    return ["eval", model, MODEL, "--data", HELDOUT, "--output-json", d / "link.json"]


def eval_json_symlink_to_model(d: Path):
    model = _local_model(d)
    os.symlink(model, d / "link.json")
    return ["eval", model, MODEL, "--data", HELDOUT, "--output-json", d / "link.json"]


def eval_json_is_external_data(d: Path):
    proto = onnx.load(str(MODEL))
    onnx.save_model(proto, str(d / "big.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="big.onnx.data", size_threshold=0)
    return ["eval", d / "big.onnx", MODEL, "--data", HELDOUT, "--output-json", d / "big.onnx.data"]


def gate_junit_is_int8_model(d: Path):
    folder = quant_output(d)
    return ["gate", MODEL, folder / "model.int8.onnx", "--data", HELDOUT, "--max-drop", "5",
            "--junit", folder / "model.int8.onnx"]


def gate_json_is_user_file(d: Path):
    (d / "gate.json").write_text('{"mine": true}\n')
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--max-drop", "5", "--json-out", d / "gate.json"]


def gate_outputs_same_file(d: Path):
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--max-drop", "5", "--json-out", d / "g", "--junit", d / "g"]


def report_over_user_report(d: Path):
    (d / "site").mkdir()
    (d / "site" / "report.md").write_text("# my own report\n")
    return ["report", quant_output(d), "--output", d / "site"]


def report_over_user_plot(d: Path):
    folder = quant_output(d)
    (folder / "plots").mkdir()
    (folder / "plots" / "histogram_0.png").write_bytes(b"\x89PNG the user's figure")
    return ["report", folder]


def sensitivity_over_user_csv(d: Path):
    (d / "out").mkdir()
    (d / "out" / "sensitivity.csv").write_text("my,own,table\n")
    return ["sensitivity", MODEL, "--calibration", quant_output(d), "--data", HELDOUT, "--output", d / "out"]


def bench_over_user_json(d: Path):
    (d / "bench.json").write_text('{"mine": 1}\n')
    return ["bench", MODEL, MODEL, "--output-json", d / "bench.json"]


def eval_json_is_a_folder(d: Path):
    (d / "results").mkdir()
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--output-json", d / "results"]


def eval_json_name_too_long(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--output-json", d / ("x" * 300 + ".json")]


def output_folder_name_too_long(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / ("o" * 300)]


def eval_json_symlink_loop(d: Path):
    os.symlink(d / "b.json", d / "a.json")
    os.symlink(d / "a.json", d / "b.json")
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--output-json", d / "a.json"]


def output_folder_symlink_loop(d: Path):
    os.symlink(d / "b", d / "a")
    os.symlink(d / "a", d / "b")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "a"]


def nul_in_external_data_location(d: Path):
    model = onnx.load(str(MODEL))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights\0.bin"
    (d / "nul.onnx").write_bytes(model.SerializeToString())
    return ["calibrate", d / "nul.onnx", "--data", CALIBRATION, "--output", d / "out"]


def empty_output_folder(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", ""]


def empty_output_json(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--output-json", ""]


CASES = [
    Case("io_rerun_with_user_files", rerun_with_user_files, "which was not written by quant"),
    Case("io_forged_quant_json", forged_quant_json, "which was not written by quant"),
    Case("io_edited_artifact", edited_artifact, "'quant.json', which was not written by quant"),
    Case("io_manifest_with_wrong_hash", manifest_with_wrong_hash, "'notes.txt', which was not written by quant"),
    Case("io_user_file_in_subfolder", user_file_in_subfolder, "holds 'plots'"),
    Case("io_preprocess_spec_in_output", preprocess_spec_in_output, "contains the input 'spec.json'"),
    Case("io_labels_in_fallback_output", labels_in_fallback_output, "contains the input 'labels.npy'"),
    Case("io_fallback_output_with_notes", fallback_output_with_notes, "'notes.md', which was not written by quant"),
    Case("io_recalibrate_output_with_notes", recalibrate_output_with_notes, "'notes.md', which was not written by quant"),
    Case("io_recalibrate_output_inside_its_input", recalibrate_output_inside_its_input, "is inside the input folder"),
    Case("io_output_folder_is_a_file", output_folder_is_a_file, "exists and is not a folder"),
    Case("io_output_inside_image_folder", output_inside_image_folder, "is inside the input folder"),
    Case("io_eval_json_inside_data_folder", eval_json_inside_data_folder, "is inside the input folder"),
    Case("io_eval_json_is_fp32_model", eval_json_is_fp32_model, "is the input"),
    Case("io_eval_json_hardlink_of_model", eval_json_hardlink_of_model, "is the input"),
    Case("io_eval_json_symlink_to_model", eval_json_symlink_to_model, "is the input"),
    Case("io_eval_json_is_external_data", eval_json_is_external_data, "is the input"),
    Case("io_gate_junit_is_int8_model", gate_junit_is_int8_model, "is the input"),
    Case("io_gate_json_is_user_file", gate_json_is_user_file, "exists and was not written by quant"),
    Case("io_gate_outputs_same_file", gate_outputs_same_file, "name the same file"),
    Case("io_report_over_user_report", report_over_user_report, "exists and was not written by quant"),
    Case("io_report_over_user_plot", report_over_user_plot, "exists and was not written by quant"),
    Case("io_sensitivity_over_user_csv", sensitivity_over_user_csv, "exists and was not written by quant"),
    Case("io_bench_over_user_json", bench_over_user_json, "exists and was not written by quant"),
    Case("io_eisdir_output_json_is_a_folder", eval_json_is_a_folder, "is a folder"),
    Case("io_enametoolong_output_json", eval_json_name_too_long, "too long"),
    Case("io_enametoolong_output_folder", output_folder_name_too_long, "too long"),
    Case("io_eloop_output_json", eval_json_symlink_loop, "symlink loop"),
    Case("io_eloop_output_folder", output_folder_symlink_loop, "symlink loop"),
    Case("io_nul_in_external_data_location", nul_in_external_data_location, "NUL byte"),
    Case("io_empty_output_folder", empty_output_folder, "empty path"),
    Case("io_empty_output_json", empty_output_json, "empty path"),
]
