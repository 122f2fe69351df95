"""Data as people store it: large .npz archives read without loading them, one key per sample (ragged)."""
import tracemalloc

import numpy as np
import onnx
import pytest

import quant
from conftest import run_cli
from models import dynamic_conv, two_inputs
from quant.core.errors import QuantError
from quant.datasets import InputSpec, iter_batches, open_source

ROWS, WIDTH = 2000, 5000  # 40 MB of float32


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    data = np.random.default_rng(0).standard_normal((ROWS, WIDTH), dtype=np.float32)
    np.savez(folder / "stored.npz", x=data, label=np.arange(ROWS) % 7)
    np.savez_compressed(folder / "deflated.npz", x=data, label=np.arange(ROWS) % 7)
    np.save(folder / "x.npy", data)
    return folder, data


@pytest.mark.parametrize("name", ["stored.npz", "deflated.npz", "x.npy"])
def test_a_pass_over_an_archive_does_not_load_it(big, name):
    folder, data = big
    source = open_source(folder / name)
    key = source.keys[0]
    spec = [InputSpec("x", np.dtype("float32"), ("N", WIDTH))]
    tracemalloc.start()
    try:
        total = np.zeros(WIDTH, np.float64)
        for _, feeds in iter_batches(source, np.arange(ROWS), spec, {"x": key}, 8):
            total += feeds["x"].sum(axis=0, dtype=np.float64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < data.nbytes / 10, f"peak {peak / 2**20:.1f} MB for a {data.nbytes / 2**20:.0f} MB member"
    np.testing.assert_allclose(total, data.sum(axis=0, dtype=np.float64), rtol=1e-6)
    if name != "x.npy":
        np.testing.assert_array_equal(source.column("label"), np.arange(ROWS) % 7)


def test_rows_read_in_any_order_are_the_rows(big):
    folder, data = big
    for name in ("stored.npz", "deflated.npz"):
        source = open_source(folder / name)
        for index in (5, 1999, 0, 3, 3, 1000):
            np.testing.assert_array_equal(source.sample(index)["x"], data[index])


def test_stored_compressed_and_in_memory_arrays_calibrate_identically(tmp_path):
    model = dynamic_conv(tmp_path / "m.onnx")
    data = np.random.default_rng(2).standard_normal((24, 3, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=data)
    np.savez_compressed(tmp_path / "c.npz", x=data)
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(data))
    ranges = [quant.calibrate(model, tmp_path / f, methods=("entropy",), batch_size=5).activation_amax
              for f in ("s.npz", "c.npz", "f.npz")]
    assert ranges[0] == ranges[1] == ranges[2]


def test_damaged_archive_member_is_refused(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((100, 50), np.float32))
    raw = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(QuantError, match="cannot read NumPy data"):
        open_source(tmp_path / "t.npz")


# ---------------------------------------------------------------- one key per sample
def _ragged(count=9, seed=0, batch_axis=False):
    rng = np.random.default_rng(seed)
    samples = [rng.standard_normal((3, 5, 4 + (i % 3) * 2)).astype(np.float32) for i in range(count)]
    return {f"x_{i:04d}": (s[None] if batch_axis else s) for i, s in enumerate(samples)}, samples


def test_npz_with_one_key_per_sample_of_different_shapes_calibrates(tmp_path):
    model = dynamic_conv(tmp_path / "m.onnx")
    arrays, samples = _ragged()
    np.savez(tmp_path / "ragged.npz", **arrays, label=np.arange(9) % 5)
    result = quant.calibrate(model, tmp_path / "ragged.npz", methods=("minmax",), batch_size=4)
    assert result.data["samples"] == 9
    assert sorted(result.data["input_shapes"]["x"]) == [[3, 5, 4], [3, 5, 6], [3, 5, 8]]
    assert result.activation_amax["minmax"]["x"] == max(float(np.abs(s).max()) for s in samples)
    one_by_one = quant.calibrate(model, tmp_path / "ragged.npz", methods=("minmax",), batch_size=1)
    assert one_by_one.activation_amax == result.activation_amax


def test_folder_of_npy_per_sample_and_feeds_with_batch_axis(tmp_path):
    model = dynamic_conv(tmp_path / "m.onnx")
    arrays, samples = _ragged(batch_axis=True)
    folder = tmp_path / "feeds"
    folder.mkdir()
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value)
    a = quant.calibrate(model, folder, methods=("minmax",), batch_size=3)
    np.savez_compressed(tmp_path / "plain.npz", **{k: v[0] for k, v in arrays.items()})
    b = quant.calibrate(model, tmp_path / "plain.npz", methods=("minmax",), batch_size=3)
    assert a.activation_amax == b.activation_amax and a.data["samples"] == 9


def test_eval_on_per_sample_keys_uses_the_label_rows(tmp_path):
    model = dynamic_conv(tmp_path / "m.onnx")
    arrays, _ = _ragged(count=8)
    np.savez(tmp_path / "ragged.npz", **arrays, label=np.arange(8) % 5)
    report = quant.evaluate(model, model, tmp_path / "ragged.npz", batch_size=4)
    assert report.samples == 8 and report.task["top1"]["fp32"] == report.task["top1"]["int8"]


def test_models_whose_inputs_are_named_like_per_sample_keys_read_rows(tmp_path):
    path = two_inputs(tmp_path / "two.onnx")
    model = onnx.load(str(path))
    for old, new in (("a", "in_1"), ("b", "in_2")):
        for node in model.graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
        next(i for i in model.graph.input if i.name == old).name = new
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", in_1=rng.standard_normal((6, 4)).astype(np.float32),
             in_2=rng.standard_normal((6, 6)).astype(np.float32))
    result = quant.calibrate(tmp_path / "renamed.onnx", tmp_path / "d.npz", methods=("minmax",))
    assert result.data["samples"] == 6 and result.data["input_map"] == {"in_1": "in_1", "in_2": "in_2"}


def test_input_map_to_keys_that_look_per_sample_reads_rows(tmp_path):
    model = two_inputs(tmp_path / "two.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", layer_1=rng.standard_normal((6, 4)).astype(np.float32),
             layer_2=rng.standard_normal((6, 6)).astype(np.float32))
    result = quant.calibrate(model, tmp_path / "d.npz", methods=("minmax",), input_map={"a": "layer_1", "b": "layer_2"})
    assert result.data["samples"] == 6


def test_per_sample_keys_with_different_counts_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_0=np.zeros(3), x_1=np.zeros(4), y_0=np.zeros(2), y_1=np.zeros(2), y_2=np.zeros(1))
    with pytest.raises(QuantError, match="different numbers of samples"):
        open_source(tmp_path / "d.npz")


def test_cli_calibrates_per_sample_npz(tmp_path):
    model = dynamic_conv(tmp_path / "m.onnx")
    arrays, _ = _ragged()
    np.savez(tmp_path / "ragged.npz", **arrays)
    proc = run_cli(["calibrate", model, "--data", tmp_path / "ragged.npz", "--output", tmp_path / "out",
                    "--method", "minmax"])
    assert proc.returncode == 0, proc.stderr
    assert "9 samples" in proc.stdout and (tmp_path / "out" / "model.int8.onnx").exists()
