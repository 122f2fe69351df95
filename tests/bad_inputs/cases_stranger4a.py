"""Bad inputs found by trying quant as a stranger would, fourth round: files and the output contract
(see tests/integration/test_stranger4a.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from bad_inputs.cases import Case
from bad_inputs.cases_stranger3 import conv_fc_model


def external_model(path: Path, location: str = "w.bin") -> Path:
    """conv_fc_model (logits only) saved with every weight in one external file ``location`` (may be in a sub-folder)."""
    scratch = path.with_name(path.stem + ".inline.onnx")
    model = onnx.load(str(conv_fc_model(scratch, outputs=("logits",))))
    scratch.unlink()
    (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=0)
    return path


def _data(d: Path) -> Path:
    np.savez(d / "cal.npz", x=np.random.default_rng(4).normal(size=(16, 3, 8, 8)).astype(np.float32))
    return d / "cal.npz"


def external_data_is_a_folder(d: Path):
    model = external_model(d / "m.onnx")  # was: onnx's ValidationError as a traceback, exit 1
    (d / "w.bin").unlink()
    (d / "w.bin").mkdir()
    return ["calibrate", model, "--data", _data(d), "--output", d / "out"]


def _replaced_weights(d: Path) -> tuple[Path, Path, Path]:
    """A calibration of an external-data model, then its w.bin rewritten with other weights (the .onnx unchanged)."""
    import quant

    model, data = external_model(d / "m.onnx"), _data(d)
    quant.calibrate(model, data).save(d / "cal")
    weights = np.fromfile(d / "w.bin", dtype=np.float32)
    (weights * 3).astype(np.float32).tofile(d / "w.bin")
    return model, data, d / "cal"


def recalibrate_after_the_weights_file_changed(d: Path):
    _, _, cal = _replaced_weights(d)  # was: new weights silently quantized with the old weights' histograms
    return ["recalibrate", cal, "--method", "mse", "--output", d / "rec"]


def sensitivity_after_the_weights_file_changed(d: Path):
    model, data, cal = _replaced_weights(d)
    return ["sensitivity", model, "--calibration", cal, "--data", data, "--metric", "sqnr"]


def _folder_with_external_data(d: Path) -> tuple[Path, Path, Path]:
    """Two methods, --external-data and --bias-correction: each method's folder holds model.int8.onnx.data and
    bias_correction.npz, which eval, sensitivity and fallback read."""
    import quant

    model, data = external_model(d / "m.onnx"), _data(d)
    quant.calibrate(model, data, methods=("minmax", "mse"), external_data=True, bias_correction=True).save(d / "cal")
    return model, data, d / "cal"


def folder_eval_json_onto_an_int8_weights_file(d: Path):
    model, data, cal = _folder_with_external_data(d)  # was: the INT8 model's weights replaced by eval.json
    return ["eval", model, cal, "--data", data, "--output-json", cal / "mse" / "model.int8.onnx.data"]


def folder_eval_json_onto_the_bias_correction(d: Path):
    model, data, cal = _folder_with_external_data(d)  # was: bias_correction.npz replaced by eval.json
    return ["eval", model, cal, "--data", data, "--output-json", cal / "minmax" / "bias_correction.npz"]


def _calibrated(d: Path) -> tuple[Path, Path]:
    import quant

    model = external_model(d / "m.onnx")
    quant.calibrate(model, _data(d)).save(d / "cal")
    return model, d / "cal"


def build_print_command_onto_its_quant_json(d: Path):
    _, cal = _calibrated(d)  # was: exit 0 and a trtexec command whose --saveEngine replaces quant.json
    return ["build", cal, "--output", cal / "quant.json", "--print-command"]


def build_implicit_onto_the_fp32_model_it_reads(d: Path):
    model, cal = _calibrated(d)  # was: --force let the engine replace the FP32 model (refused only for want of TensorRT)
    return ["build", cal, "--implicit", "--output", model, "--force"]


def build_implicit_print_command_onto_the_weights_file(d: Path):
    _, cal = _calibrated(d)
    return ["build", cal, "--implicit", "--output", d / "w.bin", "--print-command"]


def build_implicit_after_the_weights_file_changed(d: Path):
    _, _, cal = _replaced_weights(d)  # was: a command building the new weights with the old weights' cache
    return ["build", cal, "--implicit", "--output", d / "m.engine", "--print-command"]


def fallback_with_the_ranking_of_another_calibration(d: Path):
    """sensitivity.json of a minmax calibration given to the fallback of an mse one of the same model. Was: its
    ranking silently used (it names the same layers), the fallback path ordered by another calibration's scores."""
    from conftest import run_cli

    model, data = external_model(d / "m.onnx"), _data(d)
    for method in ("minmax", "mse"):
        assert run_cli(["calibrate", model, "--data", data, "--method", method, "--output", d / method]).returncode == 0
    assert run_cli(["sensitivity", model, "--calibration", d / "minmax", "--data", data, "--metric", "sqnr"]
                   ).returncode == 0
    return ["fallback", model, "--calibration", d / "mse", "--data", data, "--metric", "sqnr", "--min-value", "50",
            "--sensitivity", d / "minmax" / "sensitivity.json", "--output", d / "fb"]


