"""Bad inputs found by trying quant as a stranger would, third round (see tests/integration/test_stranger3.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bad_inputs.cases import HELDOUT, MODEL, Case


def _save(nodes, inputs, outputs, initializers, path, opset=17):
    graph = helper.make_graph(nodes, "stranger", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def conv_fc_model(path, outputs=("logits", "cls"), names=None):
    """x [N, 3, 8, 8] -> Conv -> Relu (feat) -> Flatten -> MatMul + Add (logits [N, 10]) -> ArgMax (cls, int64)."""
    names = names or {}
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("W1", rng.normal(size=(4, 3, 3, 3))), ("B1", rng.normal(size=4) * 0.1),
        ("W2", rng.normal(size=(256, 10)) * 0.1), ("B2", rng.normal(size=10) * 0.1))]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c"], name=names.get("conv", "conv"), pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["feat"], name="relu"),
             helper.make_node("Flatten", ["feat"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "W2"], ["m"], name=names.get("fc", "fc")),
             helper.make_node("Add", ["m", "B2"], ["logits"], name="fc_add"),
             helper.make_node("ArgMax", ["logits"], ["cls"], name="argmax", axis=1, keepdims=0)]
    infos = {"logits": helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
             "feat": helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 4, 8, 8]),
             "cls": helper.make_tensor_value_info("cls", TensorProto.INT64, ["N"])}
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                 [infos[o] for o in outputs], inits, path)


def _int8(d: Path) -> Path:
    import quant

    quant.calibrate(MODEL, HELDOUT, num_samples=32).save(d / "cal")
    return d / "cal" / "model.int8.onnx"


def gate_with_an_ambiguous_output_flag(d: Path):
    # '--output' is no gate option (--output-name or --output-json?); the error report must not take it as --output-json
    return ["gate", MODEL, _int8(d), "--data", HELDOUT, "--metric", "top1", "--max-drop", "1", "--output", d / "gate.json"]


def _program(d: Path) -> Path:
    (d / "model.pt2").write_bytes(b"PK\x03\x04" + bytes(200))  # a zip, as torch.export.save writes
    return d / "model.pt2"


def eval_of_a_torch_program(d: Path):
    return ["eval", _program(d), MODEL, "--data", HELDOUT]


def gate_of_a_torch_program(d: Path):
    return ["gate", _program(d), MODEL, "--data", HELDOUT, "--metric", "top1", "--max-drop", "1"]


def _withint(d: Path) -> tuple[Path, Path, Path]:
    """conv_fc_model with outputs logits [N, 10] and cls (int64), calibrated; held-out data with labels."""
    import quant

    rng = np.random.default_rng(2)
    np.savez(d / "held.npz", x=rng.normal(size=(16, 3, 8, 8)).astype(np.float32), label=rng.integers(0, 10, 16))
    model = conv_fc_model(d / "m.onnx")
    quant.calibrate(model, d / "held.npz").save(d / "cal")
    return model, d / "cal" / "model.int8.onnx", d / "held.npz"


def gate_top_k_of_every_class(d: Path):
    model, int8, held = _withint(d)  # top10 of 10 classes: 100% whatever the model does (was: PASS 100% / 100%)
    return ["gate", model, int8, "--data", held, "--metric", "top10", "--max-drop", "1"]


def gate_sqnr_of_an_integer_output(d: Path):
    model, int8, held = _withint(d)  # eval prints n/a for it; gate said "PASS: sqnr@cls FP32 n/a, INT8 n/a; INT8 inf"
    return ["gate", model, int8, "--data", held, "--metric", "sqnr@cls", "--min-value", "30"]


def gate_cosine_of_an_integer_output(d: Path):
    model, int8, held = _withint(d)
    return ["gate", model, int8, "--data", held, "--metric", "cosine@cls", "--max-drop", "0.01"]


def sensitivity_sqnr_of_an_integer_output(d: Path):
    model, _, held = _withint(d)
    return ["sensitivity", model, "--calibration", d / "cal", "--data", held, "--metric", "sqnr@cls"]


def token_model(path):
    """ids [N, T] int64 -> Gather of a 50 x 16 embedding, times mask [N, T] -> MatMul -> out [N, T, 5]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(50, 16)).astype(np.float32), "E"),
             numpy_helper.from_array(rng.normal(size=(16, 5)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array([2], np.int64), "axis")]
    nodes = [helper.make_node("Gather", ["E", "ids"], ["emb"], name="embed"),
             helper.make_node("Unsqueeze", ["mask", "axis"], ["m3"], name="unsqueeze"),
             helper.make_node("Mul", ["emb", "m3"], ["masked"], name="mask"),
             helper.make_node("MatMul", ["masked", "W"], ["out"], name="proj")]
    return _save(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"]),
                         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", "T"])],
                 [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "T", 5])], inits, path, opset=18)


