"""Bad-input cases of the data sources (run by tests/integration/test_bad_inputs_data.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bad_inputs.cases import CALIBRATION, GOOD, HELDOUT, MODEL, Case


def image_options_with_arrays(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--mean", "0.5"]


def eval_image_options_with_arrays(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--resize", "8,8"]


def per_sample_keys_uneven(d: Path):
    np.savez(d / "ragged.npz", input_0000=GOOD[0], input_0001=GOOD[1], label=np.zeros(5, np.int64))
    return ["calibrate", MODEL, "--data", d / "ragged.npz", "--output", d / "out"]


def per_sample_key_pickled(d: Path):
    np.savez(d / "objects.npz", input_0000=GOOD[0], input_0001=np.array([{"a": 1}], dtype=object))
    return ["calibrate", MODEL, "--data", d / "objects.npz", "--output", d / "out"]


def truncated_stored_npz(d: Path):
    np.savez(d / "full.npz", input=np.zeros((64, 1, 8, 8), np.float32))
    raw = (d / "full.npz").read_bytes()
    (d / "full.npz").unlink()
    (d / "cut.npz").write_bytes(raw[:-4000])
    return ["calibrate", MODEL, "--data", d / "cut.npz", "--output", d / "out"]


def swapped_models(d: Path):
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("minmax",)).save(d / "cal")
    return ["eval", d / "cal" / "model.int8.onnx", MODEL, "--data", HELDOUT]


def swapped_models_gate(d: Path):
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("minmax",)).save(d / "cal")
    return ["gate", d / "cal" / "model.int8.onnx", MODEL, "--data", HELDOUT, "--max-drop", "1"]


def percentile_with_entropy(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--method", "entropy",
            "--percentile", "99.9"]


def topk_above_classes(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--topk", "1,10"]


def fractional_float_labels(d: Path):
    labels = np.load(HELDOUT)["label"].astype(np.float32)
    labels[7] = 2.5
    np.save(d / "labels.npy", labels)
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.npy"]


def soft_labels(d: Path):
    np.save(d / "labels.npy", np.full((540, 10), 0.1, np.float32))
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.npy"]


def csv_without_label_column(d: Path):
    (d / "labels.csv").write_text("class\n" + "1\n" * 540)
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.csv"]


def csv_with_file_names_for_arrays(d: Path):
    (d / "labels.csv").write_text("filename,label\n" + "".join(f"{i}.png,1\n" for i in range(540)))
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.csv"]


def txt_labels_with_a_gap(d: Path):
    (d / "labels.txt").write_text("1\n2\n\n3\n")
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--labels", d / "labels.txt"]


def loader_script_missing_function(d: Path):
    (d / "loader.py").write_text("def make():\n    return []\n")
    return ["calibrate", MODEL, "--data-loader-script", f"{d / 'loader.py'}:load_data", "--output", d / "out"]


def loader_script_syntax_error(d: Path):
    (d / "loader.py").write_text("def load_data(:\n")
    return ["calibrate", MODEL, "--data-loader-script", d / "loader.py", "--output", d / "out"]


def loader_script_yields_nothing(d: Path):
    (d / "loader.py").write_text("def load_data():\n    return iter(())\n")
    return ["calibrate", MODEL, "--data-loader-script", d / "loader.py", "--output", d / "out"]


def loader_script_yields_strings(d: Path):
    (d / "loader.py").write_text("def load_data():\n    return ['x', 'y']\n")
    return ["calibrate", MODEL, "--data-loader-script", d / "loader.py", "--output", d / "out"]


def polygraphy_json_not_feeds(d: Path):
    (d / "inputs.json").write_text('{"lst": []}')
    return ["calibrate", MODEL, "--data", d / "inputs.json", "--output", d / "out"]


def polygraphy_json_broken_array(d: Path):
    (d / "inputs.json").write_text('[{"input": {"array": "bm90IGFuIG5weSBmaWxl", "polygraphy_class": "ndarray"}}]')
    return ["calibrate", MODEL, "--data", d / "inputs.json", "--output", d / "out"]


def data_and_loader_script_both(d: Path):
    (d / "loader.py").write_text("def load_data():\n    return []\n")
    return ["calibrate", MODEL, "--data", CALIBRATION, "--data-loader-script", d / "loader.py", "--output", d / "out"]


CASES = [
    Case("image_options_with_arrays", image_options_with_arrays, "holds arrays, not images"),
    Case("eval_image_options_with_arrays", eval_image_options_with_arrays, "holds arrays, not images"),
    Case("per_sample_keys_uneven", per_sample_keys_uneven, "'label' has 5 rows, but there are 2 samples"),
    Case("per_sample_key_pickled", per_sample_key_pickled, "cannot read NumPy data"),
    Case("truncated_stored_npz", truncated_stored_npz, "cannot read NumPy data"),
    Case("swapped_models", swapped_models, "it is an INT8 model"),
    Case("swapped_models_gate", swapped_models_gate, "it is an INT8 model"),
    Case("percentile_with_entropy", percentile_with_entropy, "--percentile applies to the percentile method"),
    Case("topk_above_classes", topk_above_classes, "top-10 accuracy on an output of 10 classes"),
    Case("fractional_float_labels", fractional_float_labels, "non-integer class id 2.5"),
    Case("soft_labels", soft_labels, "row 0 is not one-hot"),
    Case("csv_without_label_column", csv_without_label_column, "has no 'label' column"),
    Case("csv_with_file_names_for_arrays", csv_with_file_names_for_arrays, "matches rows by file name"),
    Case("txt_labels_with_a_gap", txt_labels_with_a_gap, "has an empty line 3"),
    Case("loader_script_missing_function", loader_script_missing_function, "has no function 'load_data'"),
    Case("loader_script_syntax_error", loader_script_syntax_error, "has a syntax error on line 1"),
    Case("loader_script_yields_nothing", loader_script_yields_nothing, "yielded no feeds"),
    Case("loader_script_yields_strings", loader_script_yields_strings, "cannot read as model inputs"),
    Case("polygraphy_json_not_feeds", polygraphy_json_not_feeds, "not a list of feed dicts"),
    Case("polygraphy_json_broken_array", polygraphy_json_broken_array, "cannot read"),
    Case("data_and_loader_script_both", data_and_loader_script_both, "not allowed with argument"),
]
