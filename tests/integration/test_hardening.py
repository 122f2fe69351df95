"""Interrupts, determinism, external data and a fuzz run over the loaders."""
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import quant
from conftest import run_cli
from models import dynamic_conv
from quant.core.errors import QuantError
from quant.core.onnx_model import load_model
from quant.datasets import open_source


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_collection_leaves_nothing_and_a_rerun_starts_clean(digits, tmp_path, signum):
    many = np.repeat(np.load(digits["calibration"])["input"], 250, axis=0)  # 50,000 samples, batch 1: slow
    np.save(tmp_path / "many.npy", many)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "quant", "calibrate", str(digits["model"]), "--data",
                             str(tmp_path / "many.npy"), "--batch-size", "1", "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.npy"]
    rerun = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", out])
    assert rerun.returncode == 0 and (out / "quant.json").exists()


def test_two_cli_runs_are_byte_identical(digits, tmp_path):
    for name in ("a", "b"):
        proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "entropy,mse",
                        "--output", tmp_path / name, "--batch-size", "7" if name == "a" else "64"])
        assert proc.returncode == 0, proc.stderr
    for method in ("entropy", "mse"):
        for artifact in ("model.int8.onnx", "calibration.cache", "quant.json", "histograms.npz"):
            a = (tmp_path / "a" / method / artifact).read_bytes()
            b = (tmp_path / "b" / method / artifact).read_bytes()
            if artifact == "quant.json":  # the batch size is recorded in the config; nothing else may differ
                a, b = (x.replace(b'"batch_size": 7', b"").replace(b'"batch_size": 64', b"") for x in (a, b))
                a, b = (x.replace(b'"batches": 29', b"").replace(b'"batches": 4', b"") for x in (a, b))
            assert a == b, (method, artifact)


def test_model_with_external_data_in_and_out(tmp_path):
    source = dynamic_conv(tmp_path / "plain.onnx")
    model = onnx.load(str(source))
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").stat().st_size > 1000
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((6, 3, 5, 5)).astype(np.float32))
    direct = quant.calibrate(source, tmp_path / "x.npy", methods=("minmax",))
    external = quant.calibrate(folder / "model.onnx", tmp_path / "x.npy", methods=("minmax",), external_data=True,
                                 weight_storage="float")  # float weights: large enough to go to the .data file
    assert external.activation_amax == direct.activation_amax
    external.save(tmp_path / "out")
    written = tmp_path / "out" / "model.int8.onnx"
    assert (tmp_path / "out" / "model.int8.onnx.data").stat().st_size > 1000
    onnx.checker.check_model(str(written), full_check=True)
    session = ort.InferenceSession(str(written), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.load(tmp_path / "x.npy")[:2]})[0].shape == (2, 5)
    weights = (tmp_path / "out" / "model.int8.onnx.data").stat().st_size
    assert load_model(written).ByteSize() >= written.stat().st_size + weights - 64  # read back with its weights


VALID = None


def _model_bytes():
    global VALID
    if VALID is None:
        from conftest import DIGITS

        VALID = (DIGITS / "model.onnx").read_bytes()
    return VALID


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_onnx_loader_never_fails_with_anything_but_a_user_error(tmp_path, data):
    original = _model_bytes()
    kind = data.draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=2000))
    elif kind == "truncate":
        blob = original[: data.draw(st.integers(0, len(original)))]
    elif kind == "flip":
        blob = bytearray(original)
        for position in data.draw(st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=20)):
            blob[position] ^= data.draw(st.integers(1, 255))
        blob = bytes(blob)
    else:
        cut = data.draw(st.integers(0, len(original)))
        blob = original[:cut] + data.draw(st.binary(max_size=200)) + original[cut:]
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(blob)
    try:
        load_model(path)
    except QuantError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([".npy", ".npz", ".parquet", ".arrow", ".png"]), st.binary(max_size=3000), st.data())
def test_fuzz_data_readers_never_fail_with_anything_but_a_user_error(tmp_path, suffix, blob, data):
    if suffix == ".png":
        folder = tmp_path / "imgs"
        folder.mkdir(exist_ok=True)
        path = folder / "a.png"
    else:
        path = tmp_path / f"fuzz{suffix}"
    if suffix in (".npy", ".npz") and data.draw(st.booleans()):  # start from a valid file and damage it
        import io

        buffer = io.BytesIO()
        (np.save if suffix == ".npy" else lambda b, a: np.savez(b, input=a))(buffer, np.ones((3, 1, 8, 8), np.float32))
        valid = buffer.getvalue()
        cut = data.draw(st.integers(0, len(valid)))
        blob = valid[:cut] + blob[:50] + valid[cut + 50:]
    path.write_bytes(blob)
    try:
        source = open_source(path.parent if suffix == ".png" else path)
        for index in range(min(len(source), 3)):
            source.sample(index)
    except QuantError:
        pass


def test_models_over_the_protobuf_limit_take_the_external_data_path(digits, tmp_path, monkeypatch):
    """Over 2 GB, models go to ONNX Runtime and to disk with external data; the limit is lowered to test it."""
    import quant.core.onnx_model as onnx_model
    import quant.pipeline.calibration as pipeline

    reference = quant.calibrate(digits["model"], digits["calibration"])
    monkeypatch.setattr(onnx_model, "MAX_PROTOBUF", 10_000)
    real_save = pipeline.save_model
    monkeypatch.setattr(pipeline, "save_model",
                        lambda model, path, external=False: real_save(model, path, external or model.ByteSize() > 10_000))
    spilled = quant.calibrate(digits["model"], digits["calibration"])
    assert spilled.activation_amax == reference.activation_amax
    spilled.save(tmp_path / "out")
    assert (tmp_path / "out" / "model.int8.onnx.data").exists()
    report = quant.evaluate(digits["model"], tmp_path / "out" / "model.int8.onnx", digits["heldout"])
    assert report.task["top1"]["drop"] <= 1.0
