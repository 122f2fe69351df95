"""Bad --eval-fn functions (a user evaluation function, see quant.eval.user_eval): each is one Error line, exit 2.

Found by writing evaluation functions as a newcomer would: a typo in the name, a function written for
another tool's signature, one that returns a formatted string, one that raises or divides 0 by 0, one that
feeds the model a wrong input name or a float64 array of the wrong shape."""
from __future__ import annotations

from pathlib import Path

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case

FUNCTIONS = '''
import sys
import numpy as np

def accuracy(run, data):
    hits = 0
    for feeds, labels in data.batches():
        hits += int(np.sum(run(feeds)[0].argmax(1) == labels))
    return 100.0 * hits / len(data)

def scores(run, data):
    return {"accuracy": accuracy(run, data), "wer": 1.0}

def one_argument(run):
    return 1.0

def validation_fn(model, data, device):
    return 1.0

def string(run, data):
    return f"{accuracy(run, data):.2f}%"

def none(run, data):
    accuracy(run, data)

def nan(run, data):
    return float("nan")

def empty(run, data):
    return {}

def bad_key(run, data):
    return {3: 1.0}

def raises(run, data):
    raise ValueError("boom")

def exits(run, data):
    sys.exit(3)

def wrong_input(run, data):
    return float(run({"image": np.zeros((1, 64), np.float32)})[0].sum())

def wrong_shape(run, data):
    return float(run(np.zeros((1, 3))))

def missing_column(run, data):
    return float(len(data.column("gt_boxes")))

not_a_function = 3
'''


def _file(d: Path) -> Path:
    path = d / "evaluate.py"
    path.write_text(FUNCTIONS)
    return path


def _gate(function: str):
    def build(d: Path):
        return ["gate", MODEL, MODEL, "--data", HELDOUT, "--num-samples", "64", "--eval-fn", f"{_file(d)}:{function}",
                "--max-drop", "1"]

    return build


def missing_file(d: Path):
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--eval-fn", f"{d / 'nowhere.py'}:evaluate", "--max-drop", "1"]


def not_a_spec(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--eval-fn", "evaluate"]


def eval_fn_and_metric_in_sensitivity(d: Path):
    import quant

    quant.calibrate(MODEL, CALIBRATION).save(d / "cal")
    return ["sensitivity", MODEL, "--calibration", d / "cal", "--data", HELDOUT, "--metric", "top1",
            "--eval-fn", f"{_file(d)}:accuracy"]


def eval_fn_on_a_methods_folder(d: Path):
    import quant

    quant.calibrate(MODEL, CALIBRATION, methods=("entropy", "mse")).save(d / "cal")
    return ["eval", MODEL, d / "cal", "--data", HELDOUT, "--eval-fn", f"{_file(d)}:accuracy"]


def eval_fn_with_ray(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--eval-fn", f"{_file(d)}:accuracy", "--ray"]


def direction_without_eval_fn(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--lower-is-better"]


CASES = [
    Case("eval_fn_direction_without_eval_fn", direction_without_eval_fn,
         "--lower-is-better says which way an --eval-fn score goes, and no --eval-fn is given"),
    Case("eval_fn_missing_function", _gate("evaluate"), "has no function 'evaluate'"),
    Case("eval_fn_not_a_function", _gate("not_a_function"), "is not a function (it is int 3)"),
    Case("eval_fn_missing_file", missing_file, "nowhere.py' does not exist"),
    Case("eval_fn_not_a_spec", not_a_spec, "is not FILE.py:FUNCTION or MODULE:FUNCTION"),
    Case("eval_fn_one_parameter", _gate("one_argument"), "takes (run); it is called as evaluate(run, data)"),
    Case("eval_fn_three_parameters", _gate("validation_fn"), "takes (model, data, device); it is called as"),
    Case("eval_fn_returns_a_string", _gate("string"), "returned the string '"),
    Case("eval_fn_returns_none", _gate("none"), "returned None on the FP32 model; it must return one number"),
    Case("eval_fn_returns_nan", _gate("nan"), "returned nan on the FP32 model: not a finite value"),
    Case("eval_fn_returns_an_empty_dict", _gate("empty"), "returned an empty dict"),
    Case("eval_fn_returns_a_dict_with_a_number_key", _gate("bad_key"), "returned a dict with the key 3"),
    Case("eval_fn_several_scores_none_named", _gate("scores"), "returned 2 scores (accuracy, wer); name the one"),
    Case("eval_fn_unknown_score", _gate("scores@f1"), "returned no score 'f1' on the FP32 model"),
    Case("eval_fn_raises", _gate("raises"), "failed on the FP32 model: ValueError: boom"),
    Case("eval_fn_exits", _gate("exits"), "called sys.exit(3) on the FP32 model"),
    Case("eval_fn_feeds_a_wrong_input", _gate("wrong_input"), "gave unknown input(s) 'image'"),
    Case("eval_fn_feeds_a_wrong_shape", _gate("wrong_shape"), "the runtime refused the feeds (input [1, 3] float32)"),
    Case("eval_fn_reads_a_missing_key", _gate("missing_column"), "the held-out data has no key 'gt_boxes' (keys: "),
    Case("eval_fn_and_metric_in_sensitivity", eval_fn_and_metric_in_sensitivity, "scores one metric, got top1, "),
    Case("eval_fn_on_a_methods_folder", eval_fn_on_a_methods_folder, "--eval-fn evaluates one INT8 model"),
    Case("eval_fn_with_ray", eval_fn_with_ray, "--ray does not run an evaluation function"),
]