def token_ids_past_the_vocabulary(d: Path):
    ids = np.random.default_rng(0).integers(0, 50, (8, 7)) + 40  # some past the 50-row embedding
    np.savez(d / "tokens.npz", ids=ids.astype(np.int64), mask=np.ones((8, 7), np.float32))
    # ORT logged its own coloured '[E:onnxruntime:...]' line on stderr before quant's Error line
    return ["calibrate", token_model(d / "tok.onnx"), "--data", d / "tokens.npz", "--output", d / "out"]


def ray_shards_without_ray(d: Path):
    return ["calibrate", MODEL, "--data", HELDOUT, "--output", d / "out", "--ray-shards", "2"]  # was silently ignored


def refine_rounds_with_the_greedy_search(d: Path):
    from bad_inputs.cases import CALIBRATION

    import quant

    quant.calibrate(MODEL, CALIBRATION, num_samples=32).save(d / "cal")
    return ["fallback", MODEL, "--calibration", d / "cal", "--data", HELDOUT, "--metric", "top1", "--max-drop", "1",
            "--search", "greedy", "--refine-rounds", "2", "--output", d / "fb"]  # was silently ignored


def reduce_range_for_the_tensorrt_target(d: Path):
    return ["calibrate", MODEL, "--data", HELDOUT, "--output", d / "out", "--reduce-range", "on"]  # was ignored


def gate_relative_without_max_drop(d: Path):
    return ["gate", MODEL, _int8(d), "--data", HELDOUT, "--metric", "top1", "--relative", "--min-value", "50"]


def split_of_an_npz(d: Path):
    return ["eval", MODEL, _int8(d), "--data", HELDOUT, "--split", "test"]  # was silently ignored


def preprocess_from_with_array_data(d: Path):
    from PIL import Image

    images = d / "images" / "zero"
    images.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(images / f"{i}.png")
    import quant

    quant.calibrate(MODEL, d / "images", preprocess={"color": "L"}).save(d / "cal")
    return ["eval", MODEL, d / "cal" / "model.int8.onnx", "--data", HELDOUT, "--preprocess-from", d / "cal"]


def high_precision_for_the_ort_cpu_target(d: Path):
    return ["calibrate", MODEL, "--data", HELDOUT, "--output", d / "out", "--target", "ort-cpu",
            "--high-precision", "fp16"]  # was ignored, and quant.json said high_precision float16


def sqrt_model(d: Path) -> tuple[Path, Path, Path]:
    """x [N, 8] -> MatMul -> Sqrt: NaN wherever the product is negative; calibrated on data where it is not."""
    import quant

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(np.abs(rng.normal(size=(8, 4))).astype(np.float32), "W")
    model = _save([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
                   helper.make_node("Sqrt", ["h"], ["y"], name="sqrt")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [weight], d / "sqrt.onnx")
    np.savez(d / "positive.npz", x=np.abs(rng.normal(size=(20, 8))).astype(np.float32))
    np.savez(d / "held.npz", x=rng.normal(size=(20, 8)).astype(np.float32))  # some rows give NaN in FP32
    quant.calibrate(model, d / "positive.npz").save(d / "cal")
    return model, d / "cal" / "model.int8.onnx", d / "held.npz"


def gate_cosine_of_a_nan_fp32_output(d: Path):
    model, int8, held = sqrt_model(d)  # NaN rows counted as cosine 1.0: 'PASS: cosine FP32 1.0000, INT8 1.0000'
    return ["gate", model, int8, "--data", held, "--metric", "cosine", "--max-drop", "0.01"]


def gate_sqnr_of_a_nan_fp32_output(d: Path):
    model, int8, held = sqrt_model(d)
    return ["gate", model, int8, "--data", held, "--metric", "sqnr", "--min-value", "20"]


def _loader(d: Path, body: str, function: str):
    (d / "my loader.py").write_text("import numpy as np\n" + body)
    return ["calibrate", MODEL, "--data-loader-script", f"{d / 'my loader.py'}:{function}", "--output", d / "out"]


def loader_that_raises(d: Path):  # was a traceback and exit 1
    return _loader(d, "def load_data():\n    raise RuntimeError('no data here')\n", "load_data")


def loader_that_raises_while_yielding(d: Path):
    return _loader(d, "def load_data():\n    yield {'input': np.zeros((2, 1, 8, 8), np.float32)}\n"
                      "    raise OSError('disk went away')\n", "load_data")


def loader_that_fails_on_import(d: Path):
    return _loader(d, "import not_a_module_anywhere\n", "load_data")


def fixed_batch_model(path, batch: int = 4):
    """conv_fc_model (logits only) exported with its batch axis fixed to ``batch``."""
    model = onnx.load(str(conv_fc_model(path, outputs=("logits",))))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(path))
    return path


