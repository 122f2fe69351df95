"""Every data source a user can point --data at, mapped onto the model's inputs by name."""
import json

import numpy as np
import pytest
from PIL import Image

import quant
from conftest import run_cli
from models import dynamic_conv, no_weighted_ops, two_inputs
from quant.core.errors import QuantError
from quant.datasets import Preprocess, open_source


@pytest.fixture()
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            size = (20 + 4 * i, 16 + 2 * i)
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_image_folder_labels_and_preprocessing(image_folder):
    source = open_source(image_folder, Preprocess(resize=(8, 10), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert len(source) == 6 and source.classes == ["cat", "dog"]
    np.testing.assert_array_equal(source.column("label"), [0, 0, 0, 1, 1, 1])
    sample = source.sample(4)
    assert sample["input"].shape == (3, 8, 10) and sample["input"].dtype == np.float32
    raw = np.asarray(Image.open(image_folder / "dog" / "1.png").convert("RGB").resize((10, 8), resample=2), np.float32)
    np.testing.assert_allclose(sample["input"], ((raw / 255 - 0.5) / 0.25).transpose(2, 0, 1), atol=1e-6)
    nhwc = open_source(image_folder, Preprocess(resize=(8, 10), layout="NHWC", color="L")).sample(0)["input"]
    assert nhwc.shape == (8, 10, 1)


def test_variable_image_sizes_calibrate_without_resize(image_folder, tmp_path):
    model = dynamic_conv(tmp_path / "dyn.onnx")
    result = quant.calibrate(model, image_folder, batch_size=4)
    assert result.data["samples"] == 6
    assert len(result.data["input_shapes"]["x"]) == 3  # three distinct sizes, batched separately
    fixed = quant.calibrate(model, image_folder, batch_size=1)
    assert fixed.activation_amax == result.activation_amax


def test_npy_file_and_npy_folder(tmp_path):
    model = dynamic_conv(tmp_path / "dyn.onnx")
    data = np.random.default_rng(1).standard_normal((10, 3, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", data)
    a = quant.calibrate(model, tmp_path / "x.npy", methods=("minmax",))
    b = quant.calibrate(model, folder, methods=("minmax",))
    assert a.activation_amax == b.activation_amax
    assert a.activation_amax["minmax"]["x"] == float(np.abs(data).max())


def test_several_inputs_mapped_by_name_and_by_input_map(tmp_path):
    model = two_inputs(tmp_path / "two.onnx")
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((16, 4)).astype(np.float32), rng.standard_normal((16, 6)).astype(np.float32) * 3
    np.savez(tmp_path / "named.npz", a=a, b=b)
    np.savez(tmp_path / "other.npz", left=a, right=b)
    named = quant.calibrate(model, tmp_path / "named.npz", methods=("minmax",))
    mapped = quant.calibrate(model, tmp_path / "other.npz", methods=("minmax",), input_map={"a": "left", "b": "right"})
    assert named.activation_amax == mapped.activation_amax
    assert named.activation_amax["minmax"] == {"a": float(np.abs(a).max()), "b": float(np.abs(b).max())}
    with pytest.raises(QuantError, match="no array for model input 'a'"):
        quant.calibrate(model, tmp_path / "other.npz")
    proc = run_cli(["calibrate", model, "--data", tmp_path / "other.npz", "--input-map", "a=left",
                    "--input-map", "b=nope", "--output", tmp_path / "o"])
    assert proc.returncode == 2 and "points 'b' at 'nope'" in proc.stderr


def test_huggingface_dataset_saved_to_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    model = two_inputs(tmp_path / "two.onnx")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((12, 4)).astype(np.float32), rng.standard_normal((12, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 12)
    table = datasets.Dataset.from_dict({"a": a.tolist(), "b": b.tolist(), "label": labels.tolist()})
    table.save_to_disk(str(tmp_path / "hf"))
    datasets.DatasetDict({"validation": table}).save_to_disk(str(tmp_path / "hfdict"))
    table.to_parquet(str(tmp_path / "data.parquet"))
    np.savez(tmp_path / "same.npz", a=a, b=b)
    expected = quant.calibrate(model, tmp_path / "same.npz", methods=("entropy",)).activation_amax
    for source, split in ((tmp_path / "hf", None), (tmp_path / "hfdict", "validation"), (tmp_path / "data.parquet", None)):
        assert quant.calibrate(model, source, methods=("entropy",), split=split).activation_amax == expected
    report = quant.evaluate(model, model, tmp_path / "hf", labels="label")
    assert report.labels_source == "label" and report.task["top1"]["drop"] == 0.0
    with pytest.raises(QuantError, match="has no split 'test'"):
        quant.calibrate(model, tmp_path / "hfdict", split="test")


def test_huggingface_image_column_goes_through_preprocessing(tmp_path, image_folder):
    datasets = pytest.importorskip("datasets")
    files = sorted(image_folder.rglob("*.png"))
    table = datasets.Dataset.from_dict({"image": [str(f) for f in files], "label": [0] * len(files)})
    table = table.cast_column("image", datasets.Image())
    table.save_to_disk(str(tmp_path / "hfimg"))
    model = dynamic_conv(tmp_path / "dyn.onnx")
    spec = Preprocess(resize=(8, 8))
    from_hf = quant.calibrate(model, tmp_path / "hfimg", preprocess=spec, input_map={"x": "image"}, methods=("minmax",))
    from_folder = quant.calibrate(model, image_folder, preprocess=spec, methods=("minmax",))
    assert from_hf.activation_amax == from_folder.activation_amax


def test_nothing_to_quantize_is_a_clear_outcome(tmp_path):
    model = no_weighted_ops(tmp_path / "relu.onnx")
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    proc = run_cli(["calibrate", model, "--data", tmp_path / "x.npy", "--output", tmp_path / "out"])
    assert proc.returncode == 2 and proc.stderr.startswith("Error: nothing to quantize")
    assert not (tmp_path / "out").exists()


def test_num_samples_draws_a_seeded_subset(digits):
    a = quant.calibrate(digits["model"], digits["calibration"], num_samples=50, seed=1)
    b = quant.calibrate(digits["model"], digits["calibration"], num_samples=50, seed=1, batch_size=3)
    c = quant.calibrate(digits["model"], digits["calibration"], num_samples=50, seed=2)
    assert a.data["sha256"] == b.data["sha256"] != c.data["sha256"]
    assert a.activation_amax == b.activation_amax and a.data["samples"] == 50


def test_preprocess_spec_file(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"resize": [4, 4], "mean": [0.5], "std": [0.5], "color": "L"}))
    assert Preprocess.from_json(tmp_path / "spec.json") == Preprocess(resize=(4, 4), mean=(0.5,), std=(0.5,), color="L")
    (tmp_path / "bad.json").write_text(json.dumps({"size": [4, 4]}))
    with pytest.raises(QuantError, match="unknown keys"):
        Preprocess.from_json(tmp_path / "bad.json")


def test_model_with_a_fixed_batch_of_one(digits, tmp_path):
    import onnx

    model = onnx.load(str(digits["model"]))
    for value in (model.graph.input[0], model.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    onnx.save(model, str(tmp_path / "batch1.onnx"))
    fixed = quant.calibrate(tmp_path / "batch1.onnx", digits["calibration"], batch_size=32)
    free = quant.calibrate(digits["model"], digits["calibration"])
    assert fixed.data["batches"] == 200 and fixed.activation_amax == free.activation_amax
    report = quant.evaluate(tmp_path / "batch1.onnx", fixed.qdq_model(), digits["heldout"], batch_size=16)
    assert report.samples == 540
