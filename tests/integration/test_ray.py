"""Ray: calibration, sensitivity and fallback on a local 2-CPU cluster give what one process gives.

The cluster is started once for the module with ``ray start --head --num-cpus 2`` (as a user would) and
stopped at the end; every call connects to it by address.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import quant  # noqa: E402
from quant.core.errors import QuantError  # noqa: E402
from quant.datasets import DataSource, open_source  # noqa: E402
from quant.distributed import RayOptions  # noqa: E402
from quant.distributed.ray_cluster import FAULT_KILLS_ENV, FAULT_MARKER_ENV  # noqa: E402
from quant.pipeline import fallback, sensitivity  # noqa: E402
from conftest import run_cli  # noqa: E402

ARTIFACTS = ("model.int8.onnx", "model.ort-cpu.int8.onnx", "calibration.cache", "quant.json", "histograms.npz")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-CPU cluster on this machine. Token authentication is off for it (the drivers here do not
    share a token with it); the tests' processes inherit RAY_AUTH_MODE from os.environ."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env = dict(os.environ)
    start = subprocess.run([str(ray_bin), "start", "--head", "--num-cpus", "2", "--port", str(port),
                            "--include-dashboard", "false", "--disable-usage-stats", f"--temp-dir={temp}"],
                           capture_output=True, text=True, env=env, timeout=180)
    if start.returncode != 0:
        pytest.fail(f"ray start failed: {start.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_cluster(temp)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stop_cluster(temp: Path) -> None:
    """Stop this test's cluster only: its processes name its temp folder on their command lines.

    (`ray stop` would end every Ray process of the machine, a cluster another test session uses too.)"""
    import signal
    import time

    def ours() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if str(temp).encode() in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while ours() and time.monotonic() < deadline:
            time.sleep(0.2)


def _saved(result, folder: Path) -> dict[str, bytes]:
    result.save(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_calibration_is_byte_identical_for_1_and_2_workers_and_uneven_shards(digits, cluster, tmp_path):
    options = dict(methods=("entropy", "mse"), batch_size=16, target="all")
    serial = _saved(quant.calibrate(digits["model"], digits["calibration"], **options), tmp_path / "serial")
    assert {Path(name).name for name in serial} >= set(ARTIFACTS)
    for label, shards in (("one", 1), ("two", 2), ("uneven", (3, 150, 1, 46))):
        result = quant.calibrate(digits["model"], digits["calibration"], ray=RayOptions(cluster, shards=shards),
                                 **options)
        assert result.execution["ray"] is True
        assert _saved(result, tmp_path / label) == serial, label


def test_sensitivity_and_fallback_on_ray_equal_the_serial_search(digits, cluster, tmp_path):
    calibration = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"], methods=("entropy",)).save(calibration)
    args = (digits["model"], calibration, digits["heldout"])
    serial = sensitivity(*args, metric="sqnr")
    on_ray = sensitivity(*args, metric="sqnr", ray=cluster)
    assert on_ray.to_json() == serial.to_json() and len(serial.layers) >= 2
    bound = dict(metric="sqnr", min_value=serial.all_quantized + 0.5)  # forces at least one layer back to float
    for search in ("greedy", "bisect"):  # greedy re-ranks with Ray tasks; bisect is sequential
        _, serial_fb = fallback(*args, search=search, **bound)
        _, ray_fb = fallback(*args, ray=cluster, search=search, **bound)
        assert serial_fb.float_layers and ray_fb.to_json() == serial_fb.to_json(), search


def test_a_worker_killed_mid_task_is_retried_and_the_result_is_identical(digits, cluster, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    expected = _saved(quant.calibrate(digits["model"], digits["calibration"], batch_size=8), tmp_path / "serial")
    monkeypatch.setenv(FAULT_MARKER_ENV, str(marker))
    monkeypatch.setenv(FAULT_KILLS_ENV, "2")
    result = quant.calibrate(digits["model"], digits["calibration"], batch_size=8, ray=RayOptions(cluster, shards=3))
    assert marker.read_bytes() == b"kk"  # two worker processes were killed by SIGKILL
    assert _saved(result, tmp_path / "ray") == expected


class _UnreadableOnWorkers(DataSource):
    """The digits, readable here but not after travelling to a worker (like a path on a local disk)."""

    def __init__(self, path):
        self.inner = open_source(path)
        self.description = "digits"
        self.remote = False

    def __setstate__(self, state):
        self.__dict__.update(state, remote=True)

    def __len__(self):
        return len(self.inner)

    @property
    def keys(self):
        return self.inner.keys

    def sample(self, index):
        if self.remote:
            raise QuantError(f"cannot read sample {index}", hint="check the data")
        return self.inner.sample(index)


def test_a_task_that_fails_for_good_is_one_error_naming_the_worker(digits, cluster):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    with pytest.raises(QuantError) as info:
        quant.calibrate(digits["model"], _UnreadableOnWorkers(digits["calibration"]), ray=cluster)
    assert info.value.message.startswith("on Ray worker ") and "cannot read sample" in info.value.message
    assert "storage every node sees" in info.value.hint


def test_cli_on_ray_writes_the_serial_artifacts_and_fails_with_exit_2_and_nothing_written(digits, cluster, tmp_path):
    base = ["calibrate", digits["model"], "--data", digits["calibration"], "--batch-size", "32"]
    assert run_cli(base + ["--output", tmp_path / "serial"]).returncode == 0
    proc = run_cli(base + ["--output", tmp_path / "ray", "--ray", cluster, "--ray-shards", "3"])
    assert proc.returncode == 0, proc.stderr
    for name in ("model.int8.onnx", "calibration.cache", "quant.json", "histograms.npz"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name
    env = dict(os.environ, **{FAULT_MARKER_ENV: str(tmp_path / "kills"), FAULT_KILLS_ENV: "1000"})
    failed = subprocess.run([sys.executable, "-m", "quant", *map(str, base + ["--output", tmp_path / "dead",
                                                                              "--ray", cluster])],
                            capture_output=True, text=True, env=env, timeout=600)
    assert failed.returncode == 2, failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "died 4 times" in errors[0] and "Traceback" not in failed.stderr
    assert not (tmp_path / "dead").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dead")]  # no staging left behind


def test_an_unreachable_cluster_is_one_error_line(digits, tmp_path):
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "o",
                    "--ray", f"127.0.0.1:{_free_port()}"], timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: cannot start or reach the Ray cluster"), proc.stderr
    assert not (tmp_path / "o").exists()


def test_eval_on_ray_reports_exactly_what_one_process_reports(digits, cluster, tmp_path):
    folder = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"]).save(folder)
    serial = quant.evaluate(digits["model"], folder / "model.int8.onnx", digits["heldout"], batch_size=50)
    on_ray = quant.evaluate(digits["model"], folder / "model.int8.onnx", digits["heldout"], batch_size=50,
                            ray=RayOptions(cluster, shards=(2, 9)))
    assert on_ray.to_json() == serial.to_json() and serial.samples == 540


def test_an_evaluation_actor_killed_mid_sweep_is_restarted_and_the_report_is_identical(digits, cluster, tmp_path,
                                                                                        monkeypatch):
    calibration = tmp_path / "cal"
    quant.calibrate(digits["model"], digits["calibration"]).save(calibration)
    args = (digits["model"], calibration, digits["heldout"])
    serial = sensitivity(*args, metric="sqnr")
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_MARKER_ENV, str(marker))
    on_ray = sensitivity(*args, metric="sqnr", ray=cluster)
    assert marker.read_bytes() == b"k" and on_ray.to_json() == serial.to_json()


def test_ray_with_device_cpu_gives_what_one_process_gives_on_device_cpu(digits, cluster, tmp_path):
    """--ray --device cpu: the torch backend runs inside the Ray tasks and actors; every artifact, the
    sensitivity table and the fallback's float layers equal the serial --device cpu run's, byte for byte."""
    pytest.importorskip("torch")
    options = dict(methods=("entropy", "mse"), batch_size=16, device="cpu")
    serial = _saved(quant.calibrate(digits["model"], digits["calibration"], **options), tmp_path / "serial")
    on_ray = quant.calibrate(digits["model"], digits["calibration"], ray=RayOptions(cluster, shards=(3, 150, 47)),
                             **options)
    assert on_ray.execution["ray"] is True
    assert _saved(on_ray, tmp_path / "ray") == serial
    manifest = json.loads(serial[next(n for n in serial if n.endswith("quant.json"))])
    assert manifest["data"]["collected_with"].startswith("PyTorch ")  # the torch backend ran, not ONNX Runtime
    calibration = tmp_path / "serial" / "entropy"
    args = (digits["model"], calibration, digits["heldout"])
    serial_table = sensitivity(*args, metric="sqnr", device="cpu")
    assert sensitivity(*args, metric="sqnr", device="cpu", ray=cluster).to_json() == serial_table.to_json()
    bound = dict(metric="sqnr", min_value=serial_table.all_quantized + 0.5, search="greedy", device="cpu")
    _, serial_fb = fallback(*args, **bound)
    _, ray_fb = fallback(*args, ray=cluster, **bound)
    assert serial_fb.float_layers and ray_fb.to_json() == serial_fb.to_json()
    int8 = calibration / "model.int8.onnx"
    serial_eval = quant.evaluate(digits["model"], int8, digits["heldout"], batch_size=50, device="cpu")
    ray_eval = quant.evaluate(digits["model"], int8, digits["heldout"], batch_size=50, device="cpu",
                              ray=RayOptions(cluster, shards=3))
    assert ray_eval.to_json() == serial_eval.to_json() and any("PyTorch" in n for n in serial_eval.notes)


@pytest.mark.parametrize("command", ["calibrate", "eval"])
def test_device_cuda_on_a_cluster_without_gpus_is_one_error_line_and_nothing_written(digits, cluster, tmp_path,
                                                                                       command):
    if command == "calibrate":
        args = ["calibrate", digits["model"], "--data", digits["calibration"], "--output", tmp_path / "out"]
    else:
        folder = tmp_path / "cal"
        quant.calibrate(digits["model"], digits["calibration"]).save(folder)
        args = ["eval", digits["model"], folder / "model.int8.onnx", "--data", digits["heldout"],
                "--output-json", tmp_path / "out"]
    proc = run_cli(args + ["--ray", cluster, "--device", "cuda"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: --device cuda with --ray: the Ray cluster ({cluster}) has no GPUs (2 CPUs, 0 GPUs); "
                      "each worker needs one"], proc.stderr
    assert not (tmp_path / "out").exists()
