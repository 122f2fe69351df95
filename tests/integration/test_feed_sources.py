"""Feeds as TensorRT and PyTorch users have them: Polygraphy loader scripts and saved inputs, Python
objects (arrays, dicts, iterables, generators, torch DataLoaders) through the Python API."""
import base64
import io
import json

import numpy as np
import pytest

import quant
from conftest import run_cli
from models import dynamic_conv
from quant.core.errors import QuantError
from quant.datasets import DataSource

DATA = np.random.default_rng(3).standard_normal((12, 3, 6, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return dynamic_conv(tmp_path_factory.mktemp("feeds") / "m.onnx")


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "d.npz"
    np.savez(path, x=DATA)
    return quant.calibrate(model, path, methods=("entropy",), batch_size=4).activation_amax


def _encode_like_polygraphy(array: np.ndarray) -> dict:
    """polygraphy/json/serde.py: np.save into bytes, base64, {"array": ..., "polygraphy_class": "ndarray"}."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"array": base64.b64encode(buffer.getvalue()).decode(), "polygraphy_class": "ndarray"}


def _encode_legacy(array: np.ndarray) -> dict:
    """Polygraphy's older form: latin-1 text of the np.save bytes, marked with the legacy type key."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"array": buffer.getvalue().decode("latin-1"), "__polygraphy_encoded_ndarray": "polygraphy_serialized_json_type"}


@pytest.mark.parametrize("encode", [_encode_like_polygraphy, _encode_legacy])
def test_polygraphy_saved_inputs_calibrate_like_the_arrays(model, reference, tmp_path, encode):
    feeds = [{"x": encode(DATA[i:i + 3])} for i in range(0, 12, 3)]  # DataLoaderCache: a list of feed dicts
    (tmp_path / "inputs.json").write_text(json.dumps(feeds, indent=4))
    result = quant.calibrate(model, tmp_path / "inputs.json", methods=("entropy",), batch_size=4)
    assert result.data["samples"] == 12 and result.activation_amax == reference


def test_polygraphy_inputs_that_are_not_feeds_are_refused(tmp_path):
    (tmp_path / "outputs.json").write_text(json.dumps({"lst": [["runner", []]]}))  # a --save-outputs file
    dynamic_conv(tmp_path / "m.onnx")
    proc = run_cli(["calibrate", tmp_path / "m.onnx", "--data", tmp_path / "outputs.json", "--output", tmp_path / "o"])
    assert proc.returncode == 2 and "not a list of feed dicts" in proc.stderr and "Traceback" not in proc.stderr


LOADER = '''
import numpy as np

DATA = np.load(__file__.replace("loader.py", "data.npy"))


def load_data():
    for start in range(0, len(DATA), 5):  # Polygraphy: one feed dict per batch
        yield {"x": DATA[start:start + 5]}


def per_sample():
    return [{"x": row} for row in DATA]
'''


def test_polygraphy_data_loader_script_from_the_cli(model, reference, tmp_path):
    np.save(tmp_path / "data.npy", DATA)
    (tmp_path / "loader.py").write_text(LOADER)
    for flag, spec in (("--data-loader-script", "loader.py:load_data"), ("--data", "loader.py"),
                       ("--data", "loader.py:per_sample")):
        out = tmp_path / f"out_{spec.replace(':', '_')}"
        proc = run_cli(["calibrate", model, flag, tmp_path / spec, "--output", out, "--method", "entropy",
                        "--batch-size", "4", "--json"])
        assert proc.returncode == 0, proc.stderr
        amax = {t: v["entropy"] for t, v in json.loads(proc.stdout)["activations"].items()}
        assert amax == pytest.approx(reference["entropy"], rel=0, abs=0)


def test_loader_script_errors_are_one_line(tmp_path, model):
    (tmp_path / "loader.py").write_text("def other():\n    return []\n")
    proc = run_cli(["calibrate", model, "--data-loader-script", tmp_path / "loader.py", "--output", tmp_path / "o"])
    assert proc.returncode == 2 and "has no function 'load_data'" in proc.stderr and "other" in proc.stderr
    (tmp_path / "loader.py").write_text("def load_data():\n    yield {'x': 'text'}\n")
    proc = run_cli(["calibrate", model, "--data-loader-script", tmp_path / "loader.py", "--output", tmp_path / "o"])
    assert proc.returncode == 2 and "not an array of numbers" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def _samples_as(kind):
    if kind == "array":
        return DATA
    if kind == "dict":
        return {"x": DATA}
    if kind == "list of samples":
        return list(DATA)
    if kind == "generator of batches":
        return (DATA[i:i + 5] for i in range(0, 12, 5))
    if kind == "list of (x, y) batches":
        return [(DATA[i:i + 2], np.arange(i, i + 2)) for i in range(0, 12, 2)]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["array", "dict", "list of samples", "generator of batches", "list of (x, y) batches"])
def test_python_objects_calibrate_like_the_file(model, reference, kind):
    result = quant.calibrate(model, _samples_as(kind), methods=("entropy",), batch_size=4)
    assert result.data["samples"] == 12 and result.activation_amax == reference


def test_torch_dataloaders(model, reference, digits):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    tensors = DataLoader(torch.from_numpy(DATA), batch_size=5)
    assert quant.calibrate(model, tensors, methods=("entropy",), batch_size=4).activation_amax == reference

    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return {"x": torch.from_numpy(DATA[i])}

    dicts = DataLoader(Dicts(), batch_size=7)
    assert quant.calibrate(model, dicts, methods=("entropy",), batch_size=4).activation_amax == reference
    with np.load(digits["heldout"]) as held:
        images, labels = held["input"], held["label"]
    pairs = DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)), batch_size=64)
    report = quant.evaluate(digits["model"], digits["model"], pairs)
    plain = quant.evaluate(digits["model"], digits["model"], digits["heldout"])
    assert report.labels_source == "label" and report.task["top1"] == plain.task["top1"]
    with pytest.raises(QuantError, match="shuffles"):
        quant.calibrate(model, DataLoader(torch.from_numpy(DATA), batch_size=5, shuffle=True))


class KeysAsMethod:
    """A source written from the docs' description (``keys`` as a method, not a property)."""

    def __len__(self):
        return 12

    def keys(self):
        return ["x"]

    def sample(self, index):
        return {"x": DATA[index]}


class Documented(DataSource):
    def __len__(self):
        return 12

    @property
    def keys(self):
        return ["x"]

    def sample(self, index):
        return {"x": DATA[index]}


def test_user_data_sources_with_keys_as_property_or_method(model, reference):
    for source in (KeysAsMethod(), Documented()):
        assert quant.calibrate(model, source, methods=("entropy",), batch_size=4).activation_amax == reference


@pytest.mark.parametrize("bad", [42, object(), "not/a/path.npz", [{"x": "text"}], [1, {"x": 1}]])
def test_unsupported_python_data_is_a_quant_error(model, bad):
    with pytest.raises(QuantError):
        quant.calibrate(model, bad)


def test_hugging_face_dataset_in_memory(model, reference):
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"x": DATA.tolist()},
                                       features=datasets.Features({"x": datasets.Array3D((3, 6, 6), "float32")}))
    assert quant.calibrate(model, table, methods=("entropy",), batch_size=4).activation_amax == reference