def data_from_a_device(d: Path):
    model = external_model(d / "m.onnx")  # was: "the data source '/dev/null' is empty: ... put images in the folder"
    return ["calibrate", model, "--data", "/dev/null", "--output", d / "out"]


def labels_from_a_device(d: Path):
    _, cal = _calibrated(d)  # was: "the data has no labels column '/dev/null'"
    return ["eval", d / "m.onnx", cal, "--data", d / "cal.npz", "--labels", "/dev/null"]


def eval_fn_from_a_device(d: Path):
    _, cal = _calibrated(d)  # was: "the file '/dev/null' does not exist"
    return ["eval", d / "m.onnx", cal, "--data", d / "cal.npz", "--eval-fn", "/dev/null:evaluate"]


def recalibrate_with_the_histograms_of_another_run(d: Path):
    """Folder a's histograms.npz replaced by folder b's (same model, other data). Was: b's ranges written under a's
    data provenance (quant.json 'data': a's source and sample count)."""
    import shutil

    import quant

    model, data = external_model(d / "m.onnx"), _data(d)
    np.savez(d / "other.npz", x=np.random.default_rng(9).normal(size=(16, 3, 8, 8)).astype(np.float32) * 5)
    quant.calibrate(model, data).save(d / "a")
    quant.calibrate(model, d / "other.npz").save(d / "b")
    shutil.copyfile(d / "b" / "histograms.npz", d / "a" / "histograms.npz")
    return ["recalibrate", d / "a", "--method", "mse", "--output", d / "r"]


REPLACED = "the external data of the model"
CASES = [
    Case("external_data_is_a_folder", external_data_is_a_folder, "external data 'w.bin' of"),
    Case("recalibrate_after_the_weights_file_changed", recalibrate_after_the_weights_file_changed, REPLACED),
    Case("sensitivity_after_the_weights_file_changed", sensitivity_after_the_weights_file_changed, REPLACED),
    Case("folder_eval_json_onto_an_int8_weights_file", folder_eval_json_onto_an_int8_weights_file,
         "model.int8.onnx.data' is the input"),
    Case("folder_eval_json_onto_the_bias_correction", folder_eval_json_onto_the_bias_correction,
         "bias_correction.npz' is the input"),
    Case("build_print_command_onto_its_quant_json", build_print_command_onto_its_quant_json, "quant.json' is the input"),
    Case("build_implicit_onto_the_fp32_model_it_reads", build_implicit_onto_the_fp32_model_it_reads, "m.onnx' is the input"),
    Case("build_implicit_print_command_onto_the_weights_file", build_implicit_print_command_onto_the_weights_file,
         "w.bin' is the input"),
    Case("build_implicit_after_the_weights_file_changed", build_implicit_after_the_weights_file_changed,
         "changed since calibration"),
    Case("fallback_with_the_ranking_of_another_calibration", fallback_with_the_ranking_of_another_calibration,
         "ranks the layers of the calibration"),
    Case("data_from_a_device", data_from_a_device, "data '/dev/null' is a device, not a file"),
    Case("labels_from_a_device", labels_from_a_device, "labels file '/dev/null' is a device, not a file"),
    Case("eval_fn_from_a_device", eval_fn_from_a_device, "file '/dev/null' is a device, not a file"),
    Case("recalibrate_with_the_histograms_of_another_run", recalibrate_with_the_histograms_of_another_run,
         "histograms.npz' is not the histograms.npz quant wrote into"),
]
