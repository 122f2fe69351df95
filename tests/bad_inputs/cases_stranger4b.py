"""Bad inputs found by trying quant's printed numbers as a stranger would (fourth round; see
tests/integration/test_stranger4b.py): a number that cannot be right for the output's shape is refused."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bad_inputs.cases import Case


def save_model(nodes, inputs, outputs, initializers: dict, path: Path) -> Path:
    graph = helper.make_graph(nodes, "stranger4b", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def info(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def sequence_model(path: Path, softmax: bool = False, close: bool = False) -> Path:
    """x [N, 5, 8] -> MatMul [8, 4] -> logits [N, 5, 4]: 5 time steps, 4 classes on the LAST axis (or
    Softmax over it: probs). ``close``: the 4 classes score nearly alike, so INT8 flips many argmaxes."""
    w = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    if close:
        w = (w[:, :1] + 0.05 * w).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm")]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1))
    return save_model(nodes, [info("x", ["N", 5, 8])], [info("probs" if softmax else "logits", ["N", 5, 4])],
                      {"W": w}, path)


def binary_model(path: Path) -> Path:
    """x [N, 8] -> MatMul [8, 1] -> logit [N, 1] (one binary logit per sample)."""
    w = np.random.default_rng(0).normal(size=(8, 1)).astype(np.float32)
    return save_model([helper.make_node("MatMul", ["x", "W"], ["logit"], name="mm")],
                      [info("x", ["N", 8])], [info("logit", ["N", 1])], {"W": w}, path)


def calibrated(d: Path, model: Path, sample_shape, *options) -> tuple[Path, Path, Path]:
    """(model, its model.int8.onnx, held-out .npy) with 40 seeded samples of ``sample_shape``."""
    import quant

    np.save(d / "x.npy", np.random.default_rng(1).normal(size=(40, *sample_shape)).astype(np.float32))
    quant.calibrate(model, d / "x.npy", **dict(options)).save(d / "cal")
    return model, d / "cal" / "model.int8.onnx", d / "x.npy"


def gate_agreement_over_the_time_steps(d: Path):
    # [N, 5, 4] sequence logits: the default axis 1 scored argmax over the 5 time steps ("99.38% (axis 1)")
    model, int8, held = calibrated(d, sequence_model(d / "seq.onnx"), (5, 8))
    return ["gate", model, int8, "--data", held, "--metric", "agreement", "--max-drop", "1"]


def gate_agreement_of_a_binary_logit(d: Path):
    # argmax over an axis of size 1 is 0 for FP32 and INT8 alike: 'PASS ... 100.0000%' whatever the model does
    model, int8, held = calibrated(d, binary_model(d / "bin.onnx"), (8,), ("include", ("mm",)))
    return ["gate", model, int8, "--data", held, "--metric", "agreement@logit", "--max-drop", "0"]


def sensitivity_agreement_of_a_binary_logit(d: Path):
    model, _, held = calibrated(d, binary_model(d / "bin.onnx"), (8,), ("include", ("mm",)))
    return ["sensitivity", model, "--calibration", d / "cal", "--data", held, "--metric", "agreement"]


def binary_and_score_model(path: Path) -> Path:
    """x [N, 8] -> MatMul [8, 1] -> logit [N, 1] -> Squeeze -> score [N]."""
    w = np.random.default_rng(0).normal(size=(8, 1)).astype(np.float32)
    return save_model([helper.make_node("MatMul", ["x", "W"], ["logit"], name="mm"),
                       helper.make_node("Squeeze", ["logit", "axes"], ["score"], name="squeeze")],
                      [info("x", ["N", 8])], [info("logit", ["N", 1]), info("score", ["N"])],
                      {"W": w, "axes": np.array([1], np.int64)}, path)


def gate_cosine_of_one_score_per_sample(d: Path):
    # the cosine of one value is its sign: 'PASS: cosine@score FP32 1.0000, INT8 1.0000' at any error size
    model, int8, held = calibrated(d, binary_and_score_model(d / "score.onnx"), (8,), ("include", ("mm",)))
    return ["gate", model, int8, "--data", held, "--metric", "cosine@score", "--max-drop", "0.001"]


def value_dependent_topk(d: Path) -> tuple[Path, Path, Path]:
    """y = x @ W [N, 4]; top [N, k] = TopK(y, k) with k = 2 when max(y) over the batch exceeds a threshold set
    between FP32's and INT8's maximum on the first batch, else 1: the INT8 output has another shape."""
    import onnxruntime as ort

    import quant

    w = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    x = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    np.save(d / "x.npy", x)

    def build(thr, outputs, path):
        nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
                 helper.make_node("ReduceMax", ["y"], ["m"], name="rmax", keepdims=0),
                 helper.make_node("Greater", ["m", "thr"], ["g"], name="gt"),
                 helper.make_node("Cast", ["g"], ["gi"], name="cast", to=TensorProto.INT64),
                 helper.make_node("Add", ["gi", "one"], ["k1"], name="addk"),
                 helper.make_node("Reshape", ["k1", "shp"], ["k"], name="rs"),
                 helper.make_node("TopK", ["y", "k"], ["top", "idx"], name="topk", axis=1)]
        inits = {"W": w, "thr": np.array(thr, np.float32), "one": np.array(1, np.int64),
                 "shp": np.array([1], np.int64)}
        return save_model(nodes, [info("x", ["N", 8])], [info(o, ["N", "K" if o == "top" else 4]) for o in outputs],
                          inits, path)

    probe = build(0.0, ("top", "y"), d / "probe.onnx")  # the ranges do not depend on the threshold
    quant.calibrate(probe, d / "x.npy").save(d / "probe")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    int8_y = ort.InferenceSession(str(d / "probe" / "model.int8.onnx"), options).run(["y"], {"x": x[:32]})[0]
    fp32_max, int8_max = float(np.max(x[:32] @ w)), float(np.max(int8_y))
    assert fp32_max != int8_max
    model = build((fp32_max + int8_max) / 2, ("top",), d / "topk.onnx")
    quant.calibrate(model, d / "x.npy").save(d / "cal")
    for leftover in (d / "probe.onnx", d / "probe"):  # only the case's own inputs stay
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    return model, d / "cal" / "model.int8.onnx", d / "x.npy"


def eval_of_an_output_whose_shape_int8_changes(d: Path):
    model, int8, held = value_dependent_topk(d)  # was: a ValueError traceback
    return ["eval", model, int8, "--data", held]


def gate_of_an_output_whose_shape_int8_changes(d: Path):
    model, int8, held = value_dependent_topk(d)  # was: one shape broadcast against the other, a made-up SQNR (cosine 1.0691)
    return ["gate", model, int8, "--data", held, "--metric", "sqnr", "--min-value", "10"]


def _digits_int8(d: Path) -> Path:
    import quant

    from bad_inputs.cases import HELDOUT, MODEL

    quant.calibrate(MODEL, HELDOUT, num_samples=32).save(d / "cal")
    return d / "cal" / "model.int8.onnx"


def gate_min_top1_as_a_fraction(d: Path):
    from bad_inputs.cases import HELDOUT, MODEL

    # top1 is in percent: 0.99 is 0.99%, which every model passed ('PASS ... INT8 99.0741 >= min 0.99')
    return ["gate", MODEL, _digits_int8(d), "--data", HELDOUT, "--metric", "top1", "--min-value", "0.99"]


def gate_min_cosine_above_one(d: Path):
    from bad_inputs.cases import HELDOUT, MODEL

    return ["gate", MODEL, _digits_int8(d), "--data", HELDOUT, "--metric", "cosine", "--min-value", "2"]


def transposed_model(path: Path) -> Path:
    """x [N, 8] -> MatMul [8, 10] -> Transpose -> logits [10, N]: the batch on the last axis."""
    w = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    return save_model([helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
                       helper.make_node("Transpose", ["m"], ["logits"], name="transpose", perm=[1, 0])],
                      [info("x", ["N", 8])], [info("logits", [10, "N"])], {"W": w}, path)


def eval_batch_last_with_batches_of_its_classes(d: Path):
    # batches of 10 samples make [10, N] look batch-first: eval printed 'logits [N, 10] 97.50% (axis 1)'
    model, int8, held = calibrated(d, transposed_model(d / "cn.onnx"), (8,))
    return ["eval", model, int8, "--data", held, "--batch-size", "10"]


def gate_batch_last_with_batches_of_its_classes(d: Path):
    model, int8, held = calibrated(d, transposed_model(d / "cn.onnx"), (8,))
    return ["gate", model, int8, "--data", held, "--batch-size", "10", "--metric", "sqnr", "--min-value", "20"]


CASES = [
    Case("gate_agreement_over_the_time_steps", gate_agreement_over_the_time_steps,
         "may hold classes on axis 1 ([N, C, L]) or on axis 2 ([N, T, C], sequence logits)"),
    Case("gate_agreement_of_a_binary_logit", gate_agreement_of_a_binary_logit,
         "output 'logit' [N, 1] has 1 value on axis 1: its argmax agreement would be 100% whatever the model does"),
    Case("sensitivity_agreement_of_a_binary_logit", sensitivity_agreement_of_a_binary_logit,
         "its argmax agreement would be 100% whatever the model does"),
    Case("eval_batch_last_with_batches_of_its_classes", eval_batch_last_with_batches_of_its_classes,
         "model output 'logits' is declared [10, N]: the batch axis 'N' of the inputs is its axis 1, not the first"),
    Case("gate_batch_last_with_batches_of_its_classes", gate_batch_last_with_batches_of_its_classes,
         "model output 'logits' is declared [10, N]"),
    Case("gate_cosine_of_one_score_per_sample", gate_cosine_of_one_score_per_sample,
         "metric 'cosine': output 'score' [N] has one value per sample: its cosine is only the sign (+1 or -1)"),
    Case("eval_of_an_output_whose_shape_int8_changes", eval_of_an_output_whose_shape_int8_changes,
         "for the same batch, so the two cannot be compared value by value"),
    Case("gate_of_an_output_whose_shape_int8_changes", gate_of_an_output_whose_shape_int8_changes,
         "for the same batch, so the two cannot be compared value by value"),
    Case("gate_min_top1_as_a_fraction", gate_min_top1_as_a_fraction,
         "--min-value 0.99 for top1: top1 is in percent (0..100), so this bound is 0.99%, which almost any model meets"),
    Case("gate_min_cosine_above_one", gate_min_cosine_above_one,
         "--min-value 2 for cosine: a cosine is at most 1, so no model reaches it"),
]