def fixed_batch_with_a_partial_last_batch(d: Path):
    np.savez(d / "cal.npz", x=np.random.default_rng(0).normal(size=(22, 3, 8, 8)).astype(np.float32))
    # was ONNX Runtime's 'Got invalid dimensions for input: x for the following indices' on a batch of 1
    return ["calibrate", fixed_batch_model(d / "b4.onnx"), "--data", d / "cal.npz", "--output", d / "out"]


def output_json_dash(d: Path):
    return ["eval", MODEL, _int8(d), "--data", HELDOUT, "--output-json", "-"]  # wrote a file named '-' in the cwd


def missing_int8_model(d: Path):
    return ["gate", MODEL, d / "cal" / "model.int8.onnx", "--data", HELDOUT, "--metric", "top1", "--max-drop", "1"]


CASES = [
    Case("gate_with_an_ambiguous_output_flag", gate_with_an_ambiguous_output_flag, "unrecognized arguments: --output"),
    Case("eval_of_a_torch_program", eval_of_a_torch_program, "is a torch.export program: only 'quant calibrate'"),
    Case("gate_of_a_torch_program", gate_of_a_torch_program, "is a torch.export program: only 'quant calibrate'"),
    Case("gate_top_k_of_every_class", gate_top_k_of_every_class, "top-10 accuracy on output 'logits' of 10 classes"),
    Case("gate_sqnr_of_an_integer_output", gate_sqnr_of_an_integer_output, "output 'cls' holds integers"),
    Case("gate_cosine_of_an_integer_output", gate_cosine_of_an_integer_output, "output 'cls' holds integers"),
    Case("sensitivity_sqnr_of_an_integer_output", sensitivity_sqnr_of_an_integer_output, "output 'cls' holds integers"),
    Case("token_ids_past_the_vocabulary", token_ids_past_the_vocabulary, "ONNX Runtime failed on a batch"),
    Case("ray_shards_without_ray", ray_shards_without_ray, "--ray-shards splits the calibration over Ray tasks"),
    Case("refine_rounds_with_the_greedy_search", refine_rounds_with_the_greedy_search,
         "--refine-rounds bounds the bisect search, but --search is greedy"),
    Case("reduce_range_for_the_tensorrt_target", reduce_range_for_the_tensorrt_target,
         "--reduce-range on applies to the ort-cpu model, but --target is tensorrt"),
    Case("gate_relative_without_max_drop", gate_relative_without_max_drop,
         "--relative makes --max-drop a percent of FP32, but the bounds of top1 have no --max-drop"),
    Case("split_of_an_npz", split_of_an_npz, "--split selects a split of a Hugging Face dataset"),
    Case("preprocess_from_with_array_data", preprocess_from_with_array_data,
         "image preprocessing options (--resize, --mean, --std, --preprocess-from, ...) were given"),
    Case("high_precision_for_the_ort_cpu_target", high_precision_for_the_ort_cpu_target,
         "--high-precision fp16 shapes model.int8.onnx (TensorRT's form), but --target ort-cpu"),
    Case("gate_cosine_of_a_nan_fp32_output", gate_cosine_of_a_nan_fp32_output,
         "metric 'cosine': the FP32 output 'y' is NaN or Inf on held-out data"),
    Case("gate_sqnr_of_a_nan_fp32_output", gate_sqnr_of_a_nan_fp32_output,
         "metric 'sqnr': the FP32 output 'y' is NaN or Inf on held-out data"),
    Case("loader_that_raises", loader_that_raises, "failed when called: RuntimeError: no data here"),
    Case("loader_that_raises_while_yielding", loader_that_raises_while_yielding,
         "failed while yielding feed 1: OSError: disk went away"),
    Case("loader_that_fails_on_import", loader_that_fails_on_import, "failed on import: ModuleNotFoundError"),
    Case("fixed_batch_with_a_partial_last_batch", fixed_batch_with_a_partial_last_batch,
         "the model's batch axis is fixed to 4, but samples 20..21 make a batch of 2"),
    Case("output_json_dash", output_json_dash, "--output-json '-' would be a file named '-'"),
    Case("missing_int8_model", missing_int8_model, "INT8 model file"),  # the hint asked for an FP32 model
]
