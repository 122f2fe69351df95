"""Bad inputs found by trying models nobody on the team made (fifth stranger round, models and data; see
tests/integration/test_stranger5a.py): a metric asked of class indices is refused, not computed as an argmax of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from bad_inputs.cases import Case
from bad_inputs.cases_stranger4b import info, save_model


def token_classes_model(path: Path) -> Path:
    """x [N, 4, 3] -> MatMul [3, 5] -> logits [N, 4, 5] (4 positions, 5 classes) -> ArgMax(-1) -> cls [N, 4] int64,
    as a token classifier exports it: the only 2-D output holds class indices."""
    w = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    return save_model([helper.make_node("MatMul", ["x", "W"], ["logits"], name="mm"),
                       helper.make_node("ArgMax", ["logits"], ["cls"], name="argmax", axis=-1, keepdims=0)],
                      [info("x", ["N", 4, 3])], [info("logits", ["N", 4, 5]), info("cls", ["N", 4], TensorProto.INT64)],
                      {"W": w}, path)


def calibrated_token_classes(d: Path) -> tuple[Path, Path, Path]:
    """The model, its INT8 model (calibrated on 32 samples) and held-out data with labels 0..3."""
    import quant

    rng = np.random.default_rng(1)
    model = token_classes_model(d / "tokens.onnx")
    np.save(d / "cal.npy", rng.normal(size=(32, 4, 3)).astype(np.float32))
    np.savez(d / "held.npz", x=rng.normal(size=(40, 4, 3)).astype(np.float32), label=np.arange(40) % 4)
    quant.calibrate(model, d / "cal.npy").save(d / "cal")
    return model, d / "cal" / "model.int8.onnx", d / "held.npz"


def eval_labels_of_class_indices(d: Path):
    model, int8, held = calibrated_token_classes(d)  # was: top1 'cls' [N, 4] = argmax over the 4 class indices
    return ["eval", model, int8, "--data", held]


def gate_top1_of_class_indices(d: Path):
    model, int8, held = calibrated_token_classes(d)
    return ["gate", model, int8, "--data", held, "--metric", "top1", "--max-drop", "1"]


def gate_top1_named_on_class_indices(d: Path):
    model, int8, held = calibrated_token_classes(d)
    return ["gate", model, int8, "--data", held, "--metric", "top1@cls", "--max-drop", "1"]


def gate_agreement_of_class_indices(d: Path):
    model, int8, held = calibrated_token_classes(d)  # was: 'agreement@cls' argmax over positions of the indices
    return ["gate", model, int8, "--data", held, "--metric", "agreement@cls", "--max-drop", "1"]


def eval_output_name_of_class_indices(d: Path):
    model, int8, _ = calibrated_token_classes(d)  # was: accepted, worst samples 'by SQNR of output cls'
    return ["eval", model, int8, "--data", d / "cal.npy", "--output-name", "cls"]


def gate_agreement_of_an_argmax_per_sample(d: Path):
    from bad_inputs.cases_stranger3 import _withint

    model, int8, held = _withint(d)  # cls [N] int64; the hint said 'choose --metric cosine or sqnr', both refused for it
    return ["gate", model, int8, "--data", held, "--metric", "agreement@cls", "--max-drop", "1"]


def if_model(path):
    """x [N, 3, 6, 6] -> Conv (16) -> Relu -> If(mean(x) > 0): then Conv 3x3, else Conv 1x1 (both read r)."""
    rng = np.random.default_rng(0)
    then_branch = helper.make_graph([helper.make_node("Conv", ["r", "W2"], ["t"], name="then_conv", pads=[1] * 4)],
                                    "then", [], [info("t", ["N", 16, 6, 6])])
    else_branch = helper.make_graph([helper.make_node("Conv", ["r", "Wb"], ["e"], name="else_conv")],
                                    "else", [], [info("e", ["N", 16, 6, 6])])
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["x"], ["m"], name="mean", keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    return save_model(nodes, [info("x", ["N", 3, 6, 6])], [info("y", ["N", 16, 6, 6])],
                      {"W1": rng.normal(size=(16, 3, 3, 3)).astype(np.float32),
                       "W2": rng.normal(size=(16, 16, 3, 3)).astype(np.float32),
                       "Wb": rng.normal(size=(16, 16, 1, 1)).astype(np.float32), "zero": np.array(0, np.float32)}, path)


def _if_model(d: Path) -> tuple[Path, Path]:
    np.save(d / "x.npy", np.random.default_rng(1).normal(size=(6, 3, 6, 6)).astype(np.float32))
    return if_model(d / "if.onnx"), d / "x.npy"


def include_a_conv_inside_an_if(d: Path):
    model, data = _if_model(d)  # quant.json lists then_conv as unquantized; was: 'names nodes the model does not have'
    return ["calibrate", model, "--data", data, "--output", d / "out", "--include", "then_conv"]


def exclude_a_conv_inside_an_if(d: Path):
    model, data = _if_model(d)
    return ["calibrate", model, "--data", data, "--output", d / "out", "--exclude", "else_conv"]


def uint8_image_model(d: Path) -> tuple[Path, Path]:
    """x [N, 3, 8, 8] uint8 -> Cast -> Conv (a deployment model that takes raw pixels), and a folder of 4 PNGs."""
    from PIL import Image

    rng = np.random.default_rng(3)
    model = save_model([helper.make_node("Cast", ["x"], ["xf"], name="cast", to=TensorProto.FLOAT),
                        helper.make_node("Conv", ["xf", "W"], ["y"], name="conv")],
                       [info("x", ["N", 3, 8, 8], TensorProto.UINT8)], [info("y", ["N", 8, 6, 6])],
                       {"W": rng.normal(size=(8, 3, 3, 3)).astype(np.float32)}, d / "uint8.onnx")
    (d / "images").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / "images" / f"{i}.png")
    return model, d / "images"


def uint8_images_with_a_mean(d: Path):
    model, images = uint8_image_model(d)  # was: --mean silently not applied, and quant.json recorded it
    return ["calibrate", model, "--data", images, "--dtype", "uint8", "--mean", "0.5", "--output", d / "out"]


def int8_images(d: Path):
    model, images = uint8_image_model(d)  # was: pixels 128..255 wrapped to -128..-1 by astype
    return ["calibrate", model, "--data", images, "--dtype", "int8", "--output", d / "out"]


def nan_in_one_sample(d: Path):
    x = np.random.default_rng(4).normal(size=(12, 4, 3)).astype(np.float32)
    x[7, 2, 1] = np.nan  # was: 'in the batch of samples 0..11', the user left to search 12 samples
    np.save(d / "x.npy", x)
    return ["calibrate", token_classes_model(d / "tokens.onnx"), "--data", d / "x.npy", "--batch-size", "12",
            "--output", d / "out"]


def qdq_inside_an_if(d: Path):
    """Q/DQ in an If branch only (the main graph has none): was calibrated and quantized a second time."""
    then_branch = helper.make_graph([helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"], name="q"),
                                     helper.make_node("DequantizeLinear", ["q", "s", "z"], ["t"], name="dq")],
                                    "then", [], [info("t", ["N", 16, 4, 4])])
    else_branch = helper.make_graph([helper.make_node("Identity", ["c"], ["e"], name="id")], "else", [],
                                    [info("e", ["N", 16, 4, 4])])
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("ReduceMean", ["x"], ["m"], name="mean", keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    model = save_model(nodes, [info("x", ["N", 3, 6, 6])], [info("y", ["N", 16, 4, 4])],
                       {"W": np.random.default_rng(5).normal(size=(16, 3, 3, 3)).astype(np.float32),
                        "zero": np.array(0, np.float32), "s": np.array(0.1, np.float32), "z": np.array(0, np.int8)},
                       d / "qdq_if.onnx")
    np.save(d / "x.npy", np.random.default_rng(6).normal(size=(4, 3, 6, 6)).astype(np.float32))
    return ["calibrate", model, "--data", d / "x.npy", "--output", d / "out"]


CASES = [
    Case("eval_labels_of_class_indices", eval_labels_of_class_indices, "'cls' [N, 4] of integers"),
    Case("gate_top1_of_class_indices", gate_top1_of_class_indices, "'cls' [N, 4] of integers"),
    Case("gate_top1_named_on_class_indices", gate_top1_named_on_class_indices,
         "labels: output 'cls' holds integers (class indices, counts or a mask), not class scores"),
    Case("gate_agreement_of_class_indices", gate_agreement_of_class_indices,
         "metric 'agreement': output 'cls' holds integers"),
    Case("eval_output_name_of_class_indices", eval_output_name_of_class_indices,
         "--output-name: output 'cls' holds integers"),
    Case("gate_agreement_of_an_argmax_per_sample", gate_agreement_of_an_argmax_per_sample,
         "metric 'agreement': output 'cls' holds integers"),
    Case("include_a_conv_inside_an_if", include_a_conv_inside_an_if,
         "--include then_conv: this node is inside a subgraph of If 'branch'"),
    Case("exclude_a_conv_inside_an_if", exclude_a_conv_inside_an_if,
         "--exclude else_conv: this node is inside a subgraph of If 'branch'"),
    Case("uint8_images_with_a_mean", uint8_images_with_a_mean,
         "preprocess dtype uint8 feeds the pixels as stored: scale, mean and std apply to float dtypes only"),
    Case("int8_images", int8_images, "preprocess dtype int8 cannot hold 8-bit pixel values (0 to 255)"),
    Case("nan_in_one_sample", nan_in_one_sample,
         "input 'x' contains NaN or Inf in the batch of samples 0..11 (first: sample 7)"),
    Case("qdq_inside_an_if", qdq_inside_an_if, "the model already contains quantization nodes"),
]
